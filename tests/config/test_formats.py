"""v1 JSON, v2 JSON and v2 TOML give one model; defaults; the v2 prefetch merge; round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nydus_core.config import NydusConfig, PrefetchConfig, load_config, parse_config

# One config, written in the three formats by hand (the v2 spellings come from upstream's v2 example).
V1 = {
    "device": {
        "id": "factory-1",
        "backend": {
            "type": "registry",
            "config": {
                "scheme": "http",
                "host": "127.0.0.1:5000",
                "repo": "library/busybox",
                "auth": "dXNlcjpwYXNz",
                "skip_verify": True,
                "timeout": 10,
                "connect_timeout": 7,
                "retry_limit": 3,
                "proxy": {"url": "http://127.0.0.1:65001", "fallback": False, "check_interval": 9},
            },
        },
        "cache": {
            "type": "blobcache",
            "compressed": False,
            "validate": True,
            "config": {"work_dir": "/var/cache/nydus", "disable_indexed_map": False},
        },
    },
    "mode": "cached",
    "digest_validate": True,
    "iostats_files": True,
    "enable_xattr": True,
    "access_pattern": True,
    "latest_read_files": True,
    "amplify_io": 524288,
    "fs_prefetch": {
        "enable": True,
        "threads_count": 4,
        "merging_size": 262144,
        "bandwidth_rate": 10485760,
        "prefetch_all": False,
    },
}

V2_TOML = """
version = 2
id = "factory-1"

[backend]
type = "registry"

[backend.registry]
scheme = "http"
host = "127.0.0.1:5000"
repo = "library/busybox"
auth = "dXNlcjpwYXNz"
skip_verify = true
timeout = 10
connect_timeout = 7
retry_limit = 3

[backend.registry.proxy]
url = "http://127.0.0.1:65001"
fallback = false
check_interval = 9

[cache]
type = "filecache"
compressed = false
validate = true

[cache.filecache]
work_dir = "/var/cache/nydus"
disable_indexed_map = false

[rafs]
mode = "cached"
batch_size = 524288
validate = true
enable_xattr = true
iostats_files = true
access_pattern = true
latest_read_files = true

[rafs.prefetch]
enable = true
threads = 4
batch_size = 262144
bandwidth_limit = 10485760
prefetch_all = false
"""


def v2_json_from_toml() -> dict[str, object]:
    import tomllib

    return tomllib.loads(V2_TOML)


def test_v1_json_v2_json_and_v2_toml_are_one_model(tmp_path: Path) -> None:
    (tmp_path / "v1.json").write_text(json.dumps(V1, indent=2))
    (tmp_path / "v2.json").write_text(json.dumps(v2_json_from_toml(), indent=2))
    (tmp_path / "v2.toml").write_text(V2_TOML)
    v1 = load_config(tmp_path / "v1.json")
    v2j = load_config(tmp_path / "v2.json")
    v2t = load_config(tmp_path / "v2.toml")
    assert v1 == v2j == v2t
    assert (v1.version, v2j.version, v2t.version) == (1, 2, 2)
    assert v1.source == str(tmp_path / "v1.json")
    assert v1.warnings == v2j.warnings == v2t.warnings == ()


def test_values_reach_the_model() -> None:
    cfg = parse_config(V1)
    dev = V1["device"]
    assert cfg.id == dev["id"]
    assert cfg.backend is not None and cfg.backend.type == "registry"
    for key, value in dev["backend"]["config"].items():
        if key == "proxy":
            for pkey, pvalue in value.items():
                assert cfg.backend.config["proxy"][pkey] == pvalue
        else:
            assert cfg.backend.config[key] == value
    assert cfg.cache is not None
    assert cfg.cache.type == "blobcache"
    assert cfg.cache.validate is True and cfg.cache.compressed is False
    assert cfg.cache.work_dir == dev["cache"]["config"]["work_dir"]
    for key in ("mode", "digest_validate", "iostats_files", "enable_xattr", "access_pattern",
                "latest_read_files", "amplify_io"):
        assert getattr(cfg, key) == V1[key]
    for key, value in V1["fs_prefetch"].items():
        assert getattr(cfg.fs_prefetch, key) == value


def test_filecache_is_the_blobcache() -> None:
    a = parse_config({"device": {"cache": {"type": "filecache", "config": {"work_dir": "/c"}}}})
    b = parse_config({"device": {"cache": {"type": "blobcache", "config": {"work_dir": "/c"}}}})
    assert a == b
    assert a.cache is not None and a.cache.type == "blobcache"


@pytest.mark.parametrize("text", [json.dumps(V1), V2_TOML, json.dumps(v2_json_from_toml())])
def test_round_trip_through_v1_dict_and_json(text: str) -> None:
    cfg = parse_config(text)
    again = parse_config(cfg.to_v1_dict())
    assert again == cfg
    assert again.to_v1_dict() == cfg.to_v1_dict()
    assert parse_config(cfg.to_v1_json()) == cfg
    assert json.loads(cfg.to_v1_json()) == cfg.to_v1_dict()


def test_v1_defaults_are_upstreams() -> None:
    cfg = parse_config({})
    assert cfg == NydusConfig()
    assert cfg.backend is None and cfg.cache is None
    assert cfg.id == ""
    assert cfg.mode == "direct"
    assert cfg.digest_validate is False
    assert cfg.iostats_files is False
    assert cfg.enable_xattr is False
    assert cfg.access_pattern is False
    assert cfg.latest_read_files is False
    assert cfg.amplify_io == 1048576
    assert cfg.fs_prefetch == PrefetchConfig(
        enable=False, threads_count=8, merging_size=1048576, bandwidth_rate=0, prefetch_all=True,
        stream_prefetch=False,
    )


def test_enabled_prefetch_defaults_per_format() -> None:
    v1 = parse_config({"fs_prefetch": {"enable": True}})
    assert v1.fs_prefetch == PrefetchConfig(enable=True, prefetch_all=True)
    # Upstream's v2 PrefetchConfigV2 defaults prefetch_all to false.
    v2 = parse_config("version = 2\n[rafs.prefetch]\nenable = true\n")
    assert v2.fs_prefetch == PrefetchConfig(enable=True, prefetch_all=False)


def test_v2_defaults_match_v1_defaults() -> None:
    assert parse_config("version = 2\n") == parse_config({})
    assert parse_config("version = 2\n[rafs]\n[cache]\n[rafs.prefetch]\n") == parse_config({})


def test_backend_and_cache_defaults_come_from_the_plugins() -> None:
    cfg = parse_config({"device": {"backend": {"type": "localfs", "config": {"dir": "/b"}},
                                   "cache": {"type": "blobcache"}}})
    assert cfg.backend is not None
    assert cfg.backend.config == {"dir": "/b", "blob_file": "", "alt_dirs": []}
    assert cfg.cache is not None and cfg.cache.work_dir == "."
    v2 = parse_config('version = 2\n[backend]\ntype = "localfs"\n[backend.localfs]\ndir = "/b"\n'
                      '[cache]\ntype = "blobcache"\n')
    assert v2 == cfg


def test_no_cache_spellings() -> None:
    base = parse_config({})
    for cache in ({}, {"type": ""}, {"type": "dummycache"}, None):
        device = {} if cache is None else {"cache": cache}
        assert parse_config({"device": device}).cache is None
        assert parse_config({"device": device}) == base
    assert parse_config('version = 2\n[cache]\ntype = "dummycache"\n') == base


def test_cache_validate_without_a_cache_validates_backend_reads() -> None:
    # Upstream validates chunks when either rafs.validate or cache.validate is set, cache or not.
    cfg = parse_config({"device": {"cache": {"type": "dummycache", "validate": True}}})
    assert cfg.cache is None and cfg.digest_validate is True
    assert parse_config('version = 2\n[cache]\ntype = ""\nvalidate = true\n') == cfg


def test_cache_options_without_a_cache_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    cfg = parse_config({"device": {"cache": {"type": "", "config": {"work_dir": "/x"}}}}, source="c.json")
    assert cfg.cache is None
    assert cfg.warnings == ("c.json: device.cache.config: ignored: no cache is configured (type '')",)
    assert cfg.warnings[0] in caplog.text


def test_stream_prefetch_in_both_formats() -> None:
    v1 = parse_config({"fs_prefetch": {"enable": True, "stream_prefetch": True}})
    v2 = parse_config(
        "version = 2\n[rafs.prefetch]\nenable = true\nprefetch_all = true\nstream_prefetch = true\n"
    )
    assert v1.fs_prefetch.stream_prefetch is True
    assert v1 == v2


class TestV2PrefetchMerge:
    """[rafs.prefetch] chooses what to fetch, [cache.prefetch] drives the workers (docs/config.md)."""

    RAFS = (
        "[rafs.prefetch]\nenable = true\nthreads = 2\nbatch_size = 4096\nbandwidth_limit = 100\n"
        "prefetch_all = true\n"
    )
    CACHE = "[cache.prefetch]\nenable = true\nthreads = 6\nbatch_size = 8192\nbandwidth_limit = 300\n"

    def test_only_rafs_prefetch(self) -> None:
        cfg = parse_config("version = 2\n" + self.RAFS)
        assert cfg.fs_prefetch == PrefetchConfig(True, 2, 4096, 100, True, False)

    def test_only_cache_prefetch(self) -> None:
        cfg = parse_config("version = 2\n" + self.CACHE)
        assert cfg.fs_prefetch == PrefetchConfig(True, 6, 8192, 300, False, False)

    def test_both_enabled(self) -> None:
        cfg = parse_config("version = 2\n" + self.RAFS + self.CACHE)
        assert cfg.fs_prefetch == PrefetchConfig(True, 6, 8192, 300, True, False)

    def test_upstream_v1_to_v2_conversion_is_the_identity_here(self) -> None:
        # Upstream converts v1 by setting rafs.prefetch = fs_prefetch and copying it to
        # cache.prefetch when the latter is disabled; both forms must give the v1 model.
        fs = {"enable": True, "threads_count": 3, "merging_size": 65536, "bandwidth_rate": 7,
              "prefetch_all": False}
        table = "enable = true\nthreads = 3\nbatch_size = 65536\nbandwidth_limit = 7\nprefetch_all = false\n"
        v1 = parse_config({"fs_prefetch": fs})
        assert parse_config(f"version = 2\n[rafs.prefetch]\n{table}") == v1
        assert parse_config(f"version = 2\n[rafs.prefetch]\n{table}[cache.prefetch]\n{table}") == v1

    def test_disabled_tables_give_the_canonical_disabled_setting(self) -> None:
        cfg = parse_config("version = 2\n[rafs.prefetch]\nthreads = 0\n[cache.prefetch]\nbatch_size = 1\n")
        assert cfg.fs_prefetch == PrefetchConfig()
