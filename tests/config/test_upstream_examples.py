"""Configs as upstream documents them (upstream-surface.md's v1 block, nydusd docs, the v2 layout)."""

from __future__ import annotations

import copy
import json

import pytest

from nydus_core.config import PrefetchConfig, parse_config
from nydus_core.errors import ConfigError

# upstream-surface.md "JSON config schema v1" block with its comments stripped; the placeholder
# backend is filled with a localfs backend.
SURFACE_V1 = """
{
  "device": {
    "id": "",
    "backend": { "type": "localfs", "config": { "dir": "/var/lib/nydus/blobs" } },
    "external_backends": [ { "type": "...", "patch": {"k":"v"}, "config": {"k":"v"} } ],
    "cache": {
      "type": "blobcache",
      "compressed": false,
      "validate": false,
      "config": { "work_dir": "/var/lib/nydus/cache" }
    }
  },
  "mode": "direct",
  "digest_validate": false,
  "iostats_files": false,
  "enable_xattr": false,
  "access_pattern": false,
  "latest_read_files": false,
  "amplify_io": 1048576,
  "fs_prefetch": {
    "enable": false,
    "threads_count": 8,
    "merging_size": 1048576,
    "bandwidth_rate": 0,
    "prefetch_all": true,
    "stream_prefetch": false
  }
}
"""

# The registry example nydus-snapshotter users write (backend keys from upstream-surface.md's table).
SNAPSHOTTER_REGISTRY = {
    "device": {
        "backend": {
            "type": "registry",
            "config": {
                "scheme": "https",
                "host": "registry.example.com",
                "repo": "library/nginx",
                "auth": "<registry auth token>",
                "timeout": 5,
                "connect_timeout": 5,
                "retry_limit": 0,
            },
        },
        "cache": {"type": "blobcache", "config": {"work_dir": "/tmp/cache"}},
    },
    "mode": "direct",
    "digest_validate": False,
    "iostats_files": False,
    "enable_xattr": True,
    "fs_prefetch": {"enable": True, "threads_count": 10, "merging_size": 131072, "bandwidth_rate": 1048576},
}

# A v2 TOML laid out as upstream's v2 example is: every backend table side by side (only the one
# named by `type` is used), a misspelt `registy` table, and file-cache options put directly under
# [cache] (where upstream ignores them).
V2_LAYOUT = """
version = 2
id = "my_id"

[backend]
type = "localfs"

[backend.localfs]
blob_file = ""
dir = "/tmp"
alt_dirs = ["/var/nydus/cache"]

[backend.oss]
endpoint = "my_endpoint"
bucket_name = "my_bucket_name"

[[backend.oss.mirrors]]
host = "http://127.0.0.1:65001"

[backend.registy]
host = "my.registry.com"
repo = "nydus"

[cache]
type = "filecache"
compressed = true
validate = true
enable_encryption = true

[cache.filecache]
work_dir = "."

[cache.fscache]
work_dir = "."

[cache.prefetch]
enable = true
threads = 8
batch_size = 1000000
bandwidth_limit = 10000000

[rafs]
mode = "direct"
batch_size = 1000000
validate = true
enable_xattr = true
iostats_files = false
access_pattern = false
latest_read_files = false

[rafs.prefetch]
enable = true
threads = 8
batch_size = 1000000
bandwidth_limit = 10000000
prefetch_all = true
"""


def test_surface_v1_block_refuses_its_external_backends() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(SURFACE_V1, source="nydusd.json")
    assert info.value.key == "device.external_backends"
    assert str(info.value).startswith("nydusd.json: device.external_backends: 1 external backend(s) given")
    assert "not supported" in str(info.value)


def test_surface_v1_block_without_external_backends() -> None:
    data = json.loads(SURFACE_V1)
    data["device"]["external_backends"] = []
    cfg = parse_config(data, source="nydusd.json")
    assert cfg.warnings == ()
    assert cfg.backend is not None and cfg.backend.config["dir"] == "/var/lib/nydus/blobs"
    assert cfg.cache is not None and cfg.cache.work_dir == "/var/lib/nydus/cache"
    # Every value in the block is upstream's default, so leaving the keys out changes nothing.
    bare = copy.deepcopy(data)
    for key in ("mode", "digest_validate", "iostats_files", "enable_xattr", "access_pattern",
                "latest_read_files", "amplify_io", "fs_prefetch"):
        del bare[key]
    del bare["device"]["id"], bare["device"]["external_backends"]
    for key in ("compressed", "validate"):
        del bare["device"]["cache"][key]
    assert parse_config(bare) == cfg


def test_snapshotter_registry_example() -> None:
    cfg = parse_config(SNAPSHOTTER_REGISTRY, source="config.json")
    assert cfg.warnings == ()
    assert cfg.backend is not None
    assert cfg.backend.type == "registry"
    assert cfg.backend.config["host"] == "registry.example.com"
    assert cfg.backend.config["auth"] == "<registry auth token>"
    assert cfg.enable_xattr is True
    assert cfg.fs_prefetch == PrefetchConfig(
        enable=True, threads_count=10, merging_size=131072, bandwidth_rate=1048576, prefetch_all=True
    )
    assert parse_config(cfg.to_v1_dict()) == cfg


def test_v2_layout_uses_the_selected_tables_and_reports_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    cfg = parse_config(V2_LAYOUT, source="nydusd-config-v2.toml")
    assert cfg.id == "my_id"
    assert cfg.backend is not None and cfg.backend.type == "localfs"
    assert cfg.backend.config["alt_dirs"] == ("/var/nydus/cache",)
    assert cfg.cache is not None and cfg.cache.type == "blobcache" and cfg.cache.validate is True
    assert cfg.digest_validate is True and cfg.enable_xattr is True
    assert cfg.amplify_io == 1000000
    assert cfg.fs_prefetch == PrefetchConfig(True, 8, 1000000, 10000000, True, False)
    f = "nydusd-config-v2.toml"
    assert sorted(cfg.warnings) == sorted(
        [
            f"{f}: backend.registy: unknown key, ignored (did you mean 'registry'?)",
            f"{f}: cache.enable_encryption: unknown key, ignored",
            f"{f}: cache.compressed: ignored: the cache keeps uncompressed chunks "
            "(upstream no longer uses it)",
        ]
    )
    for warning in cfg.warnings:
        assert warning in caplog.text


def test_v2_layout_with_strict_mode_refuses_the_typo() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(V2_LAYOUT, source="x.toml", strict=True)
    assert str(info.value) == "x.toml: backend.registy: unknown key (did you mean 'registry'?)"
