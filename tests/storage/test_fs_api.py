"""The library API (nydus_core.fs) on real images: upstream's fixtures and images built with
nydus_core.builder, read through the real localfs backend and blobcache."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import random
import stat
import threading
from pathlib import Path

import pytest
from nydus_testsupport.fixtures import parse_tree_result, require_upstream
from nydus_testsupport.storage_helpers import build_image, localfs_config

from nydus_core.config import parse_config
from nydus_core.fs import open_fs, open_metadata


def _tree() -> dict[str, bytes | str | None]:
    rnd = random.Random(21)
    return {
        "/etc/os-release": b"NAME=nydus-py\nVERSION=1\n",
        "/etc/empty": b"",
        "/bin/tool": rnd.randbytes(300_000),
        "/lib/big.so": rnd.randbytes(3 * 0x10000 + 17),
        "/lib/text.txt": b"line\n" * 40_000,
        "/lib/link.so": "->big.so",
        "/abs": "->/etc/os-release",
        "/dirlink": "->lib",
        "/loop": "->loop",
        "/var/tmp": None,
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, dict[str, bytes | str | None]]:
    files = _tree()
    boot, blobs, _ = build_image(tmp_path_factory.mktemp("img"), files, chunk_size=0x10000,
                                 compressor="zstd", digester="blake3")
    return boot, blobs, files


def test_upstream_v5_fixture_every_file(tmp_path: Path) -> None:
    up = require_upstream()
    boot = up / "rafs-v5" / "sha256-nocompress-repeatable"
    entries, md5s = parse_tree_result(str(boot) + ".result")
    cfg = localfs_config(up / "rafs-v5" / "blobs", tmp_path / "cache", digest_validate=True)
    for _round in range(2):  # cold, then from the cache
        with open_fs(boot, cfg) as fs:
            for e in entries:
                st = fs.lstat(e.path)
                if e.kind == "link":
                    assert stat.S_ISLNK(st.st_mode) and fs.readlink(e.path) == e.target
                elif e.kind == "directory":
                    assert stat.S_ISDIR(st.st_mode)
                else:
                    assert hashlib.md5(fs.read_bytes(e.path)).hexdigest() == md5s[e.path]
            hard = fs.stat("/hardlink-test/foo")
            assert hard.st_nlink == 3
    assert len(md5s) >= 20


def test_upstream_v6_fixture(tmp_path: Path) -> None:
    up = require_upstream()
    cfg = localfs_config(up / "rafs-v6" / "blobs", tmp_path / "cache", digest_validate=True)
    with open_fs(up / "rafs-v6" / "rafs-v6-2.2.boot", cfg) as fs:
        assert fs.listdir("/") == ["lib.rs", "sync_io.rs"]
        assert hashlib.md5(fs.read_bytes("/lib.rs")).hexdigest() == "4709cf8873e419ecedc7d43fdee4a75f"
        assert hashlib.md5(fs.read_bytes("sync_io.rs")).hexdigest() == "5442bc7dc9dc5f985c7594e23866ae6f"


def test_paths_links_and_stat(built: tuple[str, str, dict], tmp_path: Path) -> None:
    boot, blobs, files = built
    with open_fs(boot, blob_dir=blobs, cache_dir=tmp_path / "c") as fs:
        assert fs.listdir("/") == ["abs", "bin", "dirlink", "etc", "lib", "loop", "var"]
        assert fs.listdir("/dirlink") == ["big.so", "link.so", "text.txt"]
        assert fs.read_bytes("/lib/link.so") == files["/lib/big.so"]
        assert fs.read_text("/abs") == files["/etc/os-release"].decode()
        assert fs.read_bytes("/dirlink/../etc/os-release") == files["/etc/os-release"]
        assert fs.readlink("/lib/link.so") == "big.so"
        assert stat.S_ISLNK(fs.lstat("/lib/link.so").st_mode)
        st = fs.stat("/lib/link.so")
        assert stat.S_ISREG(st.st_mode) and st.st_size == len(files["/lib/big.so"])
        assert fs.exists("/var/tmp") and fs.isdir("/var/tmp") and not fs.exists("/nope")
        assert fs.isfile("/abs") and fs.islink("/abs") and not fs.islink("/etc")
        with pytest.raises(FileNotFoundError) as nf:
            fs.stat("/etc/nope")
        assert nf.value.filename == "/etc/nope"
        with pytest.raises(NotADirectoryError):
            fs.listdir("/etc/os-release")
        with pytest.raises(IsADirectoryError):
            fs.open("/etc")
        with pytest.raises(OSError) as loop:
            fs.stat("/loop")
        assert loop.value.errno == errno.ELOOP
        with pytest.raises(OSError) as inval:
            fs.readlink("/etc/os-release")
        assert inval.value.errno == errno.EINVAL
        with pytest.raises(OSError) as nodata:
            fs.getxattr("/etc/os-release", "user.nothing")
        assert nodata.value.errno == errno.ENODATA
        assert fs.listxattr("/etc/os-release") == []
        walked = {d: (sorted(dn), sorted(fn)) for d, dn, fn in fs.walk("/")}
        assert walked["/"] == (["bin", "etc", "lib", "var"], ["abs", "dirlink", "loop"])
        assert walked["/var/tmp"] == ([], [])
        names = dict(fs.scandir("/lib"))
        assert stat.S_ISLNK(names["link.so"].st_mode)


def test_file_objects(built: tuple[str, str, dict]) -> None:
    boot, blobs, files = built
    data = files["/lib/text.txt"]
    with open_fs(boot, blob_dir=blobs) as fs:
        with fs.open("/lib/text.txt", buffering=0) as raw:
            assert raw.read(10) == data[:10]
            assert raw.seek(-5, os.SEEK_END) == len(data) - 5 and raw.read() == data[-5:]
            raw.seek(100)
            buf = bytearray(50)
            assert raw.readinto(buf) == 50 and bytes(buf) == data[100:150]
            assert raw.pread(7, 1000) == data[1000:1007] and raw.tell() == 150
        with fs.open("/lib/text.txt") as f:
            assert isinstance(f, io.BufferedReader)
            assert f.readline() == b"line\n"
        with fs.open("/etc/os-release", "r") as t:
            assert t.read().splitlines()[0] == "NAME=nydus-py"
        with pytest.raises(ValueError, match="read-only"):
            fs.open("/etc/os-release", "wb")
        assert fs.read_bytes("/etc/empty") == b""


def test_threads_share_one_fs(built: tuple[str, str, dict], tmp_path: Path) -> None:
    boot, blobs, files = built
    regular = {p: d for p, d in files.items() if isinstance(d, bytes)}
    errors: list[BaseException] = []
    with open_fs(boot, blob_dir=blobs, cache_dir=tmp_path / "c") as fs:

        def job(k: int) -> None:
            rnd = random.Random(k)
            try:
                for _ in range(40):
                    path, data = rnd.choice(sorted(regular.items()))
                    with fs.open(path, buffering=0) as f:
                        off = rnd.randint(0, len(data))
                        n = rnd.randint(0, 70_000)
                        f.seek(off)
                        assert f.read(n) == data[off:off + n]
                        assert f.pread(4096, off) == data[off:off + 4096]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=job, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_config_file_v1_and_v2(built: tuple[str, str, dict], tmp_path: Path) -> None:
    boot, blobs, files = built
    v1 = tmp_path / "nydusd.json"
    v1.write_text(json.dumps(localfs_config(blobs, tmp_path / "c1", digest_validate=True, amplify_io=0)))
    v2 = tmp_path / "nydusd.toml"
    v2.write_text(f'version = 2\n[backend]\ntype = "localfs"\n[backend.localfs]\ndir = "{blobs}"\n'
                  f'[cache]\ntype = "filecache"\n[cache.filecache]\nwork_dir = "{tmp_path / "c2"}"\n'
                  f'[rafs]\nvalidate = true\nbatch_size = 0\n')
    assert parse_config(json.loads(v1.read_text())).digest_validate
    for cfg in (v1, v2):
        with open_fs(boot, cfg) as fs:
            assert fs.read_bytes("/bin/tool") == files["/bin/tool"]
            assert fs.pipeline.digest_validate and fs.pipeline.amplify_io == 0
    assert any((tmp_path / "c1").glob("*.blob.data")) and any((tmp_path / "c2").glob("*.blob.data"))


def test_metadata_only(built: tuple[str, str, dict]) -> None:
    boot, _, files = built
    with open_metadata(boot) as fs:
        assert fs.stat("/bin/tool").st_size == len(files["/bin/tool"])
        from nydus_core.errors import UsageError

        with pytest.raises(UsageError, match="metadata only"):
            fs.open("/bin/tool")
