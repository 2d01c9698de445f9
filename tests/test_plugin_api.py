"""The plugin API version (checked at load) and failed plugins named in every "unknown <kind>" error.

Unit tests drive the plugin manager with modules written to a temporary directory; the slow test
builds two tiny plugin wheels (one written for another plugin-API major, one whose import fails),
installs them beside nydus-core in a fresh venv and runs the real `nydus` command.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from nydus_testsupport.sample_plugins import entry_point

import nydus_core
from nydus_core import pluginapi
from nydus_core.errors import ConfigError, PluginLoadError, UnknownPluginError
from nydus_core.plugins import CAPABILITIES, GROUP, PluginManager

CORE_API = nydus_core.PLUGIN_API_VERSION
Writer = Callable[[str, str], EntryPoint]


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Writer]:
    """Write a plugin module with the given source; return an entry point naming it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(ep_name: str, source: str) -> EntryPoint:
        module = f"nydus_test_api_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{module}.py").write_text(source)
        written.append(module)
        return EntryPoint(name=ep_name, value=module, group=GROUP)

    yield write
    for module in written:
        sys.modules.pop(module, None)


def _backend_plugin(declaration: str | None) -> str:
    line = f"NYDUS_PLUGIN_API = {declaration}\n" if declaration is not None else ""
    return (
        "from nydus_core import hookimpl\n"
        "from nydus_testkit.fakes import MemoryBackend\n"
        + line +
        "class WebBlob(MemoryBackend):\n"
        "    name = 'webblob'\n"
        "@hookimpl\n"
        "def nydus_register_backends():\n"
        "    return [WebBlob]\n"
    )


def test_core_exports_its_plugin_api_version() -> None:
    assert pluginapi.parse_api_version(CORE_API) is not None
    assert nydus_core.PLUGIN_API_VERSION is pluginapi.PLUGIN_API_VERSION
    assert "PLUGIN_API_VERSION" in nydus_core.__all__


def test_a_plugin_of_the_same_api_loads(plugin_module: Writer) -> None:
    ep = plugin_module("backend-webblob", _backend_plugin(repr(CORE_API)))
    m = PluginManager(entry_points=[ep], strict=True, disabled=()).load()
    assert m.records["backend-webblob"].error is None
    assert m.registry("backend").names() == ["webblob"]


@pytest.mark.parametrize(("declaration", "reason"), [
    ('"2.0"', "built for plugin API 2.0 (another major version); nydus-core {version} provides plugin "
              "API {api}: install a release of the plugin made for API 1.x"),
    ('"0.9"', "built for plugin API 0.9 (another major version); nydus-core {version} provides plugin "
              "API {api}: install a release of the plugin made for API 1.x"),
    ('"1.99"', "built for plugin API 1.99; nydus-core {version} provides plugin API {api}: "
               "upgrade nydus-core"),
    ("1", "NYDUS_PLUGIN_API = 1 in {module} is not a \"MAJOR.MINOR\" string such as \"1.0\""),
    ('"one"', "NYDUS_PLUGIN_API = 'one' in {module} is not a \"MAJOR.MINOR\" string such as \"1.0\""),
    (None, "declares no plugin API version: add NYDUS_PLUGIN_API = \"{api}\" to {module} (the nydus-core "
           "plugin API it was written for)"),
])
def test_a_plugin_of_another_api_is_listed_as_failed(plugin_module: Writer, declaration: str | None,
                                                     reason: str) -> None:
    ep = plugin_module("backend-webblob", _backend_plugin(declaration))
    m = PluginManager(entry_points=[ep, entry_point("sample-every", "EveryHook")], strict=False,
                      disabled=()).load()
    expected = reason.format(version=nydus_core.__version__, api=CORE_API, module=ep.value)
    assert m.records["backend-webblob"].error == expected
    assert m.records["sample-every"].error is None  # the others still load
    assert "webblob" not in m.registry("backend")
    assert not m.pm.has_plugin("backend-webblob")  # none of its hooks is called
    with pytest.raises(PluginLoadError, match="NYDUS_STRICT_PLUGINS is set"):
        PluginManager(entry_points=[ep], strict=True, disabled=()).load()


def test_an_older_minor_of_the_same_major_loads(plugin_module: Writer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pluginapi, "PLUGIN_API_VERSION", "1.3")
    ep = plugin_module("backend-webblob", _backend_plugin('"1.1"'))
    m = PluginManager(entry_points=[ep], strict=True, disabled=()).load()
    assert m.registry("backend").names() == ["webblob"]


@pytest.mark.parametrize("kind", sorted(CAPABILITIES))
def test_unknown_name_of_every_kind_names_the_failed_plugins(plugin_module: Writer, kind: str) -> None:
    broken = plugin_module(f"{kind}-webblob",
                           "raise ImportError('libwebblob.so.1: cannot open shared object file')\n")
    api = plugin_module(f"{kind}-future", _backend_plugin('"9.0"'))
    m = PluginManager(entry_points=[broken, api], strict=False, disabled=()).load()
    with pytest.raises(UnknownPluginError) as info:
        m.registry(kind).get("webblob")
    message = str(info.value)
    cap = CAPABILITIES[kind]
    installed = ", ".join(m.registry(kind).names()) or "none"
    assert message.startswith(f"Unknown {kind} 'webblob'. Installed {cap.plural}: {installed}.")
    assert (f"Plugin '{kind}-webblob' failed to load: ImportError: libwebblob.so.1: cannot open shared "
            "object file.") in message
    assert f"Plugin '{kind}-future' failed to load: built for plugin API 9.0" in message
    assert "\n" not in message


def test_first_party_name_hint_also_names_failed_plugins(plugin_module: Writer) -> None:
    broken = plugin_module("backend-webblob", "raise ImportError('no webblob')\n")
    m = PluginManager(entry_points=[broken], strict=False, disabled=()).load()
    with pytest.raises(UnknownPluginError) as info:
        m.registry("backend").get("s3")
    assert str(info.value) == (
        "Unknown backend 's3'. Installed backends: none. Install it with: pip install nydus-backend-s3 "
        "Plugin 'backend-webblob' failed to load: ImportError: no webblob."
    )


def test_a_disabled_plugin_is_not_named_as_failed(plugin_module: Writer) -> None:
    broken = plugin_module("backend-webblob", "raise ImportError('no webblob')\n")
    m = PluginManager(entry_points=[broken], strict=False, disabled=("backend-webblob",)).load()
    with pytest.raises(UnknownPluginError) as info:
        m.registry("backend").get("webblob")
    assert str(info.value) == "Unknown backend 'webblob'. Installed backends: none."


def test_every_first_party_plugin_declares_the_core_api() -> None:
    """The plugins of this repository are written for the API this core provides."""
    from nydus_testsupport.venv import repo_root

    hooks = sorted((repo_root() / "plugins").glob("*/nydus_*/hooks.py"))
    assert len(hooks) >= 14
    for path in hooks:
        assert f'\nNYDUS_PLUGIN_API = "{CORE_API}"\n' in path.read_text(), path


# -- end to end: tiny wheels installed into a fresh venv -------------------------------------------

PYPROJECT = """\
[project]
name = "{dist}"
version = "0.0.1"
description = "A tiny test plugin"
requires-python = ">=3.11"
dependencies = ["nydus-core"]

[project.entry-points.nydus]
{ep} = "{package}.hooks"

[build-system]
requires = ["hatchling>=1.27"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["{package}"]
"""


def _tiny_project(root: Path, dist: str, hooks: str) -> Path:
    package = dist.replace("-", "_")
    project = root / dist
    (project / package).mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT.format(dist=dist, ep=dist.removeprefix("nydus-"),
                                                             package=package))
    (project / package / "__init__.py").write_text('"""A tiny test plugin."""\n')
    (project / package / "hooks.py").write_text(hooks)
    return project


FUTURE_HOOKS = """\
from nydus_core import hookimpl

NYDUS_PLUGIN_API = "2.0"


@hookimpl
def nydus_register_compressors():
    raise AssertionError("a plugin of another API major must not be called")
"""

BROKEN_HOOKS = """\
from nydus_core import hookimpl
import nydus_test_webblob_sdk_that_is_not_installed  # ModuleNotFoundError at load time

NYDUS_PLUGIN_API = "1.0"
"""


@pytest.mark.slow
def test_installed_plugin_of_another_api_major_and_a_broken_one(tmp_path: Path) -> None:
    from nydus_testkit.cli import nydus_plugins_json, plugin_record, run_nydus
    from nydus_testsupport.venv import build_wheel, create_venv, repo_root

    future = _tiny_project(tmp_path, "nydus-compressor-future", FUTURE_HOOKS)
    broken = _tiny_project(tmp_path, "nydus-backend-webblob", BROKEN_HOOKS)
    venv = create_venv(tmp_path / "venv")
    venv.install(build_wheel(repo_root()), build_wheel(future, tmp_path / "dist"),
                 build_wheel(broken, tmp_path / "dist"))

    listing = nydus_plugins_json(bin_dir=venv.bin)
    record = plugin_record(listing, "compressor-future")
    assert record["distribution"] == "nydus-compressor-future"
    assert record["error"] == (
        f"built for plugin API 2.0 (another major version); nydus-core {nydus_core.__version__} provides "
        f"plugin API {CORE_API}: install a release of the plugin made for API 1.x")
    assert record["provides"] == {}
    table = run_nydus("plugins", bin_dir=venv.bin)
    assert table.returncode == 0
    assert "FAILED: built for plugin API 2.0 (another major version)" in table.stdout

    # `nydus cat` through a backend whose plugin failed to import names that plugin.
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.txt").write_text("hello\n")
    boot = tmp_path / "image.boot"
    built = venv.run("nydus-image", "create", str(src), "-B", str(boot), "-D", str(tmp_path / "blobs"),
                     "--compressor", "none", "--digester", "sha256")
    assert built.returncode == 0, built.stderr
    config = tmp_path / "nydusd.json"
    config.write_text(json.dumps({"device": {"backend": {"type": "webblob", "config": {}}}}))
    cat = run_nydus("cat", str(boot), "/hello.txt", "--config", str(config), bin_dir=venv.bin)
    assert cat.returncode == ConfigError.exit_code, cat.stderr  # a config naming what is not there
    cause = "ModuleNotFoundError: No module named 'nydus_test_webblob_sdk_that_is_not_installed'"
    assert cat.stderr.startswith("error: ") and cat.stderr.count("\n") == 1
    unknown = f"{config}: device.backend.type: Unknown backend 'webblob'. Installed backends: none."
    assert unknown in cat.stderr
    assert f"Plugin 'backend-webblob' (nydus-backend-webblob) failed to load: {cause}." in cat.stderr
    assert "Traceback" not in cat.stderr
