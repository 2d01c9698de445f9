"""Build wheels and make throw-away virtual environments, for clean-install tests.

Uses ``uv`` when it is on PATH (fast, and it reuses its cache), else ``python -m build`` and
``python -m venv`` + pip. Wheels are built once per process and project directory.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from nydus_testkit.cli import clean_env

__all__ = ["Venv", "build_wheel", "create_venv", "repo_root"]

_TIMEOUT = 600
_wheels: dict[Path, Path] = {}
_wheel_lock = threading.Lock()
_wheel_dir: Path | None = None


def repo_root() -> Path:
    """Return the repository root (the directory holding ``nydus_core`` and ``plugins``)."""
    return Path(__file__).resolve().parents[2]


def _run(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=_TIMEOUT,
                          env=clean_env(env), cwd=cwd, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _uv() -> str | None:
    return shutil.which("uv")


def build_wheel(project: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Build the wheel of the project in directory ``project`` and return its path.

    Without ``out_dir`` the wheel goes to a per-process temporary directory and is reused by later
    calls for the same project.
    """
    global _wheel_dir
    project = Path(project).resolve()
    with _wheel_lock:
        if out_dir is None and project in _wheels and _wheels[project].exists():
            return _wheels[project]
        if out_dir is None:
            if _wheel_dir is None:
                _wheel_dir = Path(tempfile.mkdtemp(prefix="nydus-wheels-"))
                atexit.register(shutil.rmtree, _wheel_dir, True)
            target = Path(tempfile.mkdtemp(dir=_wheel_dir))
        else:
            target = Path(out_dir)
            target.mkdir(parents=True, exist_ok=True)
        before = set(target.glob("*.whl"))
        uv = _uv()
        if uv:
            _run([uv, "build", "--wheel", "--quiet", "--out-dir", str(target), str(project)])
        else:
            _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(target), str(project)])
        built = sorted(set(target.glob("*.whl")) - before)
        if len(built) != 1:
            raise RuntimeError(f"building {project} produced {len(built)} wheels in {target}")
        if out_dir is None:
            _wheels[project] = built[0]
        return built[0]


class Venv:
    """A virtual environment at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bin = path / "bin"
        self.python = self.bin / "python"

    def install(self, *requirements: str | os.PathLike[str], pip: bool = False) -> None:
        """Install requirements (wheel paths, project directories or names) into this environment.

        ``pip=True`` uses the environment's own pip (the environment must have been created with it).
        """
        reqs = [os.fspath(r) for r in requirements]
        uv = _uv()
        if uv and not pip:
            _run([uv, "pip", "install", "--quiet", "--python", str(self.python), *reqs])
        else:
            _run([str(self.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *reqs])

    def run(self, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None,
            timeout: float = _TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run ``args[0]`` from this environment's ``bin`` (or any command) with a clean environment."""
        exe = self.bin / args[0]
        cmd = [str(exe) if exe.exists() else args[0], *args[1:]]
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        full_env = {"VIRTUAL_ENV": str(self.path), "PATH": path}
        full_env.update(env or {})
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              env=clean_env(full_env), stdin=subprocess.DEVNULL)

    def distributions(self) -> set[str]:
        """Return the names of the distributions installed in this environment (lower case)."""
        out = _run([str(self.python), "-c",
                    "import importlib.metadata as m;"
                    "print('\\n'.join(d.metadata['Name'] for d in m.distributions()))"])
        return {line.strip().lower() for line in out.splitlines() if line.strip()}


def create_venv(path: str | os.PathLike[str], *, with_pip: bool = False) -> Venv:
    """Create an empty virtual environment at ``path`` (with pip when ``with_pip``)."""
    path = Path(path)
    uv = _uv()
    if uv:
        cmd = [uv, "venv", "--quiet", "--python", sys.executable, str(path)]
        _run([*cmd, "--seed"] if with_pip else cmd)
    else:
        _run([sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), str(path)])
    return Venv(path)
