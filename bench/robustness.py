"""Fuzz and fault benchmark: mutated inputs into the functions behind the tools, time-boxed.

    .venv/bin/python bench/robustness.py [--minutes 30] [--out DIR] [--seed N] [--fuse-share 0.06]
                                         [--jobs 2] [--batch 48]

Not part of CI. In-process and forked: the parent builds one small image (directories, files of
several chunks, symlinks, a hard link, xattrs, a device, a long name) and its tar and tar.gz, then
keeps ``--jobs`` forked children busy, each running a batch of ``--batch`` cases one after the
other, every case under its own time limit (SIGALRM in the child; the parent kills a child whose
case stops answering for 1.5x the limit). Each case's outcome goes to the parent over a pipe as it
ends; the input of a case is made in the child from its seed alone, so any case is reproducible by
its seed. After a case that hit the limit (or a child that died) the rest of its batch runs in a
fresh child. Input kinds, each getting its share of the time:

- ``bootstrap``: the bootstrap with 1-8 bytes flipped / overwritten with extreme values, or cut
  short -> ``check`` (the metadata walk) and ``ls -l`` of every directory; every 8th case also
  ``inspect`` (stats, superblock, blobs, files), ``cat`` of every file (digest_validate on) and
  ``unpack`` to a tar;
- ``blob``: the data blob with bytes flipped, read under ``digest_validate`` -> every file must read
  back exactly as built (the oracle) or fail; a differing byte is a *wrong byte*;
- ``tar`` / ``gzip``: the tar / tar.gz mutated -> ``create`` (tar-rafs / targz-rafs), then ``check``
  and ``unpack`` of what it built; a tar.gz accepted with content differing from the original tar's
  is a *wrong byte* (the CRC32 and ISIZE checks must refuse it);
- ``fuse``: a mutated bootstrap mounted by a real ``nydusd`` (FUSE), every directory listed and every
  file read through the kernel; the daemon must stay up (a crash or a traceback is an internal
  error) and answer within the limit.

Outcomes per case: ``accepted`` (no error), ``clean`` (a NydusError, or an errno from the file API:
what the CLI prints on one line), ``internal`` (any other exception, or a child dying mid-case:
exit 70 in the CLI), ``hang``, ``wrong`` (bytes differing from the oracle served without an error).
A case that hits its time limit is not yet a hang: it is rerun once alone, in a fresh child, with
3x the limit (FUSE cases too), and only a second hit counts as a hang; a case that finishes on the
rerun counts with its rerun's outcome and in the "limit hits, rerun finished" column (stalls of a
loaded machine). Internal errors and wrong bytes count as they come; each is also rerun alone and
its detail says whether it reproduces without the cases before it in its batch. Every failure
(internal, hang, wrong) is saved with its seed under ``OUT/failures/``; a summary table and
``OUT/robustness.json`` are written at the end. Output goes to ``bench/out/robustness`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import gc
import gzip
import io
import json
import os
import random
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import OUT, table

from nydus_core.builder import BuildOptions, build
from nydus_core.errors import NydusError

OK, CLEAN, INTERNAL, WRONG, TIMED_OUT, HANG = 0, 10, 11, 12, 13, -1
NAMES = {OK: "accepted", CLEAN: "clean", INTERNAL: "internal", WRONG: "wrong", HANG: "hang"}
RERUN_FACTOR = 3  # a case that hits its limit is rerun alone with this many times the limit
FRAME = struct.Struct("<iiI")  # child -> parent, per case: index in the batch, outcome, detail length
LIMIT = {"bootstrap": 10.0, "blob": 20.0, "tar": 30.0, "gzip": 30.0, "fuse": 60.0}
SHARES = {"bootstrap": 0.72, "blob": 0.09, "tar": 0.09, "gzip": 0.10}
EXTREMES = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff",
            b"\x00\x00\x00\x80", b"\xff\xff\xff\x7f", b"\x00\x10", b"\xff\x0f"]


# -- the base image ----------------------------------------------------------------------------

def base_tree(root: Path) -> dict[str, bytes]:
    """Write the sample tree; return its regular files' contents (the oracle) by image path."""
    rnd = random.Random(1)
    files: dict[str, bytes] = {}
    (root / "etc" / "deep" / "er").mkdir(parents=True)
    (root / "usr" / "lib").mkdir(parents=True)
    for i in range(12):
        d = root / ("etc" if i % 3 == 0 else "usr/lib" if i % 3 == 1 else "etc/deep/er")
        data = rnd.randbytes(rnd.choice([0, 100, 4096, 9000, 20000]))
        (d / f"f{i}").write_bytes(data)
        files["/" + str((d / f"f{i}").relative_to(root))] = data
    text = b"line of text\n" * 800
    (root / "usr" / "text").write_bytes(text)
    files["/usr/text"] = text
    os.link(root / "usr" / "text", root / "usr" / "hard")
    files["/usr/hard"] = text
    (root / "usr" / ("n" * 200)).write_bytes(b"long name")
    files["/usr/" + "n" * 200] = b"long name"
    os.symlink("../usr/text", root / "etc" / "link")
    os.symlink("/nowhere", root / "etc" / "dangling")
    os.mkfifo(root / "fifo")
    os.setxattr(root / "usr" / "text", "user.a", b"value")
    os.setxattr(root / "etc", "user.dir", b"x" * 300)
    os.utime(root / "etc" / "f0", (1, 2**33))
    return files


def tar_of(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(root, arcname=".")
    return buf.getvalue()


# -- mutations ----------------------------------------------------------------------------------

def mutate(data: bytes, rnd: random.Random, *, protect: int = 0) -> bytes:
    """Flip / overwrite / cut / splice a few bytes of ``data`` (leaving its first ``protect`` bytes)."""
    b = bytearray(data)
    op = rnd.random()
    n = max(len(b) - protect, 1)
    if op < 0.55:
        for _ in range(rnd.randint(1, 8)):
            i = protect + rnd.randrange(n)
            if i < len(b):
                b[i] ^= 1 << rnd.randrange(8) if rnd.random() < 0.7 else rnd.randrange(1, 256)
    elif op < 0.85:
        for _ in range(rnd.randint(1, 3)):
            v = rnd.choice(EXTREMES)
            i = protect + rnd.randrange(n)
            b[i:i + len(v)] = v
    elif op < 0.93:
        del b[protect + rnd.randrange(n):]
    else:
        i = protect + rnd.randrange(n)
        j = protect + rnd.randrange(n)
        k = rnd.randint(1, 64)
        b[i:i + k] = bytes(b[j:j + k])
    return bytes(b)


# -- what a child does --------------------------------------------------------------------------

class Wrong(Exception):
    """Bytes differing from the oracle were served without an error."""


def _fs_step(fn: Any) -> None:
    """Run an fs-API step: NydusError or an errno OSError is what the CLI reports on one line."""
    try:
        fn()
    except OSError as exc:
        if exc.errno is None:
            raise
        raise NydusError(f"errno {exc.errno}") from None


def exercise_bootstrap(boot: Path, blobs: Path, oracle: dict[str, bytes], *, full: bool) -> None:
    """What check, inspect, ls -l, cat and unpack do with a bootstrap."""
    from nydus_core.cli.storage_commands import _mode_string, format_utc_minutes
    from nydus_core.fs import open_fs, open_metadata
    from nydus_core.rafs.image import open_image
    from nydus_core.tools import inspect
    from nydus_core.tools.check import check_image
    from nydus_core.tools.datasource import open_chunk_source
    from nydus_core.tools.unpack import unpack_to_tar

    check_image(boot)
    if full:
        image = open_image(boot)
        try:
            inspect.stats(image)
            inspect.superblock(image)
            inspect.blobs(image)
            inspect.files(image)
            inspect.prefetch(image)
        finally:
            image.close()
    cfg = {"device": {"backend": {"type": "localfs", "config": {"dir": str(blobs)}}},
           "mode": "direct", "digest_validate": True}
    fs = open_fs(boot, cfg) if full else open_metadata(boot)
    try:
        def listing() -> None:
            for top, dirs, files in fs.walk("/"):
                for name, st in fs.scandir(top):
                    line = f"{_mode_string(st.st_mode)} {format_utc_minutes(st.st_mtime_ns // 10**9)} {name}"
                    if stat.S_ISLNK(st.st_mode):
                        line += " -> " + fs.readlink(f"{top.rstrip('/')}/{name}")
                del dirs, files

        _fs_step(listing)
        if full:  # a mutated bootstrap may point a file at other (valid) chunks: no byte oracle here
            for path in oracle:
                _fs_step(lambda path=path: fs.read_bytes(path))
    finally:
        fs.close()
    if full:
        image = open_image(boot)
        try:
            unpack_to_tar(image, open_chunk_source(blob_dir=str(blobs), config_path=None), io.BytesIO())
        finally:
            image.close()


def exercise_blob(boot: Path, blobs: Path, oracle: dict[str, bytes]) -> None:
    from nydus_core.fs import open_fs

    cfg = {"device": {"backend": {"type": "localfs", "config": {"dir": str(blobs)}}},
           "mode": "direct", "digest_validate": True}
    with open_fs(boot, cfg) as fs:
        failed = 0
        for path, want in oracle.items():
            try:
                got = fs.read_bytes(path)
            except OSError as exc:
                if exc.errno is None:
                    raise
                failed += 1
                continue
            if got != want:
                raise Wrong(path)
        if failed:
            raise NydusError(f"{failed} files failed to read (EIO)")


def exercise_build(src: Path, kind: str, work: Path, original_tar: bytes | None) -> None:
    """create from a (mutated) tar/tar.gz, then check and unpack what was built."""
    from nydus_core.rafs.image import open_image
    from nydus_core.tools.check import check_image
    from nydus_core.tools.datasource import open_chunk_source
    from nydus_core.tools.unpack import unpack_to_tar

    boot, blobs = work / "b.boot", work / "blobs"
    build(src, kind, bootstrap=boot, blob_dir=blobs, options=BuildOptions(chunk_size=0x1000))
    check_image(boot, open_chunk_source(blob_dir=str(blobs), config_path=None))
    image = open_image(boot)
    out = io.BytesIO()
    try:
        unpack_to_tar(image, open_chunk_source(blob_dir=str(blobs), config_path=None), out)
    finally:
        image.close()
    if original_tar is not None:  # a gzip mutation accepted: the content must be the original's
        want = _contents(original_tar)
        got = _contents(out.getvalue())
        if any(got.get(k, v) != v for k, v in want.items()):
            raise Wrong("accepted a tar.gz whose content differs from the original")


def _contents(raw: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        for m in tf:
            if m.isreg():
                f = tf.extractfile(m)
                out[m.name.lstrip("./")] = f.read() if f else b""
    return out


class TimeLimit(BaseException):
    """Raised in a child by SIGALRM when a case runs past its time limit."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise TimeLimit


def case_input(kind: str, seed: int | None, inputs: dict[str, bytes]) -> tuple[bytes, bool]:
    """The input of case ``seed`` (``None``: the unmutated one) and whether it runs in full
    (every 8th bootstrap seed also runs inspect, cat and unpack). The seed alone reproduces a case."""
    if seed is None:
        return inputs[kind], True
    return mutate(inputs[kind], random.Random(seed)), seed % 8 == 0


def child(kind: str, data: bytes, ctx: dict[str, Any], *, full: bool = True) -> tuple[int, str]:
    """Run one case; return its outcome code and the first line of its error (a traceback if internal)."""
    work = Path(tempfile.mkdtemp(prefix="case-", dir=ctx["scratch"]))
    try:
        if kind in ("bootstrap", "blob"):
            boot = work / "m.boot"
            blobs = ctx["blobs"]
            if kind == "bootstrap":
                boot.write_bytes(data)
            else:
                boot = ctx["boot"]
                blobs = work / "blobs"
                blobs.mkdir()
                (blobs / ctx["blob_id"]).write_bytes(data)
            if kind == "bootstrap":
                exercise_bootstrap(boot, blobs, ctx["oracle"], full=full)
            else:
                exercise_blob(boot, blobs, ctx["oracle"])
        else:
            src = work / ("in.tar.gz" if kind == "gzip" else "in.tar")
            src.write_bytes(data)
            exercise_build(src, "targz-rafs" if kind == "gzip" else "tar-rafs", work,
                           ctx["tar"] if kind == "gzip" else None)
        return OK, ""
    except TimeLimit:
        raise
    except Wrong as exc:
        return WRONG, f"wrong bytes: {exc}"
    except NydusError as exc:
        return CLEAN, str(exc).splitlines()[0] if str(exc) else "?"
    except BaseException:
        return INTERNAL, traceback.format_exc()[-4000:]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def batch_child(kind: str, seeds: list[int | None], ctx: dict[str, Any], wfd: int, limit: float) -> None:
    """In a forked child: run ``seeds`` one after the other, each under its own ``limit`` (SIGALRM),
    writing one frame per case to ``wfd`` as it ends. After a case that hit the limit the child
    stops (its state may be half-updated); the parent reruns the rest of the batch elsewhere."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGALRM, _on_alarm)
    for i, seed in enumerate(seeds):
        data, full = case_input(kind, seed, ctx["inputs"])
        try:
            signal.setitimer(signal.ITIMER_REAL, limit)
            code, detail = child(kind, data, ctx, full=full)
        except TimeLimit:
            code, detail = TIMED_OUT, "time limit (in-process alarm)"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        raw = detail.encode(errors="backslashreplace")[-4000:]
        os.write(wfd, FRAME.pack(i, code, len(raw)) + raw)
        if code == TIMED_OUT:
            return


Result = tuple[int | None, int, str, float]  # seed, outcome, detail, seconds


class Batch:
    """A forked child running a batch of cases of one kind; the parent's view of it."""

    def __init__(self, kind: str, seeds: list[int | None], ctx: dict[str, Any], *,
                 alone: bool = False) -> None:
        self.kind, self.seeds, self.alone = kind, seeds, alone
        self.limit = LIMIT[kind] * (RERUN_FACTOR if alone else 1)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = INTERNAL
            try:
                batch_child(kind, seeds, ctx, w, self.limit)
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        self.pid, self.fd = pid, r
        self.pos = 0  # index of the case running now
        self.case_start = time.monotonic()
        self.buf = b""
        self.stopped_on_limit = False
        self.first: Result | None = None  # set on the rerun of an internal error or wrong bytes

    def deadline(self) -> float:
        """When the parent kills the child: the alarm's limit plus slack, for a case stuck where a
        Python signal handler cannot run (a long call in C)."""
        return self.case_start + self.limit * 1.5 + 2.0

    def feed(self, part: bytes) -> list[Result]:
        """Take bytes from the pipe; return the cases they complete: (seed, code, detail, seconds)."""
        self.buf += part
        out = []
        while len(self.buf) >= FRAME.size:
            i, code, n = FRAME.unpack_from(self.buf)
            if len(self.buf) < FRAME.size + n:
                break
            detail = self.buf[FRAME.size:FRAME.size + n].decode(errors="replace")
            self.buf = self.buf[FRAME.size + n:]
            now = time.monotonic()
            out.append((self.seeds[i], code, detail, now - self.case_start))
            self.pos, self.case_start = i + 1, now
            self.stopped_on_limit = code == TIMED_OUT
        return out

    def finish(self, *, kill: bool = False) -> tuple[Result | None, list[int | None]]:
        """Reap the child (killing it first with ``kill``). Return the case it ended on without a
        report (killed: a limit hit; died: an internal error), or None, and the seeds it never ran."""
        if kill:
            os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        secs = time.monotonic() - self.case_start
        if self.pos >= len(self.seeds):
            return None, []
        rest = self.seeds[self.pos + 1:]
        if self.stopped_on_limit:
            return None, self.seeds[self.pos:]
        seed = self.seeds[self.pos]
        if kill:
            return (seed, TIMED_OUT, "time limit (killed by the parent)", secs), rest
        code = os.waitstatus_to_exitcode(status)
        return (seed, INTERNAL, f"child died without a report: exit {code}", secs), rest


def run_cases(kind: str, make_batch: Callable[[], list[int | None] | None], until: float, ctx: dict[str, Any],
              record: Callable[[str, int | None, int, str, float, bool], None], *, jobs: int) -> None:
    """Keep ``jobs`` batches of ``kind`` running until ``until`` (``make_batch()`` gives the next
    seeds, None when there are no more); ``record(kind, seed, outcome, detail, secs, rerun)`` gets
    each case. A case that hits its limit is rerun once alone in a fresh child with RERUN_FACTOR
    times the limit: only a second hit is a hang (a first hit is a stall of the loaded machine as
    often as not); the rest of its batch runs in a fresh child. An internal error or wrong bytes
    counts as it came; the case is rerun alone too, and its detail says whether it reproduces
    without the cases before it in the batch. Reruns finish even after ``until``."""
    running: dict[int, Batch] = {}
    pending: list[list[int | None]] = []  # seeds of batches cut short, to run in a fresh child
    reruns: list[tuple[int | None, Result | None]] = []  # (seed, first result if not a limit hit)
    exhausted = False

    def start_next() -> bool:
        nonlocal exhausted
        if reruns:
            seed, first = reruns.pop()
            b = Batch(kind, [seed], ctx, alone=True)
            b.first = first
        elif time.monotonic() >= until:
            return False
        elif pending:
            b = Batch(kind, pending.pop(), ctx)
        else:
            seeds = None if exhausted else make_batch()
            if not seeds:
                exhausted = True
                return False
            b = Batch(kind, seeds, ctx)
        running[b.fd] = b
        return True

    def outcome(b: Batch, res: Result) -> None:
        seed, code, detail, secs = res
        if b.first is not None:  # the rerun of an internal error / wrong bytes: does it reproduce?
            seed, first_code, first_detail, secs = b.first
            again = "yes" if code == first_code else f"no, alone: {NAMES.get(code, 'hang')}"
            record(kind, seed, first_code, f"{first_detail}\n(reproduced alone: {again})", secs, False)
        elif code == TIMED_OUT and not b.alone:
            reruns.append((seed, None))
        elif code in (INTERNAL, WRONG) and not b.alone and len(b.seeds) > 1:
            reruns.append((seed, res))
        else:
            record(kind, seed, HANG if code == TIMED_OUT else code, detail, secs, b.alone)

    def drain(b: Batch) -> bool:
        """Read what ``b``'s pipe holds now; True at end of file (the child is gone)."""
        while select.select([b.fd], [], [], 0)[0]:
            part = os.read(b.fd, 65536)
            if not part:
                return True
            for res in b.feed(part):
                outcome(b, res)
        return False

    while True:
        while len(running) < jobs and start_next():
            pass
        if not running:
            break
        wait = min(b.deadline() for b in running.values()) - time.monotonic()
        ready, _, _ = select.select(list(running), [], [], min(max(wait, 0.0), 0.5))
        for fd in ready:
            b = running[fd]
            if not drain(b):
                continue
            del running[fd]
            last, rest = b.finish()
            if last is not None:
                outcome(b, last)
            if rest:
                pending.append(rest)
        for fd, b in list(running.items()):
            if time.monotonic() <= b.deadline():
                continue
            ended = drain(b)  # a frame written just now moves the deadline on
            if not ended and time.monotonic() <= b.deadline():
                continue
            del running[fd]
            last, rest = b.finish(kill=not ended)
            if last is not None:
                outcome(b, last)
            if rest:
                pending.append(rest)
# -- FUSE cases ---------------------------------------------------------------------------------

def fuse_case(kind: str, data: bytes, ctx: dict[str, Any], limit: float) -> tuple[int, str, float]:
    """Mount a mutated bootstrap (or the image over a mutated blob) with nydusd; list and read
    everything through the kernel. With a mutated blob, bytes differing from the oracle are wrong."""
    t = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="fuse-", dir=ctx["scratch"]))
    boot, mnt, log = work / "m.boot", work / "mnt", work / "nydusd.log"
    blobs = ctx["blobs"]
    if kind == "bootstrap":
        boot.write_bytes(data)
    else:
        shutil.copyfile(ctx["boot"], boot)
        blobs = work / "blobs"
        blobs.mkdir()
        (blobs / ctx["blob_id"]).write_bytes(data)
    mnt.mkdir()
    cfg = work / "c.json"
    cfg.write_text(json.dumps({"device": {"backend": {"type": "localfs", "config": {"dir": str(blobs)}}},
                               "mode": "direct", "digest_validate": True}))
    nydusd = str(Path(sys.executable).parent / "nydusd")
    with open(log, "wb") as lf:
        proc = subprocess.Popen([nydusd, "-M", str(mnt), "-B", str(boot), "-C", str(cfg)], stdout=lf,
                                stderr=lf, stdin=subprocess.DEVNULL)
    try:
        deadline = t + limit
        while time.monotonic() < deadline and not os.path.ismount(mnt):
            if proc.poll() is not None:
                out = log.read_text(errors="replace")
                if proc.returncode == 70 or "Traceback" in out:
                    return INTERNAL, out[-2000:], time.monotonic() - t
                last = out.strip().splitlines()[-1] if out.strip() else "refused"
                return CLEAN, last, time.monotonic() - t
            time.sleep(0.05)
        if not os.path.ismount(mnt):
            return -1, "mount did not appear", time.monotonic() - t
        oracle = {k: v.hex() for k, v in ctx["oracle"].items()} if kind == "blob" else {}
        reader = subprocess.Popen([sys.executable, "-c", _FUSE_READER, str(mnt), json.dumps(oracle),
                                   json.dumps(sorted(ctx["oracle"]))], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        try:
            out_b, _ = reader.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            reader.kill()
            return TIMED_OUT, "reads through the mount did not finish", time.monotonic() - t
        out = out_b.decode(errors="replace")
        log_text = log.read_text(errors="replace")
        if proc.poll() is not None or "Traceback" in log_text or "internal error" in log_text:
            return INTERNAL, (out + log_text)[-2000:], time.monotonic() - t
        if "WRONG" in out:
            return WRONG, out[-1000:], time.monotonic() - t
        return (CLEAN if "ERRORS" in out else OK), out.strip()[-300:], time.monotonic() - t
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


_FUSE_READER = r"""
import json, os, sys
root, oracle = sys.argv[1], {k: bytes.fromhex(v) for k, v in json.loads(sys.argv[2]).items()}
paths = json.loads(sys.argv[3])
errors = 0
for top, dirs, files in os.walk(root):
    for n in dirs + files:
        try:
            os.lstat(os.path.join(top, n))
        except OSError:
            errors += 1
for path in paths:
    try:
        with open(root + path, "rb") as f:
            got = f.read()
    except OSError:
        errors += 1
        continue
    if path in oracle and got != oracle[path]:
        print("WRONG", path)
print("ERRORS" if errors else "OK", errors)
"""


def _preload() -> None:
    """Import and load in the parent what every child uses (children then start with it)."""
    import nydus_core.cli.storage_commands
    import nydus_core.fs
    import nydus_core.tools.check
    import nydus_core.tools.datasource
    import nydus_core.tools.inspect
    import nydus_core.tools.unpack
    from nydus_core.plugins import registry

    for kind, name in (("backend", "localfs"), ("compressor", "zstd"), ("compressor", "lz4_block"),
                       ("digester", "blake3"), ("digester", "sha256")):
        try:
            registry(kind).get(name)
        except NydusError:
            pass
    del nydus_core


# -- the run ------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=OUT / "robustness")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--fuse-share", type=float, default=0.06, help="share of the time for FUSE cases")
    ap.add_argument("--jobs", type=int, default=2, help="children running at once")
    ap.add_argument("--batch", type=int, default=48, help="cases per forked child")
    args = ap.parse_args()
    _preload()
    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    (out / "failures").mkdir(parents=True)
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    scratch = Path(tempfile.mkdtemp(prefix="nydus-robust-", dir=shm))
    base = scratch / "base"
    oracle = base_tree(base / "src")
    res = build(base / "src", "dir-rafs", bootstrap=base / "image.boot", blob_dir=base / "blobs",
                options=BuildOptions(chunk_size=0x1000))
    assert res.blob_info is not None
    tar = tar_of(base / "src")
    tgz = b"".join(gzip.compress(tar[a:a + 8192], mtime=0) for a in range(0, len(tar), 8192))  # multi-member
    ctx: dict[str, Any] = {"scratch": scratch, "boot": base / "image.boot", "blobs": base / "blobs",
                           "blob_id": res.blob_info.blob_id, "oracle": oracle, "tar": tar}
    inputs = {"bootstrap": (base / "image.boot").read_bytes(), "blob": (base / "blobs" / res.blob_info.blob_id
                                                                        ).read_bytes(),
              "tar": tar, "gzip": tgz}
    ctx["inputs"] = inputs
    warm = scratch / "warm.boot"  # lazy set-ups done once here, not again in every child
    warm.write_bytes(inputs["bootstrap"])
    exercise_bootstrap(warm, base / "blobs", oracle, full=False)
    gc.collect()
    gc.freeze()  # children share these objects' pages instead of copying them on the first gc
    total_s = args.minutes * 60
    fuse_s = total_s * args.fuse_share if shutil.which("fusermount3") or os.path.exists("/dev/fuse") else 0.0
    shares = {k: v / sum(SHARES.values()) * (total_s - fuse_s) for k, v in SHARES.items()}
    counts: dict[str, dict[str, int]] = {k: dict.fromkeys(NAMES.values(), 0) for k in [*SHARES, "fuse"]}
    stalls: dict[str, int] = dict.fromkeys(counts, 0)
    slowest: dict[str, float] = dict.fromkeys(counts, 0.0)
    failures: list[dict[str, Any]] = []
    sanity: list[tuple[str, int, str]] = []

    def keep(kind: str, seed: int | None, code: int, detail: str, secs: float, rerun: bool) -> None:
        sanity.append((kind, code, detail))

    for kind in inputs:  # sanity: the unmutated inputs are accepted
        once: list[list[int | None]] = [[None]]

        def unmutated(once: list[list[int | None]] = once) -> list[int | None] | None:
            return once.pop() if once else None

        run_cases(kind, unmutated, float("inf"), ctx, keep, jobs=1)
    for kind, code, detail in sanity:
        if code != OK:
            print(f"unmutated {kind} not accepted: {NAMES[code]}: {detail}")
            return 1
    print(f"seed {args.seed}; {args.minutes} min; batches of {args.batch}; scratch {scratch}; output {out}",
          flush=True)
    started = time.monotonic()
    case_no = 0

    def record(kind: str, seed: int | None, code: int, detail: str, secs: float, rerun: bool) -> None:
        counts[kind][NAMES[code]] += 1
        stalls[kind] += rerun and code != HANG
        slowest[kind] = max(slowest[kind], secs)
        if code in (INTERNAL, WRONG, HANG):
            src = kind
            if kind == "fuse":
                src = "fuse-bootstrap" if seed is not None and seed % 2 else "fuse-blob"
            data, _ = case_input(src.removeprefix("fuse-"), seed, inputs)
            name = f"{src}-{seed}"
            (out / "failures" / f"{name}.bin").write_bytes(data)
            (out / "failures" / f"{name}.txt").write_text(f"{NAMES[code]}\n{detail}\n")
            failures.append({"kind": src, "seed": seed, "outcome": NAMES[code], "detail": detail[-500:]})

    for kind, budget in shares.items():
        def make_batch() -> list[int | None]:
            nonlocal case_no
            case_no += args.batch
            return [args.seed * 1_000_003 + n for n in range(case_no - args.batch + 1, case_no + 1)]

        run_cases(kind, make_batch, time.monotonic() + budget, ctx, record, jobs=args.jobs)
        print(f"{kind}: {counts[kind]}; limit hits finished when rerun alone: {stalls[kind]}", flush=True)
    end = time.monotonic() + fuse_s
    while fuse_s and time.monotonic() < end:
        case_no += 1
        seed = args.seed * 1_000_003 + case_no
        kind = "bootstrap" if seed % 2 else "blob"
        data, _ = case_input(kind, seed, inputs)
        code, detail, secs = fuse_case(kind, data, ctx, LIMIT["fuse"])
        rerun = code == TIMED_OUT
        if rerun:  # once more alone, with a longer limit: only a second hit is a hang
            code, detail, secs = fuse_case(kind, data, ctx, LIMIT["fuse"] * RERUN_FACTOR)
        record("fuse", seed, HANG if code == TIMED_OUT else code, detail, secs, rerun)
    if fuse_s:
        print(f"fuse: {counts['fuse']}; limit hits finished when rerun alone: {stalls['fuse']}", flush=True)
    elapsed = time.monotonic() - started
    shutil.rmtree(scratch, ignore_errors=True)

    rows = [["input kind", "cases", "cases/s", "accepted", "clean errors", "internal errors", "hangs",
             "wrong bytes", "limit hits, rerun finished", "slowest case (s)"]]
    for kind, c in counts.items():
        n = sum(c.values())
        secs = shares.get(kind, fuse_s)
        rows.append([kind, str(n), f"{n / secs:.1f}" if secs else "-", str(c["accepted"]), str(c["clean"]),
                     str(c["internal"]), str(c["hang"]), str(c["wrong"]), str(stalls[kind]),
                     f"{slowest[kind]:.2f}"])
    print(table(rows))
    print(f"{sum(sum(c.values()) for c in counts.values())} cases in {elapsed / 60:.1f} min; "
          f"{len(failures)} failures saved under {out / 'failures'}")
    (out / "robustness.json").write_text(json.dumps({
        "seed": args.seed, "minutes": elapsed / 60, "counts": counts, "slowest_s": slowest,
        "limit_hits_rerun_finished": stalls, "batch": args.batch, "jobs": args.jobs,
        "load_average": os.getloadavg(),
        "failures": failures}, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
