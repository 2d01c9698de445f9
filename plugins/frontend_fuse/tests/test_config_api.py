"""``GET|PUT /api/v1/config`` through the real API socket of a real nydusd: the running config with no
secret in it, and new registry credentials taking effect on a live mount (a real registry with Basic
auth)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from nydus_frontend_fuse.ctl import ApiError
from nydus_testsupport.fuse import NydusdProcess
from nydus_testsupport.registry import RegistryFlavour, registry_basic  # noqa: F401

from nydus_core.builder import BuildOptions, build
from nydus_core.rafs.image import open_image


def test_get_masks_and_put_replaces_registry_auth(need_fuse: None, tmp_path: Path,
                                                   registry_basic: RegistryFlavour) -> None:  # noqa: F811
    src = tmp_path / "src"
    src.mkdir()
    payload = bytes(range(256)) * 64
    (src / "f").write_bytes(payload)
    boot = tmp_path / "img.boot"
    build(src, "dir-rafs", bootstrap=boot, blob_dir=tmp_path / "blobs",
          options=BuildOptions(chunk_size=0x1000))
    img = open_image(str(boot))
    (blob_id,) = [b.blob_id for b in img.blobs]
    getattr(img, "close", lambda: None)()
    with registry_basic.client() as c:
        c.push_blob("cfgapi/app", tmp_path / "blobs" / blob_id, digest=f"sha256:{blob_id}")
    wrong = base64.b64encode(b"alice:not-her-password").decode()
    backend = {"type": "registry", "config": registry_basic.backend_config("cfgapi/app", auth=wrong)}
    backend["config"]["proxy"] = {"url": "http://pu:ProxyPw99@127.0.0.1:2", "fallback": True}
    mnt, sock = tmp_path / "mnt", tmp_path / "api.sock"
    mnt.mkdir()
    with NydusdProcess(mnt, [], apisock=sock) as d:
        d.api.call("POST", "/api/v1/mount", {"mountpoint": "/a"},
                   {"source": str(boot), "fs_type": "rafs",
                    "config": json.dumps({"device": {"backend": backend}})})
        got = d.api.call("GET", "/api/v1/config", {"id": "/a"})
        assert got["device"]["backend"]["type"] == "registry"
        assert got["device"]["backend"]["config"]["repo"] == "cfgapi/app"
        assert got["device"]["backend"]["config"]["auth"] == "***"
        assert got["device"]["backend"]["config"]["proxy"]["url"] == "http://***@127.0.0.1:2"
        text = json.dumps(got)
        assert wrong not in text and "ProxyPw99" not in text and "not-her-password" not in text
        assert d.api.call("GET", "/api/v1/config") == got          # the only instance by default

        with pytest.raises(OSError):                               # wrong credentials: the read fails
            (mnt / "a" / "f").read_bytes()
        d.api.call("PUT", "/api/v1/config", {"id": "/a"}, {"registry_auth": registry_basic.auth})
        assert (mnt / "a" / "f").read_bytes() == payload           # the new ones are used at once
        assert registry_basic.auth not in json.dumps(d.api.call("GET", "/api/v1/config", {"id": "/a"}))

        for body, word in (({"digest_validate": True}, "digest_validate"), ({"registry_auth": 5}, "base64"),
                           ({}, "JSON object")):
            with pytest.raises(ApiError, match=word):
                d.api.call("PUT", "/api/v1/config", {"id": "/a"}, body)
        with pytest.raises(ApiError, match="no instance"):
            d.api.call("GET", "/api/v1/config", {"id": "/nope"})
