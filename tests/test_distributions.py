"""The published distributions, as `scripts/wheels.sh` builds them: which wheels, their metadata
(license file, classifiers, URLs, a description that works on PyPI, bounds on nydus-core), the
nydus-py meta-distribution's default set, and clean installs from the wheelhouse."""

from __future__ import annotations

import email
import email.message
import os
import re
import subprocess
import time
import tomllib
import zipfile
from pathlib import Path

import pytest
from nydus_testsupport.venv import Venv, create_venv, repo_root
from packaging.requirements import Requirement
from packaging.version import Version

import nydus_core
from nydus_core.errors import UnknownPluginError
from nydus_core.plugins import DEFAULT_SET, FIRST_PARTY, META_DISTRIBUTION

# The wheelhouse (built once per session, by whichever test asks first) can take minutes on a busy
# machine: every test here may be the one that builds it.
pytestmark = pytest.mark.timeout(900)

ROOT = repo_root()
CORE_VERSION = Version(nydus_core.__version__)


def _projects() -> dict[str, Path]:
    """Distribution name -> project directory, for every workspace member and the root."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dirs = [ROOT, *sorted(d for g in root["tool"]["uv"]["workspace"]["members"] for d in ROOT.glob(g))]
    out = {}
    for d in dirs:
        project = tomllib.loads((d / "pyproject.toml").read_text())["project"]
        out[project["name"]] = d
    return out


def _published(projects: dict[str, Path]) -> dict[str, Path]:
    def private(d: Path) -> bool:
        meta = tomllib.loads((d / "pyproject.toml").read_text())["project"]
        return "Private :: Do Not Upload" in meta.get("classifiers", [])

    return {name: d for name, d in projects.items() if not private(d)}


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(zf.read(name))


def _description(wheel: Path) -> str:
    """The long description: the METADATA body, after the headers (UTF-8)."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return zf.read(name).decode().split("\n\n", 1)[1]


def _wheels(wheelhouse: Path) -> dict[str, Path]:
    out = {}
    for wheel in wheelhouse.glob("*.whl"):
        out[_metadata(wheel)["Name"]] = wheel
    return out


def test_wheels_sh_builds_every_published_distribution(wheelhouse: Path) -> None:
    published = _published(_projects())
    assert {"nydus-core", "nydus-py", *set(FIRST_PARTY.values())} <= set(published)
    assert set(_wheels(wheelhouse)) == set(published)
    assert not any("testsupport" in w.name for w in wheelhouse.glob("*.whl"))


def test_every_wheel_has_the_license_and_full_metadata(wheelhouse: Path) -> None:
    license_text = (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in license_text and b"Version 2.0, January 2004" in license_text
    for name, wheel in _wheels(wheelhouse).items():
        with zipfile.ZipFile(wheel) as zf:
            licenses = [n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
            assert len(licenses) == 1, f"{wheel.name}: no LICENSE"
            assert zf.read(licenses[0]) == license_text, f"{wheel.name}: not the repository's LICENSE"
        meta = _metadata(wheel)
        assert meta["License-Expression"] == "Apache-2.0", name
        assert meta["Author"], name
        classifiers = meta.get_all("Classifier") or []
        assert "Operating System :: POSIX :: Linux" in classifiers, name
        assert "Programming Language :: Python :: 3.11" in classifiers, name
        assert meta.get_all("Project-URL"), name
        assert meta["Description-Content-Type"] == "text/markdown", name


def test_descriptions_work_on_pypi(wheelhouse: Path) -> None:
    """Each description is the project's README (the core's: its own), with no relative links."""
    projects = _projects()
    for name, wheel in _wheels(wheelhouse).items():
        description = _description(wheel)
        assert description.startswith(f"# {name}"), name
        readme = tomllib.loads((projects[name] / "pyproject.toml").read_text())["project"]["readme"]
        assert description.strip() == (projects[name] / readme).read_text().strip(), name
        targets = [*re.findall(r"\]\(([^)\s]+)", description),
                   *re.findall(r"(?:src|href)=\"([^\"]+)", description)]
        relative = [t for t in targets if not re.match(r"(https?|mailto):", t)]
        assert relative == [], f"{name}: relative links break on PyPI: {relative}"


def test_every_dependency_on_our_distributions_is_bounded(wheelhouse: Path) -> None:
    """`nydus-core>=X,<Y` (and the same for plugin-on-plugin dependencies) admitting this version."""
    ours = set(_wheels(wheelhouse))
    for name, wheel in _wheels(wheelhouse).items():
        for line in _metadata(wheel).get_all("Requires-Dist") or []:
            req = Requirement(line)
            if req.name not in ours:
                continue
            operators = {s.operator for s in req.specifier}
            assert operators == {">=", "<"}, f"{name}: '{line}' needs a lower and an upper bound"
            assert req.specifier.contains(CORE_VERSION), f"{name}: '{line}' excludes {CORE_VERSION}"
        if name != "nydus-core":
            assert any(Requirement(r).name == "nydus-core"
                       for r in _metadata(wheel).get_all("Requires-Dist") or []), f"{name}: no nydus-core"


def test_meta_distribution_installs_the_default_set(wheelhouse: Path) -> None:
    meta = _metadata(_wheels(wheelhouse)[META_DISTRIBUTION])
    reqs = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    default = {r.name for r in reqs if r.marker is None}
    assert default == {"nydus-core", *DEFAULT_SET}
    extra_all = {r.name for r in reqs if r.marker is not None and r.marker.evaluate({"extra": "all"})}
    assert default | extra_all == set(_wheels(wheelhouse)) - {META_DISTRIBUTION, "nydus-testkit"}
    with zipfile.ZipFile(_wheels(wheelhouse)[META_DISTRIBUTION]) as zf:
        assert all(".dist-info/" in n for n in zf.namelist())  # metadata only
    description = _description(_wheels(wheelhouse)[META_DISTRIBUTION])
    for package in ("build-essential", "python3-dev", "pkg-config", "libfuse3-dev", "fuse3"):
        assert package in description  # what pyfuse3 needs to build (it ships no wheels)


def test_snapshotter_wheel_carries_its_stubs_and_no_grpcio_tools(wheelhouse: Path) -> None:
    wheel = _wheels(wheelhouse)["nydus-snapshotter-containerd"]
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    stub = "nydus_snapshotter_containerd/_gen/containerd/services/snapshots/v1/snapshots_pb2_grpc.py"
    assert stub in names
    assert not any(n.endswith(("stubgen.py", "gen.py", "hatch_build.py")) for n in names)
    reqs = {Requirement(r).name for r in _metadata(wheel).get_all("Requires-Dist") or []}
    assert "grpcio-tools" not in reqs and {"grpcio", "protobuf"} <= reqs


# -- clean installs from the wheelhouse -------------------------------------------------------------


def _pip_venv(path: Path) -> Venv:
    venv = create_venv(path, with_pip=True)
    return venv


def _pip(venv: Venv, *args: str) -> None:
    proc = venv.run("python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args,
                    timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.timeout(1500)  # pip builds pyfuse3 from source when its cache has no wheel of it
@pytest.mark.skipif(not Path("/dev/fuse").exists(), reason="needs /dev/fuse")
def test_pip_install_nydus_py_gives_working_defaults(wheelhouse: Path, tmp_path: Path) -> None:
    """`pip install dist/nydus_py-*.whl --find-links dist/` into an empty venv: nydus-image create with
    the defaults (zstd, blake3) works, and nydusd starts and serves the image."""
    venv = _pip_venv(tmp_path / "venv")
    (meta_wheel,) = wheelhouse.glob("nydus_py-*.whl")
    _pip(venv, str(meta_wheel), "--find-links", str(wheelhouse))
    assert {"nydus-py", "nydus-core", *DEFAULT_SET} <= venv.distributions()
    assert not {"nydus-backend-s3", "nydus-converter-oci"} & venv.distributions()

    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "motd").write_text("hello from a lazily loaded image\n")
    (src / "data.bin").write_bytes(os.urandom(3 << 20))
    boot, blobs = tmp_path / "image.boot", tmp_path / "blobs"
    create = venv.run("nydus-image", "create", str(src), "-B", str(boot), "-D", str(blobs))
    assert create.returncode == 0, create.stderr
    inspect = venv.run("nydus-image", "inspect", str(boot), "-R", "blobs")
    assert inspect.returncode == 0, inspect.stderr
    assert '"compressor": 3' in inspect.stdout and '"digester": 0' in inspect.stdout  # zstd, blake3
    check = venv.run("nydus-image", "check", str(boot), "-D", str(blobs))
    assert check.returncode == 0, check.stderr

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log = tmp_path / "nydusd.log"
    daemon = subprocess.Popen([str(venv.bin / "nydusd"), "-D", str(blobs), "-B", str(boot), "-M", str(mnt),
                               "--log-file", str(log)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not os.path.ismount(mnt):
            why = log.read_text() if log.exists() else ""
            assert daemon.poll() is None, f"nydusd exited {daemon.returncode}: {why}"
            assert time.monotonic() < deadline, "nydusd did not mount within 60 s"
            time.sleep(0.1)
        assert (mnt / "etc" / "motd").read_text() == "hello from a lazily loaded image\n"
        assert (mnt / "data.bin").read_bytes() == (src / "data.bin").read_bytes()
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 0, daemon.stderr.read() if daemon.stderr else ""


@pytest.mark.slow
def test_missing_default_compressor_says_what_to_install(wheelhouse: Path, tmp_path: Path) -> None:
    """`pip install nydus-core nydus-backend-s3`, then `nydus-image create` with the defaults: one line
    naming the package of the default compressor, or nydus-py."""
    venv = create_venv(tmp_path / "venv")
    venv.install("--find-links", str(wheelhouse), "nydus-core", "nydus-backend-s3")
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_text("data\n")
    proc = venv.run("nydus-image", "create", str(src), "-B", str(tmp_path / "i.boot"), "-D",
                    str(tmp_path / "blobs"))
    assert proc.returncode == UnknownPluginError.exit_code
    assert proc.stderr == (
        "error: Unknown compressor 'zstd' (--compressor). Installed compressors: none. "
        "Install it with: pip install nydus-compressor-zstd (or: pip install nydus-py, the default set)\n")
    assert not (tmp_path / "i.boot").exists()
