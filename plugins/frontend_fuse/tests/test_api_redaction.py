"""Secrets in a mounted image's config never reach an API client or the daemon's log: a password in
``proxy.url`` and in a registry ``host`` (GET /api/v1/daemon, a refused mount's error message)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nydus_frontend_fuse.ctl import ApiError
from nydus_testsupport.fuse import NydusdProcess

from nydus_core.builder import BuildOptions, build


def test_daemon_answers_and_log_mask_credentials(need_fuse: None, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x")
    boot = tmp_path / "img.boot"
    build(tmp_path / "src", "dir-rafs", bootstrap=boot, blob_dir=tmp_path / "blobs",
          options=BuildOptions(chunk_size=0x1000))
    backend = {"type": "registry", "config": {
        "host": "127.0.0.1:1", "repo": "r/x", "scheme": "http", "auth": "dXNlcjpTZWNyZXQ=",
        "proxy": {"url": "http://pu:ProxyPw99@127.0.0.1:2", "fallback": True}}}
    mnt, sock = tmp_path / "mnt", tmp_path / "api.sock"
    mnt.mkdir()
    with NydusdProcess(mnt, ["--log-level", "debug"], apisock=sock) as d:
        config = json.dumps({"device": {"backend": backend}})
        d.api.call("POST", "/api/v1/mount", {"mountpoint": "/a"},
                   {"source": str(boot), "fs_type": "rafs", "config": config})
        info = d.api.call("GET", "/api/v1/daemon")
        cfg = info["backend_collection"]["/a"]["config"]
        assert cfg["device"]["backend"]["config"]["proxy"]["url"] == "http://***@127.0.0.1:2"
        assert cfg["device"]["backend"]["config"]["auth"] == "***"
        bad = {"type": "registry", "config": {"host": "user:Passw0rdX@127.0.0.1:1", "repo": "r/x"}}
        with pytest.raises(ApiError) as err:
            d.api.call("POST", "/api/v1/mount", {"mountpoint": "/b"},
                       {"source": str(boot), "config": json.dumps({"device": {"backend": bad}})})
        assert "***@127.0.0.1:1" in str(err.value)
        with pytest.raises(OSError):  # neither the proxy nor the registry answers: EIO, logged
            (mnt / "a" / "f").read_bytes()
        answers = json.dumps(info) + str(err.value)
        log = Path(d.log_path).read_text()
    assert "127.0.0.1" in log  # the log speaks of the backends, without their credentials
    for secret in ("ProxyPw99", "Passw0rdX", "dXNlcjpTZWNyZXQ="):
        assert secret not in answers and secret not in log
