"""One CLI convention over every console command of every nydus distribution and each of its
subcommands, as users run them: ``--version`` on each top-level command, ``-h`` (and ``--help``)
everywhere, help text on every option, an example in every top-level help, and ``--debug`` accepted
after the subcommand too (``nydus cat ... --debug``)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nydus_testkit.cli import clean_env

import nydus_core

BIN = Path(sys.executable).parent
EXPECTED_COMMANDS = {"nydus", "nydus-image", "nydusd", "nydusctl", "nydusify", "containerd-nydus-grpc"}


def console_commands() -> dict[str, str]:
    """Every console script of the installed nydus distributions: command -> distribution."""
    out = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name.startswith("nydus"):
            for ep in dist.entry_points.select(group="console_scripts"):
                out[ep.name] = name
    return out


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / argv[0]), *argv[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env=clean_env({"COLUMNS": "100"}))


@dataclass
class Help:
    """One command's parsed ``-h`` output."""

    text: str
    options: dict[str, bool] = field(default_factory=dict)  # signature -> has help text
    commands: list[str] = field(default_factory=list)


def _text(help_text: str) -> str:
    """Help text without click's ``[default: ...]`` / ``[required]`` notes (they are no help)."""
    return re.sub(r"\[(default: [^\]]*|required)\]", "", help_text).strip()


def parse_help(text: str) -> Help:
    """Read click's help layout: sections (``Options:``, ``Commands:``) of two-column entries."""
    parsed = Help(text)
    lines = text.splitlines()
    section = None
    for i, line in enumerate(lines):
        if re.fullmatch(r"[A-Z][A-Za-z ]*:", line):
            section = line[:-1]
            continue
        if not line.startswith("  ") or line.startswith("   ") or not line.strip():
            continue
        first, *rest = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        follow = lines[i + 1] if i + 1 < len(lines) else ""
        described = bool(rest and _text(rest[0])) or (follow.startswith("   ") and bool(_text(follow)))
        if section == "Options" and first.startswith("-"):
            parsed.options[first] = described
        elif section == "Commands":
            parsed.commands.append(first.split()[0])
    return parsed


def walk(pool: ThreadPoolExecutor) -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """Every command path with its ``-h`` run, found through the commands' own help (so plugin
    commands are included); the commands of one level run side by side, each once."""
    found: dict[tuple[str, ...], subprocess.CompletedProcess[str]] = {}
    level: list[tuple[str, ...]] = [(cmd,) for cmd in sorted(console_commands())]
    while level:
        following: list[tuple[str, ...]] = []
        for path, proc in zip(level, pool.map(lambda p: run(*p, "-h"), level), strict=True):
            found[path] = proc
            following.extend((*path, sub) for sub in parse_help(proc.stdout).commands)
        level = following
    return found


@pytest.fixture(scope="module")
def helps() -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """``-h`` of every command path."""
    with ThreadPoolExecutor(4) as pool:
        return walk(pool)


@pytest.fixture(scope="module")
def long_helps(helps: dict[tuple[str, ...], subprocess.CompletedProcess[str]]
               ) -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """``--help`` of every command path."""
    paths = sorted(helps)
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(paths, pool.map(lambda p: run(*p, "--help"), paths), strict=True))


def test_every_expected_console_command_is_installed() -> None:
    assert set(console_commands()) == EXPECTED_COMMANDS


@pytest.mark.parametrize("command", sorted(EXPECTED_COMMANDS))
def test_version_on_every_top_level_command(command: str) -> None:
    proc = run(command, "--version")
    assert proc.returncode == 0, proc.stderr
    version = importlib.metadata.version(console_commands()[command])
    assert proc.stdout.startswith(command) and version in proc.stdout, proc.stdout


def test_every_command_and_subcommand_has_h_and_help_on_every_option(
        helps: dict[tuple[str, ...], subprocess.CompletedProcess[str]],
        long_helps: dict[tuple[str, ...], subprocess.CompletedProcess[str]]) -> None:
    assert len(helps) >= 35, sorted(helps)
    problems = []
    for path, proc in sorted(helps.items()):
        where = " ".join(path)
        if proc.returncode != 0 or not proc.stdout.startswith("Usage: "):
            problems.append(f"{where} -h: exit {proc.returncode}: {proc.stderr.strip()[:200]}")
            continue
        parsed = parse_help(proc.stdout)
        if "-h, --help" not in parsed.options:
            problems.append(f"{where}: no -h/--help option")
        problems += [f"{where}: option {sig} has no help text"
                     for sig, ok in parsed.options.items() if not ok]
        if not any(sig.startswith("--debug") or ", --debug" in sig for sig in parsed.options):
            problems.append(f"{where}: no --debug")
        if long_helps[path].stdout != proc.stdout:
            problems.append(f"{where}: --help differs from -h")
    assert problems == [], "\n".join(problems)


def test_every_top_level_help_shows_an_example(
        helps: dict[tuple[str, ...], subprocess.CompletedProcess[str]]) -> None:
    for command in EXPECTED_COMMANDS:
        text = helps[(command,)].stdout
        assert re.search(r"^\s*Examples?:", text, re.M), f"{command} -h shows no example"
        after = text.split("xample", 1)[1]
        assert re.search(rf"^\s+{re.escape(command)} \S", after, re.M), f"{command}: no command line"


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path: Path) -> None:
    """`nydus cat BOOT PATH --debug` as the README shows it, not only `nydus --debug cat`."""
    missing = str(tmp_path / "missing.boot")
    plain = run("nydus", "cat", missing, "/etc/os-release", "--config", "/nonexistent.json")
    assert plain.returncode != 0 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    for argv in (("nydus", "cat", missing, "/etc/os-release", "--config", "/nonexistent.json", "--debug"),
                 ("nydus", "--debug", "cat", missing, "/etc/os-release", "--config", "/nonexistent.json"),
                 ("nydus-image", "check", missing, "--debug")):
        proc = run(*argv)
        assert proc.returncode != 0
        assert "Traceback" in proc.stderr, argv
        assert proc.stderr.rstrip().splitlines()[-1].startswith("error: "), argv


def test_core_version_is_the_package_version() -> None:
    proc = run("nydus", "--version")
    assert proc.stdout.strip() == f"nydus, version {nydus_core.__version__}"


def test_image_check_keeps_upstream_verbose_and_has_json(tmp_path: Path) -> None:
    """`check -v` is upstream's verbose (for people, stderr); `--json` is the report for programs."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    boot, blobs = tmp_path / "image.boot", tmp_path / "blobs"
    built = run("nydus-image", "create", str(src), "-B", str(boot), "-D", str(blobs), "--compressor", "none",
                "--digester", "sha256")
    assert built.returncode == 0, built.stderr
    verbose = run("nydus-image", "check", str(boot), "-D", str(blobs), "-v")
    assert verbose.returncode == 0 and verbose.stdout == ""
    assert "compressor none, digester sha256" in verbose.stderr and "verified: 1 chunks" in verbose.stderr
    as_json = run("nydus-image", "check", str(boot), "-D", str(blobs), "--json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["chunks_verified"] == 1


def test_nydusctl_without_socket_is_one_line() -> None:
    proc = run("nydusctl", "info")
    assert proc.returncode == 2
    assert proc.stderr == "error: nydusctl needs the daemon's API socket: --sock/-S PATH\n"


def test_readme_lists_every_exit_code() -> None:
    """The README's exit-code table names every NydusError class in the row of its exit code."""
    import inspect

    from nydus_testsupport.venv import repo_root

    from nydus_core import errors
    from nydus_core.cli.runner import INTERNAL_ERROR_EXIT

    readme = (repo_root() / "README.md").read_text()
    table = readme.split("### Exit codes", 1)[1].split("\n\n", 2)[2]
    rows: dict[int, str] = {}
    for line in table.splitlines():
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0].isdigit():
            rows[int(cells[0])] = cells[2]
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.NydusError)]
    assert len(classes) >= 15
    for cls in classes:
        assert f"`{cls.__name__}`" in rows.get(cls.exit_code, ""), f"{cls.__name__} (exit {cls.exit_code})"
    assert {0, INTERNAL_ERROR_EXIT, 130, 141} <= set(rows)
