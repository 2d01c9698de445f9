"""The model: frozen and hashable, secrets masked in repr, -D/--localfs-dir, the Section reader."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nydus_core.config import (
    REQUIRED,
    FrozenMap,
    NydusConfig,
    ParseContext,
    Section,
    freeze,
    parse_config,
    thaw,
)
from nydus_core.errors import ConfigError

SECRET = "c2VjcmV0OnBhc3N3b3Jk"


def registry_config() -> NydusConfig:
    return parse_config({"device": {"backend": {"type": "registry", "config": {
        "host": "h", "repo": "r", "auth": SECRET, "registry_token": "tok-123"}}}})


def test_model_is_frozen_and_hashable() -> None:
    cfg = registry_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mode = "cached"
    assert cfg.backend is not None
    with pytest.raises(TypeError):
        cfg.backend.config["host"] = "other"
    with pytest.raises(AttributeError):
        cfg.backend.config["proxy"].update({})
    assert isinstance(cfg.backend.config["ca_cert_files"], tuple)
    assert hash(cfg) == hash(registry_config())
    assert len({cfg, registry_config()}) == 1


def test_options_are_mutable_copies() -> None:
    cfg = registry_config()
    assert cfg.backend is not None
    opts = cfg.backend.options()
    opts["host"] = "changed"
    opts["proxy"]["url"] = "changed"
    assert cfg.backend.config["host"] == "h"
    assert cfg.backend.config["proxy"]["url"] == ""


def test_repr_masks_secrets_but_to_v1_dict_keeps_them() -> None:
    cfg = registry_config()
    text = repr(cfg)
    assert SECRET not in text and "tok-123" not in text
    assert "'auth': '***'" in text
    options = cfg.to_v1_dict()["device"]["backend"]["config"]
    assert options["auth"] == SECRET and options["registry_token"] == "tok-123"


def test_require_backend() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({}, source="c.json").require_backend()
    assert str(info.value) == "c.json: device.backend: no backend configured; blob data cannot be read"
    with pytest.raises(ConfigError, match=r"^c\.toml: backend: no backend configured"):
        parse_config("version = 2\n", source="c.toml").require_backend()
    assert registry_config().require_backend().type == "registry"


def test_from_localfs_dir(tmp_path: Path) -> None:
    blob = "cd" * 32
    (tmp_path / blob).write_bytes(b"blob bytes")
    cfg = NydusConfig.from_localfs_dir(tmp_path)
    assert cfg.backend is not None and cfg.backend.type == "localfs"
    assert cfg.backend.config["dir"] == str(tmp_path)
    assert cfg.cache is None
    assert cfg.require_backend().create().read(blob, 5, 5) == b"bytes"
    same = parse_config({"device": {"backend": {"type": "localfs", "config": {"dir": str(tmp_path)}}}})
    assert cfg == same

    cached = NydusConfig.from_localfs_dir(str(tmp_path), cache_dir=tmp_path / "cache")
    assert cached.cache is not None and cached.cache.type == "blobcache"
    assert cached.cache.work_dir == str(tmp_path / "cache")


def test_from_localfs_dir_needs_a_directory(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError) as info:
        NydusConfig.from_localfs_dir(missing)
    assert str(info.value) == f"-D/--localfs-dir: {missing}: not a directory"


def test_freeze_and_thaw() -> None:
    value = {"a": [1, {"b": [2, 3]}], "c": {"d": None}}
    frozen = freeze(value)
    assert isinstance(frozen, FrozenMap)
    assert frozen == value
    assert thaw(frozen) == value
    assert hash(frozen) == hash(freeze(thaw(frozen)))


class TestSection:
    """The typed reader plugins can use in their ``validate_config``."""

    def test_reads_typed_values_and_defaults(self) -> None:
        s = Section({"b": True, "i": 7, "s": "x", "l": ["p", "q"], "o": None, "t": {"k": 1}})
        assert s.bool("b") is True
        assert s.bool("missing", True) is True
        assert s.int("i", maximum=10) == 7
        assert s.str("s", choices=("x", "y")) == "x"
        assert s.str_list("l") == ["p", "q"]
        assert s.optional_str("o") is None
        assert s.table("t").int("k") == 1
        assert s.unknown() == []

    def test_relative_keys_for_plugins(self) -> None:
        s = Section({"proxy": {"url": 5}})
        with pytest.raises(ConfigError) as info:
            s.table("proxy").str("url")
        assert info.value.key == "proxy.url" and info.value.file is None
        assert str(info.value) == "proxy.url: expected a string, got 5"

    def test_required(self) -> None:
        with pytest.raises(ConfigError, match=r"^host: missing \(this key is required\)$"):
            Section({}).str("host", REQUIRED)

    def test_finish_reports_unknown_keys_with_suggestions(self, caplog: pytest.LogCaptureFixture) -> None:
        ctx = ParseContext(file="f.json")
        s = Section({"timeout": 1, "timout": 2, "zzz": 3}, "device.backend.config", ctx)
        s.int("timeout")
        s.finish()
        assert ctx.warnings == [
            "f.json: device.backend.config.timout: unknown key, ignored (did you mean 'timeout'?)",
            "f.json: device.backend.config.zzz: unknown key, ignored",
        ]
        assert all(w in caplog.text for w in ctx.warnings)

    def test_strict_finish_raises(self) -> None:
        s = Section({"zzz": 3}, "rafs", ParseContext(file="f.toml", strict=True))
        with pytest.raises(ConfigError, match=r"^f\.toml: rafs\.zzz: unknown key$"):
            s.finish()
