"""Backend and cache sections go through the real plugin registry: validation, env overrides, creation."""

from __future__ import annotations

import importlib.metadata
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from nydus_testsupport.config_fakes import entry_point

from nydus_core import PLUGIN_API_VERSION, hookimpl, plugins
from nydus_core.config import AUTH_ENV, Section, parse_config
from nydus_core.errors import ConfigError, PluginError, UnsupportedOperationError
from nydus_core.interfaces import Backend

REGISTRY_V1 = {"device": {"backend": {"type": "registry", "config": {"host": "h:5000", "repo": "ns/r"}}}}
REGISTRY_V2 = (
    'version = 2\n[backend]\ntype = "registry"\n[backend.registry]\nhost = "h:5000"\nrepo = "ns/r"\n'
)


class TestImagePullAuth:
    def test_env_sets_registry_auth(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(AUTH_ENV, "ZW52OmF1dGg=")
        cfg = parse_config(REGISTRY_V1)
        assert cfg.backend is not None and cfg.backend.config["auth"] == "ZW52OmF1dGg="
        assert parse_config(REGISTRY_V2) == cfg

    def test_env_overrides_the_file(self, monkeypatch: pytest.MonkeyPatch) -> None:
        data = {"device": {"backend": {"type": "registry",
                                       "config": {"host": "h", "repo": "r", "auth": "ZmlsZTphdXRo"}}}}
        assert parse_config(data).backend.config["auth"] == "ZmlsZTphdXRo"
        monkeypatch.setenv(AUTH_ENV, "ZW52OmF1dGg=")
        assert parse_config(data).backend.config["auth"] == "ZW52OmF1dGg="

    def test_env_mapping_argument(self) -> None:
        cfg = parse_config(REGISTRY_V2, env={AUTH_ENV: "YTpi"})
        assert cfg.backend is not None and cfg.backend.config["auth"] == "YTpi"

    def test_empty_env_changes_nothing(self) -> None:
        cfg = parse_config(REGISTRY_V1, env={AUTH_ENV: ""})
        assert cfg.backend is not None and cfg.backend.config["auth"] is None

    def test_other_backends_are_untouched(self) -> None:
        cfg = parse_config({"device": {"backend": {"type": "localfs", "config": {"dir": "/b"}}}},
                           env={AUTH_ENV: "YTpi"})
        assert cfg.backend is not None and "auth" not in cfg.backend.config
        assert cfg.warnings == ()

    def test_round_trip_keeps_the_effective_auth(self) -> None:
        cfg = parse_config(REGISTRY_V1, env={AUTH_ENV: "YTpi"})
        assert cfg.to_v1_dict()["device"]["backend"]["config"]["auth"] == "YTpi"
        assert parse_config(cfg.to_v1_dict(), env={}) == cfg


class TestUnknownOptionKeys:
    def test_options_a_plugin_drops_are_reported(self, caplog: pytest.LogCaptureFixture) -> None:
        data = {"device": {"backend": {"type": "registry", "config": {
            "host": "h", "repo": "r", "hots": "typo", "mirrors": [], "proxy": {"urll": "x"}}}}}
        cfg = parse_config(data, source="c.json")
        assert sorted(cfg.warnings) == [
            "c.json: device.backend.config.hots: unknown key, ignored (did you mean 'host'?)",
            "c.json: device.backend.config.mirrors: unknown key, ignored",
            "c.json: device.backend.config.proxy.urll: unknown key, ignored (did you mean 'url'?)",
        ]
        for warning in cfg.warnings:
            assert warning in caplog.text
        assert "hots" not in cfg.backend.config

    def test_core_keys_typos(self) -> None:
        cfg = parse_config({"digest_validat": True, "device": {"cahce": {}}, "fs_prefetch": {"threads": 4}},
                           source="c.json")
        assert sorted(cfg.warnings) == [
            "c.json: device.cahce: unknown key, ignored (did you mean 'cache'?)",
            "c.json: digest_validat: unknown key, ignored (did you mean 'digest_validate'?)",
            "c.json: fs_prefetch.threads: unknown key, ignored",
        ]
        assert cfg.digest_validate is False

    def test_strict_mode_makes_them_errors(self) -> None:
        with pytest.raises(ConfigError) as info:
            parse_config({"device": {"backend": {"type": "localfs", "config": {"dir": "/b", "dirs": []}}}},
                         source="c.json", strict=True)
        assert str(info.value) == "c.json: device.backend.config.dirs: unknown key (did you mean 'dir'?)"


class TestCreate:
    def test_backend_create_reads_real_files(self, tmp_path: Path) -> None:
        blob = "ab" * 32
        (tmp_path / blob).write_bytes(b"0123456789")
        cfg = parse_config({"device": {"backend": {"type": "localfs", "config": {"dir": str(tmp_path)}}}})
        backend = cfg.require_backend().create()
        assert backend.size(blob) == 10
        assert backend.read(blob, 3, 4) == b"3456"
        assert backend.config == cfg.backend.options()

    def test_registry_fake_cannot_read(self) -> None:
        backend = parse_config(REGISTRY_V1).require_backend().create()
        with pytest.raises(UnsupportedOperationError):
            backend.size("00" * 32)

    def test_cache_create_gets_options_and_validate(self, tmp_path: Path) -> None:
        cfg = parse_config({"device": {"cache": {"type": "filecache", "validate": True,
                                                 "config": {"work_dir": str(tmp_path)}}}})
        assert cfg.cache is not None
        cache = cfg.cache.create()
        assert cache.name == "blobcache"
        assert cache.validate is True
        assert cache.config["work_dir"] == str(tmp_path)
        blob = cache.open_blob(None)
        blob.put("c0", b"data")
        assert blob.get("c0") == b"data"


# -- misbehaving plugins -------------------------------------------------------------------------


class _PassThrough(Backend):
    name = "passthrough"  # keeps Backend.validate_config: every key is accepted as given

    def size(self, blob_id: str) -> int:
        raise NotImplementedError

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        raise NotImplementedError


class _RaisesValueError(_PassThrough):
    name = "valueerror"

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        raise ValueError("port must be numeric")


class _ReturnsList(_PassThrough):
    name = "returnslist"

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        return []


class _NestedKeyError(_PassThrough):
    name = "nested"

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        s = Section(config)
        return {"tls": {"ca": Section(s.mapping("tls"), "tls").str("ca", "")}}


class _ErrorNamingAnotherFile(_PassThrough):
    name = "otherfile"

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        raise ConfigError("not a PEM certificate", file="/etc/ca.pem", key="ca_cert_files[0]")


@pytest.fixture
def odd_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module = types.ModuleType("_nydus_config_test_plugins")

    @hookimpl
    def nydus_register_backends() -> list[type[Backend]]:
        return [_RaisesValueError, _ReturnsList, _NestedKeyError, _ErrorNamingAnotherFile, _PassThrough]

    module.nydus_register_backends = nydus_register_backends
    module.NYDUS_PLUGIN_API = PLUGIN_API_VERSION
    monkeypatch.setitem(sys.modules, module.__name__, module)
    ep = importlib.metadata.EntryPoint(name="odd", value=module.__name__, group=plugins.GROUP)
    manager = plugins.PluginManager(entry_points=[entry_point(), ep], strict=True, disabled=()).load()
    plugins.set_manager(manager)
    yield
    plugins.set_manager(None)


@pytest.mark.usefixtures("odd_plugins")
class TestMisbehavingPlugins:
    def test_value_error_becomes_config_error(self) -> None:
        with pytest.raises(ConfigError) as info:
            parse_config({"device": {"backend": {"type": "valueerror"}}}, source="c.json")
        assert str(info.value) == (
            "c.json: device.backend.config: invalid options for backend 'valueerror': port must be numeric"
        )

    def test_non_mapping_result_is_a_plugin_bug(self) -> None:
        with pytest.raises(PluginError, match=r"_ReturnsList\.validate_config returned list, not a mapping"):
            parse_config({"device": {"backend": {"type": "returnslist"}}})

    def test_nested_keys_are_prefixed(self) -> None:
        with pytest.raises(ConfigError) as info:
            parse_config(
                'version = 2\n[backend]\ntype = "nested"\n[backend.nested.tls]\nca = 1\n', source="n.toml"
            )
        assert str(info.value) == "n.toml: backend.nested.tls.ca: expected a string, got 1"

    def test_plugin_error_naming_another_file_keeps_it(self) -> None:
        with pytest.raises(ConfigError) as info:
            parse_config({"device": {"backend": {"type": "otherfile"}}}, source="c.json")
        assert info.value.file == "c.json"
        assert info.value.key == "device.backend.config.ca_cert_files[0]"
        assert str(info.value) == (
            "c.json: device.backend.config.ca_cert_files[0]: /etc/ca.pem: not a PEM certificate"
        )

    def test_pass_through_validation_keeps_every_key(self) -> None:
        cfg = parse_config({"device": {"backend": {"type": "passthrough", "config": {"a": [1, {"b": 2}]}}}})
        assert cfg.warnings == ()
        assert cfg.backend is not None and cfg.backend.options() == {"a": [1, {"b": 2}]}
