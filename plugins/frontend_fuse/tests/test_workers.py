"""Worker tasks: one pyfuse3 task serves inline requests; a read waiting on the backend gets another
task started, so the daemon keeps answering while it waits (``fusetasks.LazyWorkers``)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pyfuse3
import pytest
import trio
from nydus_frontend_fuse.fusetasks import LazyWorkers, ReadLock
from nydus_testkit.servers import BlackholeServer
from nydus_testsupport.fuse import NydusdProcess

from nydus_core.builder import BuildOptions, build

HUNG_READ_TIMEOUT = 2  # seconds the registry backend waits on the silent server


def test_lazy_workers_hold_spawns_until_a_handler_waits() -> None:
    workers = LazyWorkers()
    assert workers.install()
    ran: list[str] = []

    async def worker(name: str) -> None:
        ran.append(name)

    async def main() -> None:
        async def first(nursery: object) -> None:
            # what pyfuse3's first worker does: asks for more workers while it serves
            nursery.start_soon(worker, "second", name="w2")
            nursery.start_soon(worker, "third", name="w3")
            await trio.sleep(0.01)
            assert ran == [] and len(workers.pending) == 2  # held back
            workers.before_wait()  # a handler is about to wait: one more worker now
            await trio.sleep(0.01)
            assert ran == ["third"] and workers.started == 1

        async with pyfuse3.trio.open_nursery() as nursery:  # what pyfuse3.main opens
            nursery.start_soon(first, nursery, name="w1")  # the first worker starts at once
        assert workers.pending == [] and workers.nursery is None  # dropped when the loop ends

    try:
        assert pyfuse3.trio is not trio and pyfuse3.trio.Lock is ReadLock
        assert pyfuse3.trio.lowlevel is trio.lowlevel
        trio.run(main)
    finally:
        workers.uninstall()
    assert pyfuse3.trio is trio


def test_read_lock_excludes_and_hands_over_in_order() -> None:
    log: list[str] = []

    async def holder(lock: ReadLock, name: str, hold: float) -> None:
        async with lock:
            log.append(f"{name}+")
            await trio.sleep(hold)
            log.append(f"{name}-")

    async def main() -> None:
        lock = ReadLock()
        async with trio.open_nursery() as nursery:
            for i, name in enumerate("abc"):
                nursery.start_soon(holder, lock, name, 0.02)
                await trio.sleep(0.001 * (i + 1))
        # a waiter that is cancelled while parked does not take the lock
        async with trio.open_nursery() as nursery:
            nursery.start_soon(holder, lock, "d", 0.05)
            await trio.sleep(0.01)
            with trio.move_on_after(0.01):
                async with lock:
                    log.append("never")
            await trio.sleep(0.1)
        async with lock:  # free again
            log.append("e")

    trio.run(main)
    assert log == ["a+", "a-", "b+", "b-", "c+", "c-", "d+", "d-", "e"]


@pytest.mark.parametrize("flags", [[], ["--eager-fuse-workers"]], ids=["lazy", "eager"])
def test_a_hung_backend_read_does_not_stall_other_requests(need_fuse: None, tmp_path: Path,
                                                           flags: list[str]) -> None:
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (src / name).write_bytes(name.encode() * 50_000)
    (src / "dir" / "inner").write_text("x")
    boot, blobs = tmp_path / "img.boot", tmp_path / "blobs"
    build(src, "dir-rafs", bootstrap=boot, blob_dir=blobs, options=BuildOptions(compressor="lz4_block"))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with BlackholeServer() as hole:
        cfg = tmp_path / "cfg.json"
        cfg.write_text(json.dumps({"device": {
            "backend": {"type": "registry", "config": {
                "scheme": "http", "host": hole.address, "repo": "test/hung",
                "timeout": HUNG_READ_TIMEOUT, "connect_timeout": HUNG_READ_TIMEOUT, "retry_limit": 0}},
            "cache": {"type": "blobcache", "config": {"work_dir": str(tmp_path / "cache")}}}}))
        with NydusdProcess(mnt, ["-C", cfg, "-B", boot, *flags]):
            outcomes: dict[str, tuple[float, str]] = {}

            def read(name: str) -> None:
                t = time.monotonic()
                try:
                    (mnt / name).read_bytes()
                    what = "data"
                except OSError as exc:
                    what = os.strerror(exc.errno or 0)
                outcomes[name] = (time.monotonic() - t, what)

            readers = [threading.Thread(target=read, args=(n,)) for n in ("a", "b")]
            for r in readers:
                r.start()
            time.sleep(0.3)  # both reads now wait on the silent server
            t = time.monotonic()
            st = os.stat(mnt / "c")
            names = sorted(os.listdir(mnt / "dir"))
            served_in = time.monotonic() - t
            waiting = [r.is_alive() for r in readers]
            for r in readers:
                r.join(60)
            assert st.st_size == 50_000 and names == ["inner"]
            assert all(waiting), outcomes  # the reads were still pending while we were answered
            assert served_in < 1.0, f"metadata took {served_in:.2f}s while two reads waited"
            for name in ("a", "b"):
                took, what = outcomes[name]
                assert took >= HUNG_READ_TIMEOUT - 1 and what == os.strerror(5), outcomes  # EIO
