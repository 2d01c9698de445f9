"""Hostile configs and arguments give one-line errors (never exit 70); a path-like image argument is
never looked up on the network; a build killed with SIGKILL leaves no temporary file behind the
next build."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from nydus_testkit.samples import random_bytes

from nydus_core.imageref import looks_like_path

BIN = Path(sys.executable).parent


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NYDUS_DEBUG"}
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, env=env,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode not in (0, 70), proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def boot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bounds")
    (tmp / "src").mkdir()
    (tmp / "src" / "f").write_text("x")
    proc = _run("nydus-image", "create", "-B", str(tmp / "img.boot"), "-D", str(tmp / "blobs"),
                str(tmp / "src"))
    assert proc.returncode == 0, proc.stderr
    return tmp / "img.boot"


BACKEND = '"device": {"backend": {"type": "localfs", "config": {"dir": "/tmp"}}}'


@pytest.mark.parametrize("name, text, needle", [
    ("huge.json", '{"amplify_io": ' + "9" * 5000 + ", " + BACKEND + "}", "integer of 5000 digits"),
    ("huge-neg.json", '{"amplify_io": -' + "9" * 5000 + ", " + BACKEND + "}", "integer of 5000 digits"),
    ("forty.json", '{"amplify_io": ' + "9" * 40 + ", " + BACKEND + "}", "amplify_io"),
    ("deep.json", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "nest deeper than 32"),
    ("deep-objects.json", '{"a": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}", "nest deeper than 32"),
    ("deep.toml", "a = " + "[" * 100_000 + "]" * 100_000 + "\n", "nest deeper than 32"),
    ("huge.toml", "[rafs]\nbatch_size = " + "9" * 5000 + "\n", "integer of 5000 digits"),
    ("nan.json", '{"amplify_io": NaN, ' + BACKEND + "}", "NaN"),
])
def test_hostile_configs_are_one_line_errors(boot: Path, tmp_path: Path, name: str, text: str,
                                             needle: str) -> None:
    cfg = tmp_path / name
    cfg.write_text(text)
    line = _one_line(_run("nydus", "cat", "-C", str(cfg), str(boot), "/f"), name, needle)
    assert len(line) < 300


def test_backend_config_flag_is_bounded_too(boot: Path) -> None:
    _one_line(_run("nydus-image", "check", "-B", str(boot), "--backend-type", "localfs", "--backend-config",
                   '{"dir": ' + "[" * 50_000 + "]" * 50_000 + "}"), "--backend-config", "nest deeper")


AUDIT = """
import sys
events = []
OUT = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
       "socket.sendto", "socket.sendmsg", "http.client.connect")
sys.addaudithook(lambda e, a: events.append((e, str(a)[:80])) if e in OUT else None)
from nydus_core.cli.nydus import main
try:
    rc = main()
except SystemExit as exc:
    rc = exc.code
sys.stderr.write("SOCKET-EVENTS %s\\n" % sorted(set(events)))
sys.exit(rc)
"""


@pytest.mark.parametrize("arg", ["does/not/exist.boot", "./nope", "../nope/img", "/abs/nope", "x.bootstrap",
                                 "registry.io/app.boot"])
def test_missing_path_is_no_such_file_without_network(tmp_path: Path, arg: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NYDUS_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", AUDIT, "ls", arg, "/"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode not in (0, 70), proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "SOCKET-EVENTS []", proc.stderr  # nothing resolved, nothing connected
    assert lines[0] == f"error: {arg}: no such bootstrap file" and len(lines) == 2, proc.stderr


def test_references_stay_references() -> None:
    for ref in ("org/app", "app", "org/app:1.0", "registry.io:5000/org/app@sha256:" + "a" * 64):
        assert not looks_like_path(ref), ref
    for path in ("/x", "./x", "../x", "a/b.boot", "b.bootstrap", ".", ".."):
        assert looks_like_path(path), path


def _tar_stream(count: int) -> bytes:
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(count):
            data = random_bytes(64 << 10, i)
            info = tarfile.TarInfo(f"f{i}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_sigkilled_build_leaves_no_temporary_after_the_next(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    fifo = tmp_path / "in.tar"
    os.mkfifo(fifo)
    data = _tar_stream(64)
    argv = [str(BIN / "nydus-image"), "create", "-t", "tar-rafs", "-B", str(tmp_path / "a.boot"),
            "-D", str(blobs), str(fifo)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with open(fifo, "wb") as w:
            w.write(data[: len(data) // 2])  # half the tar: the build is writing its blob, then waits
            w.flush()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(p.name.startswith(".blob.tmp-")
                                                          for p in blobs.glob(".*")):
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    except BrokenPipeError:
        pass
    left = [p.name for p in blobs.iterdir() if ".tmp-" in p.name]
    assert left, "the killed build should have left its temporary blob"
    # a live build's temporary (held locked) is never touched
    live = blobs / f".blob.tmp-{os.getpid()}-abc"
    with open(live, "wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "g").write_bytes(random_bytes(10_000, 99))
        done = _run("nydus-image", "create", "-B", str(tmp_path / "b.boot"), "-D", str(blobs),
                    str(tmp_path / "src"))
        assert done.returncode == 0, done.stderr
        remaining = sorted(p.name for p in blobs.iterdir() if ".tmp-" in p.name)
    assert remaining == [live.name]
