"""Every validation error names the file and the key path, shows the bad value and what is allowed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nydus_core.config import UnknownConfigPluginError, load_config, parse_config
from nydus_core.errors import ConfigError, UnknownPluginError

SOURCE = "/etc/nydus/nydusd.json"
LOCALFS = {"type": "localfs", "config": {"dir": "/blobs"}}
RANGE_IO = "(allowed: 0..268435456 (0x10000000))"


def dev(**device: Any) -> dict[str, Any]:
    return {"device": device}


def registry(**options: Any) -> dict[str, Any]:
    return dev(backend={"type": "registry", "config": {"host": "h:5000", "repo": "ns/r", **options}})


def v2(**top: Any) -> dict[str, Any]:
    return {"version": 2, **top}


V1_CASES: list[tuple[dict[str, Any], str, str]] = [
    # device
    ({"device": []}, "device", "expected an object (a TOML table), got an array"),
    (dev(id=5), "device.id", "expected a string, got 5"),
    (dev(backend="localfs"), "device.backend", 'expected an object (a TOML table), got "localfs"'),
    (dev(backend={"config": {}}), "device.backend.type",
     "missing backend type (installed backends: localfs, registry)"),
    (dev(backend={"type": ""}), "device.backend.type",
     "missing backend type (installed backends: localfs, registry)"),
    (dev(backend={"type": 3}), "device.backend.type", "expected a string, got 3"),
    (dev(backend={"type": "s3"}), "device.backend.type",
     "Unknown backend 's3'. Installed backends: localfs, registry. "
     "Install it with: pip install nydus-backend-s3"),
    (dev(backend={"type": "locafs"}), "device.backend.type",
     "Unknown backend 'locafs'. Installed backends: localfs, registry. Did you mean 'localfs'?"),
    (dev(backend={"type": "localfs", "config": "dir=/x"}), "device.backend.config",
     'expected an object (a TOML table), got "dir=/x"'),
    # backend options, validated by the plugin, keys prefixed by the config layer
    (dev(backend={"type": "localfs"}), "device.backend.config.dir",
     "either 'dir' or 'blob_file' is required"),
    (dev(backend={"type": "localfs", "config": {"dir": "/a", "alt_dirs": ["/b", 3]}}),
     "device.backend.config.alt_dirs[1]", "expected a string, got 3"),
    (dev(backend={"type": "localfs", "config": {"dir": "/a", "alt_dirs": "/b"}}),
     "device.backend.config.alt_dirs", 'expected an array of strings, got "/b"'),
    (dev(backend={"type": "registry", "config": {"repo": "r"}}), "device.backend.config.host",
     "missing (this key is required)"),
    (registry(host=""), "device.backend.config.host", "must not be empty"),
    (registry(scheme="ftp"), "device.backend.config.scheme",
     '"ftp" is not allowed (allowed: "https", "http", "")'),
    (registry(timeout="5s"), "device.backend.config.timeout", 'expected an integer, got "5s"'),
    (registry(retry_limit=300), "device.backend.config.retry_limit", "300 is out of range (allowed: 0..255)"),
    (registry(auth=7), "device.backend.config.auth", "expected a string, got 7"),
    (registry(proxy={"fallback": "yes"}), "device.backend.config.proxy.fallback",
     'expected a boolean, got "yes"'),
    (registry(proxy=[]), "device.backend.config.proxy", "expected an object (a TOML table), got an array"),
    # external backends
    (dev(external_backends={}), "device.external_backends", "expected an array, got an object"),
    (dev(external_backends=["x"]), "device.external_backends[0]",
     "expected an object with 'type', 'patch' and 'config'"),
    (dev(external_backends=[{"type": 1}]), "device.external_backends[0].type", "expected a string"),
    # cache
    (dev(cache="blobcache"), "device.cache", 'expected an object (a TOML table), got "blobcache"'),
    (dev(cache={"type": 5}), "device.cache.type", "expected a string, got 5"),
    (dev(cache={"type": "fscache"}), "device.cache.type",
     "cache type 'fscache' is not supported: it needs the kernel's cachefiles on-demand mode "
     "(EROFS over fscache), which this kernel lacks; use 'blobcache' (alias 'filecache') instead"),
    (dev(cache={"type": "tmpfs"}), "device.cache.type",
     "Unknown cache 'tmpfs'. Installed caches: blobcache, filecache."),
    (dev(cache={"type": "blobcach"}), "device.cache.type",
     "Unknown cache 'blobcach'. Installed caches: blobcache, filecache. Did you mean 'blobcache'?"),
    (dev(cache={"type": "blobcache", "compressed": "no"}), "device.cache.compressed",
     'expected a boolean, got "no"'),
    (dev(cache={"type": "blobcache", "validate": 1}), "device.cache.validate", "expected a boolean, got 1"),
    (dev(cache={"type": "blobcache", "config": []}), "device.cache.config",
     "expected an object (a TOML table), got an array"),
    (dev(cache={"type": "blobcache", "config": {"work_dir": ""}}), "device.cache.config.work_dir",
     "must not be empty"),
    (dev(cache={"type": "filecache", "config": {"work_dir": 5}}), "device.cache.config.work_dir",
     "expected a string, got 5"),
    # rafs-level keys
    ({"mode": "lazy"}, "mode", '"lazy" is not allowed (allowed: "direct", "cached")'),
    ({"mode": None}, "mode", "expected a string, got null"),
    ({"digest_validate": "yes"}, "digest_validate", 'expected a boolean, got "yes"'),
    ({"iostats_files": 1}, "iostats_files", "expected a boolean, got 1"),
    ({"enable_xattr": None}, "enable_xattr", "expected a boolean, got null"),
    ({"access_pattern": "true"}, "access_pattern", 'expected a boolean, got "true"'),
    ({"latest_read_files": []}, "latest_read_files", "expected a boolean, got an array"),
    ({"amplify_io": -1}, "amplify_io", f"-1 is out of range {RANGE_IO}"),
    ({"amplify_io": 0x10000001}, "amplify_io", f"268435457 is out of range {RANGE_IO}"),
    ({"amplify_io": 1.5}, "amplify_io", "expected an integer, got 1.5"),
    ({"amplify_io": True}, "amplify_io", "expected an integer, got true"),
    ({"amplify_io": "1M"}, "amplify_io", 'expected an integer, got "1M"'),
    # fs_prefetch
    ({"fs_prefetch": True}, "fs_prefetch", "expected an object (a TOML table), got true"),
    ({"fs_prefetch": {"enable": "true"}}, "fs_prefetch.enable", 'expected a boolean, got "true"'),
    ({"fs_prefetch": {"enable": True, "threads_count": 0}}, "fs_prefetch.threads_count",
     "0 is out of range (allowed: 1..1024)"),
    ({"fs_prefetch": {"enable": True, "threads_count": 1025}}, "fs_prefetch.threads_count",
     "1025 is out of range (allowed: 1..1024)"),
    ({"fs_prefetch": {"threads_count": "8"}}, "fs_prefetch.threads_count", 'expected an integer, got "8"'),
    ({"fs_prefetch": {"enable": True, "merging_size": 0x10000001}}, "fs_prefetch.merging_size",
     f"268435457 is out of range {RANGE_IO}"),
    ({"fs_prefetch": {"merging_size": -1}}, "fs_prefetch.merging_size", "-1 is out of range (allowed: 0..)"),
    ({"fs_prefetch": {"bandwidth_rate": 2**32}}, "fs_prefetch.bandwidth_rate",
     "4294967296 is out of range (allowed: 0..4294967295)"),
    ({"fs_prefetch": {"bandwidth_rate": -5}}, "fs_prefetch.bandwidth_rate",
     "-5 is out of range (allowed: 0..4294967295)"),
    ({"fs_prefetch": {"prefetch_all": "yes"}}, "fs_prefetch.prefetch_all", 'expected a boolean, got "yes"'),
    ({"fs_prefetch": {"stream_prefetch": 0}}, "fs_prefetch.stream_prefetch", "expected a boolean, got 0"),
]

V2_CASES: list[tuple[dict[str, Any], str, str]] = [
    (v2(id=5), "id", "expected a string, got 5"),
    (v2(backend="localfs"), "backend", 'expected an object (a TOML table), got "localfs"'),
    (v2(backend={"localfs": {"dir": "/b"}}), "backend.type",
     "missing backend type (installed backends: localfs, registry)"),
    (v2(backend={"type": "oss"}), "backend.type",
     "Unknown backend 'oss'. Installed backends: localfs, registry. "
     "Install it with: pip install nydus-backend-oss"),
    (v2(backend={"type": "localfs", "localfs": "/b"}), "backend.localfs",
     'expected an object (a TOML table), got "/b"'),
    (v2(backend={"type": "localfs"}), "backend.localfs.dir", "either 'dir' or 'blob_file' is required"),
    (v2(backend={"type": "registry",
                 "registry": {"host": "h", "repo": "r", "proxy": {"check_interval": -1}}}),
     "backend.registry.proxy.check_interval", "-1 is out of range (allowed: 0..)"),
    (v2(external_backends=[{"type": "x"}]), "external_backends",
     "1 external backend(s) given, but external backends (for images built with --external-blob) are not "
     "supported by nydus-py; remove them or leave the list empty"),
    (v2(cache={"type": "fscache", "fscache": {"work_dir": "/w"}}), "cache.type",
     "cache type 'fscache' is not supported: it needs the kernel's cachefiles on-demand mode "
     "(EROFS over fscache), which this kernel lacks; use 'blobcache' (alias 'filecache') instead"),
    (v2(cache={"type": "redis"}), "cache.type",
     "Unknown cache 'redis'. Installed caches: blobcache, filecache."),
    (v2(cache={"type": "filecache", "filecache": {"work_dir": ""}}), "cache.filecache.work_dir",
     "must not be empty"),
    (v2(cache={"type": "blobcache", "blobcache": {"work_dir": 1}}), "cache.blobcache.work_dir",
     "expected a string, got 1"),
    (v2(cache={"type": "blobcache", "filecache": {}, "blobcache": {}}), "cache",
     "[cache.filecache] and [cache.blobcache] both configure the 'blobcache' cache; keep one"),
    (v2(cache={"prefetch": {"enable": True, "threads": 0}}), "cache.prefetch.threads",
     "0 is out of range (allowed: 1..1024)"),
    (v2(cache={"prefetch": {"enable": True, "batch_size": 0x10000001}}), "cache.prefetch.batch_size",
     f"268435457 is out of range {RANGE_IO}"),
    (v2(cache={"prefetch": {"bandwidth_limit": "10M"}}), "cache.prefetch.bandwidth_limit",
     'expected an integer, got "10M"'),
    (v2(rafs=1), "rafs", "expected an object (a TOML table), got 1"),
    (v2(rafs={"mode": "fast"}), "rafs.mode", '"fast" is not allowed (allowed: "direct", "cached")'),
    (v2(rafs={"batch_size": 0x10000001}), "rafs.batch_size", f"268435457 is out of range {RANGE_IO}"),
    (v2(rafs={"validate": "yes"}), "rafs.validate", 'expected a boolean, got "yes"'),
    (v2(rafs={"enable_xattr": 1}), "rafs.enable_xattr", "expected a boolean, got 1"),
    (v2(rafs={"iostats_files": "no"}), "rafs.iostats_files", 'expected a boolean, got "no"'),
    (v2(rafs={"access_pattern": 0}), "rafs.access_pattern", "expected a boolean, got 0"),
    (v2(rafs={"latest_read_files": {}}), "rafs.latest_read_files", "expected a boolean, got an object"),
    (v2(rafs={"prefetch": {"enable": True, "threads": 2000}}), "rafs.prefetch.threads",
     "2000 is out of range (allowed: 1..1024)"),
    (v2(rafs={"prefetch": {"prefetch_all": 1}}), "rafs.prefetch.prefetch_all", "expected a boolean, got 1"),
    (v2(overlay={"upper_dir": "/u", "work_dir": "/w"}), "overlay.upper_dir",
     "the native overlay (nydusd --writable) is not supported: nydus-py mounts are read-only; "
     "remove the [overlay] section or leave its values empty"),
    (v2(overlay={"work_dir": "/w"}), "overlay.work_dir",
     "the native overlay (nydusd --writable) is not supported: nydus-py mounts are read-only; "
     "remove the [overlay] section or leave its values empty"),
    (v2(overlay={"upper_dir": 5}), "overlay.upper_dir", "expected a string, got 5"),
]


@pytest.mark.parametrize(("data", "key", "message"), V1_CASES + V2_CASES, ids=lambda v: None)
def test_error_names_file_key_value_and_allowed(data: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source=SOURCE)
    assert info.value.file == SOURCE
    assert info.value.key == key
    assert str(info.value) == f"{SOURCE}: {key}: {message}"


def test_the_same_errors_from_files(tmp_path: Path) -> None:
    """A sample of the table above, read from real JSON and TOML files."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"fs_prefetch": {"enable": True, "threads_count": 0}}))
    with pytest.raises(ConfigError, match=rf"^{path}: fs_prefetch\.threads_count: 0 is out of range"):
        load_config(path)
    path = tmp_path / "bad.toml"
    path.write_text('version = 2\n[backend]\ntype = "registry"\n[backend.registry]\nhost = "h"\nrepo = "r"\n'
                    '[backend.registry.proxy]\nfallback = "yes"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f'{path}: backend.registry.proxy.fallback: expected a boolean, got "yes"'


def test_unknown_type_errors_are_also_plugin_errors() -> None:
    with pytest.raises(UnknownPluginError) as info:
        parse_config(dev(backend={"type": "s3"}), source=SOURCE)
    assert isinstance(info.value, ConfigError)
    assert isinstance(info.value, UnknownConfigPluginError)
    assert info.value.exit_code == ConfigError.exit_code


def test_disabled_prefetch_sections_are_range_checked_only_when_enabled() -> None:
    # Upstream checks threads and batch size only for an enabled section; types are always checked.
    cfg = parse_config({"fs_prefetch": {"enable": False, "threads_count": 0, "merging_size": 0x20000000}})
    assert cfg.fs_prefetch.enable is False


def test_messages_are_one_line() -> None:
    for data, _key, _message in V1_CASES + V2_CASES:
        with pytest.raises(ConfigError) as info:
            parse_config(data, source=SOURCE)
        assert "\n" not in str(info.value)
