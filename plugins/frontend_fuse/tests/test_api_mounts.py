"""One daemon started without --bootstrap serving several images under sub-paths via the HTTP API
(as nydus-snapshotter drives a shared daemon), and nydusctl against it."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from nydus_frontend_fuse.ctl import ApiError
from nydus_testsupport.fuse import NydusdProcess, script, snapshot_tree
from nydus_testsupport.trees import make_random_tree

from nydus_core.builder import BuildOptions, build


def _image(tmp: Path, name: str, seed: int) -> tuple[Path, Path, str]:
    src = make_random_tree(tmp / f"src-{name}", seed, entries=80)
    boot = tmp / f"{name}.boot"
    build(src, "dir-rafs", bootstrap=boot, blob_dir=tmp / "blobs", options=BuildOptions(chunk_size=0x1000))
    cfg = json.dumps({"device": {
        "backend": {"type": "localfs", "config": {"dir": str(tmp / "blobs")}},
        "cache": {"type": "blobcache", "config": {"work_dir": str(tmp / f"cache-{name}")}}},
        "digest_validate": True, "access_pattern": True})
    return src, boot, cfg


def ctl(sock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([script("nydusctl"), "--sock", str(sock), *args], capture_output=True, text=True,
                          timeout=60)


def test_two_images_in_one_daemon(need_fuse: None, tmp_path: Path) -> None:
    src_a, boot_a, cfg_a = _image(tmp_path, "a", 1)
    src_b, boot_b, cfg_b = _image(tmp_path, "b", 2)
    mnt, sock = tmp_path / "mnt", tmp_path / "api.sock"
    mnt.mkdir()
    with NydusdProcess(mnt, [], apisock=sock) as d:
        api = d.api
        assert os.listdir(mnt) == []
        api.call("POST", "/api/v1/mount", {"mountpoint": "/a"},
                 {"source": str(boot_a), "fs_type": "rafs", "config": cfg_a, "prefetch_files": []})
        api.call("POST", "/api/v1/mount", {"mountpoint": "/deep/b"},
                 {"source": str(boot_b), "fs_type": "rafs", "config": cfg_b})
        assert sorted(os.listdir(mnt)) == ["a", "deep"]
        assert snapshot_tree(mnt / "a") == snapshot_tree(src_a)
        assert snapshot_tree(mnt / "deep" / "b") == snapshot_tree(src_b)
        info = api.call("GET", "/api/v1/daemon")
        assert set(info["backend_collection"]) == {"/a", "/deep/b"}
        assert info["backend_collection"]["/a"]["source"] == str(boot_a)
        # per-instance metrics by id
        assert api.call("GET", "/api/v1/metrics", {"id": "/a"})["id"] == "/a"
        assert api.call("GET", "/api/v1/metrics", {"id": "/deep/b"})["data_read"] > 0
        with pytest.raises(ApiError, match="several images"):
            api.call("GET", "/api/v1/metrics")
        # errors: duplicate mountpoint, bad bootstrap, bad config, missing fields
        with pytest.raises(ApiError, match="409"):
            api.call("POST", "/api/v1/mount", {"mountpoint": "/a"}, {"source": str(boot_b), "config": cfg_b})
        with pytest.raises(ApiError, match=r"nope\.boot"):
            api.call("POST", "/api/v1/mount", {"mountpoint": "/c"},
                     {"source": str(tmp_path / "nope.boot"), "config": cfg_a})
        with pytest.raises(ApiError, match=r"device\.backend\.type"):
            api.call("POST", "/api/v1/mount", {"mountpoint": "/c"},
                     {"source": str(boot_a), "config": json.dumps({"device": {"backend": {"type": "zzz"}}})})
        with pytest.raises(ApiError, match="mountpoint"):
            api.call("POST", "/api/v1/mount", None, {"source": str(boot_a), "config": cfg_a})
        assert sorted(os.listdir(mnt)) == ["a", "deep"]
        # remount /a with image b: new content, old inodes gone
        api.call("PUT", "/api/v1/mount", {"mountpoint": "/a"}, {"source": str(boot_b), "config": cfg_b})
        assert snapshot_tree(mnt / "a") == snapshot_tree(src_b)
        # umount while a file of it is open: the open file keeps reading
        some = next(p for p in sorted(src_b.rglob("*")) if p.is_file() and not p.is_symlink()
                    and p.stat().st_size > 0)
        rel = some.relative_to(src_b)
        with open(mnt / "deep" / "b" / rel, "rb") as held:
            api.call("DELETE", "/api/v1/mount", {"mountpoint": "/deep/b"})
            assert held.read() == some.read_bytes()
        with pytest.raises(OSError) as exc:
            os.stat(mnt / "deep" / "b" / rel)
        assert exc.value.errno == errno.ENOENT
        with pytest.raises(ApiError, match="404"):
            api.call("DELETE", "/api/v1/mount", {"mountpoint": "/deep/b"})
        assert snapshot_tree(mnt / "a") == snapshot_tree(src_b)
        assert d.alive()


def test_nydusctl(need_fuse: None, tmp_path: Path) -> None:
    src_a, boot_a, cfg_a = _image(tmp_path, "a", 3)
    (tmp_path / "a.json").write_text(cfg_a)
    mnt, sock = tmp_path / "mnt", tmp_path / "api.sock"
    mnt.mkdir()
    with NydusdProcess(mnt, ["--id", "ctl-test"], apisock=sock) as d:
        res = ctl(sock, "mount", "--source", str(boot_a), "--config", str(tmp_path / "a.json"),
                  "--mountpoint", "/img")
        assert res.returncode == 0, res.stderr
        assert snapshot_tree(mnt / "img") == snapshot_tree(src_a)
        res = ctl(sock, "info")
        assert res.returncode == 0 and "RUNNING" in res.stdout and "/img" in res.stdout
        raw = json.loads(ctl(sock, "--raw", "info").stdout)
        assert raw["id"] == "ctl-test"
        for kind, key in (("fsstats", "data_read"), ("backend", "read_count"), ("cache", "entries_count"),
                          ("pattern", None)):
            res = ctl(sock, "--raw", "metrics", kind)
            assert res.returncode == 0, res.stderr
            if key:
                assert key in json.loads(res.stdout)
        res = ctl(sock, "set", "log-level", "debug")
        assert res.returncode == 0
        res = ctl(sock, "umount", "--mountpoint", "/img")
        assert res.returncode == 0 and not os.path.exists(mnt / "img")
        res = ctl(sock, "umount", "--mountpoint", "/img")
        assert res.returncode != 0 and res.stderr.count("\n") == 1 and "404" in res.stderr
        res = ctl(sock, "exit")
        assert res.returncode == 0
        assert d.wait(20) == 0
    res = ctl(sock, "info")
    assert res.returncode != 0 and "no such API socket" in res.stderr


def test_api_socket_mode_and_error_answers(need_fuse: None, tmp_path: Path) -> None:
    """The real daemon's API socket is 0600; every error is upstream's one-line JSON; a body over
    the cap is refused with 413; the daemon keeps serving after each."""
    from nydus_frontend_fuse.httpserver import MAX_BODY

    mnt, sock = tmp_path / "mnt", tmp_path / "api.sock"
    mnt.mkdir()
    with NydusdProcess(mnt, [], apisock=sock) as d:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600 and stat.S_ISSOCK(os.stat(sock).st_mode)
        api = d.api
        cases = [
            ("GET", "/api/v1/nope", None, 404, "no such API path: /api/v1/nope"),
            ("DELETE", "/api/v1/daemon", None, 405, "method DELETE not allowed on /api/v1/daemon"),
            ("PUT", "/api/v1/daemon", b"{x", 400, "request body is not valid JSON"),
            ("PUT", "/api/v1/daemon", b'{"log_level": "loud"}', 400,
             "unknown log_level 'loud' (trace, debug, info, warn, error)"),
            ("POST", "/api/v1/mount?mountpoint=/a", bytes(MAX_BODY + 1), 413, "request body too large"),
            ("GET", "/api/v1/metrics", None, 404, "no image is mounted"),
        ]
        for method, path, body, status, message in cases:
            resp = api.request(method, path, content=body)
            assert resp.status_code == status, (method, path, resp.text)
            assert resp.headers["content-type"] == "application/json" and "\n" not in resp.text
            answer = resp.json()
            assert set(answer) == {"code", "message"} and message in answer["message"], answer
        info = api.call("GET", "/api/v1/daemon")
        assert info["state"] == "RUNNING" and d.alive()
