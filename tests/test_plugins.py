"""The plugin manager: guarded loading, strict and disable switches, clashes, kind errors, hooks.

Plugins here are real entry points (importlib.metadata.EntryPoint) naming the sample plugins of
nydus_testsupport.sample_plugins, or modules written to a temporary directory on sys.path. The last
test installs a real broken distribution into a fresh venv and drives the `nydus` command.
"""

from __future__ import annotations

import inspect
import json
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from nydus_testsupport import sample_plugins
from nydus_testsupport.sample_plugins import SAMPLE_NAMES, entry_point

from nydus_core import hookspecs
from nydus_core.builtins import NoneCompressor, Sha256Digester
from nydus_core.errors import (
    DuplicatePluginError,
    PluginLoadError,
    UnknownPluginError,
    UsageError,
)
from nydus_core.plugins import (
    CAPABILITIES,
    COMMANDS_HOOK,
    RESOLVE_IMAGE_HOOK,
    PluginManager,
    compressor_by_id,
    digester_by_id,
    get_compressor,
    get_manager,
    registry,
    set_manager,
)


def manager(*eps: EntryPoint, strict: bool = False, disabled: tuple[str, ...] = ()) -> PluginManager:
    return PluginManager(entry_points=list(eps), strict=strict, disabled=disabled)


@pytest.fixture
def broken_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module on sys.path whose import raises, as a plugin with a missing native library would."""
    name = f"nydus_test_broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from nydus_core import hookimpl\n"
        "raise RuntimeError('boom: libfoo.so.1 cannot be opened')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.fixture
def process_manager() -> Iterator[Callable[[PluginManager], PluginManager]]:
    """Install a manager as the process-wide one for a test, and restore the real one after."""
    def install(m: PluginManager) -> PluginManager:
        set_manager(m)
        return m

    yield install
    set_manager(None)


# -- hook specs ----------------------------------------------------------------------------------


def _hookspecs() -> dict[str, Callable[..., object]]:
    return {
        name: fn for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    }


def test_every_hookspec_has_a_docstring() -> None:
    specs = _hookspecs()
    assert specs, "no hook specs found"
    undocumented = [name for name, fn in specs.items() if len(inspect.getdoc(fn) or "") < 20]
    assert not undocumented, f"hook specs without a docstring: {undocumented}"


def test_every_hookspec_is_a_capability_or_commands() -> None:
    """Each hook is wired into the manager; a new hook must be added there (and to the next test)."""
    assert set(_hookspecs()) == {cap.hook for cap in CAPABILITIES.values()} | {COMMANDS_HOOK,
                                                                               RESOLVE_IMAGE_HOOK}


def test_every_hook_is_exercised() -> None:
    m = manager(entry_point("sample-every", "EveryHook")).load()
    exercised = set()
    for kind, (cls, name) in SAMPLE_NAMES.items():
        assert m.registry(kind).get(name) is cls
        assert m.registry(kind).provider(name) == "sample-every"
        assert m.records["sample-every"].provides[kind] == [name]
        exercised.add(CAPABILITIES[kind].hook)
    # Aliases are names too.
    assert m.registry("cache").get("sample-cache-alias") is sample_plugins.SampleCache

    cli = click.Group("nydus")
    m.add_commands(cli)
    assert m.records["sample-every"].provides["command"] == ["sample-hello"]
    result = CliRunner().invoke(cli, ["sample-hello", "tests"])
    assert result.exit_code == 0 and result.output == "hello, tests, from a sample plugin\n"
    exercised.add(COMMANDS_HOOK)
    answers = m.pm.hook.nydus_resolve_image(reference="sample.invalid/repo")
    assert answers == [("/sample/sample.invalid/repo.boot",
                        {"device": {"backend": {"type": "sample", "config": {}}}})]
    assert m.pm.hook.nydus_resolve_image(reference="elsewhere.invalid/repo") == []
    exercised.add(RESOLVE_IMAGE_HOOK)
    assert exercised == set(_hookspecs())


def test_core_registers_through_the_same_hooks() -> None:
    m = manager().load()
    assert m.registry("compressor").names() == ["none"]
    assert m.registry("digester").names() == ["sha256"]
    assert m.registry("compressor").get("none") is NoneCompressor
    assert m.registry("digester").get("sha256") is Sha256Digester
    assert [r.name for r in m.records.values()] == ["core"]


# -- guarded loading -----------------------------------------------------------------------------


def test_broken_plugin_is_listed_with_its_cause_and_others_work(broken_module: str) -> None:
    m = manager(entry_point("backend-broken", broken_module), entry_point("sample-every", "EveryHook")).load()
    record = m.records["backend-broken"]
    assert record.error == "RuntimeError: boom: libfoo.so.1 cannot be opened"
    assert record.provides == {}
    assert [r.name for r in m.failures()] == ["backend-broken"]
    assert m.registry("backend").get("sample") is sample_plugins.SampleBackend
    assert m.records["sample-every"].error is None


def test_strict_mode_makes_a_load_failure_fatal(broken_module: str) -> None:
    m = manager(entry_point("backend-broken", broken_module), entry_point("sample-every", "EveryHook"),
                strict=True)
    with pytest.raises(PluginLoadError) as info:
        m.load()
    message = str(info.value)
    assert "'backend-broken'" in message
    assert "RuntimeError: boom: libfoo.so.1 cannot be opened" in message
    assert "NYDUS_STRICT_PLUGINS" in message
    with pytest.raises(PluginLoadError):  # and it stays failed
        m.registry("backend")


def test_missing_module_and_missing_attribute_fail_the_plugin_only() -> None:
    m = manager(
        entry_point("gone", "nydus_test_no_such_module_anywhere"),
        entry_point("no-attr", "nydus_testsupport.sample_plugins:NoSuchPlugin"),
        entry_point("other", "OtherBackendPlugin"),
    ).load()
    assert m.records["gone"].error.startswith("ModuleNotFoundError: No module named")
    assert m.records["no-attr"].error.startswith("AttributeError")
    assert m.registry("backend").names() == ["other"]


def test_environment_switches(monkeypatch: pytest.MonkeyPatch, broken_module: str) -> None:
    monkeypatch.setenv("NYDUS_DISABLE_PLUGINS", " sample-every , backend-broken,")
    monkeypatch.setenv("NYDUS_STRICT_PLUGINS", "1")
    m = PluginManager(entry_points=[entry_point("sample-every", "EveryHook"),
                                    entry_point("backend-broken", broken_module),
                                    entry_point("other", "OtherBackendPlugin")])
    assert m.strict is True
    assert m.disabled == {"sample-every", "backend-broken"}
    m.load()  # the broken plugin is disabled, so strict mode has nothing to complain about
    assert m.records["sample-every"].disabled and m.records["backend-broken"].disabled
    assert broken_module not in sys.modules  # a disabled plugin is not even imported
    assert m.registry("backend").names() == ["other"]
    monkeypatch.setenv("NYDUS_STRICT_PLUGINS", "0")
    assert PluginManager(entry_points=[]).strict is False


def test_disabled_plugin_explains_itself() -> None:
    m = manager(entry_point("backend-s3", "OtherBackendPlugin"), disabled=("backend-s3",)).load()
    with pytest.raises(UnknownPluginError) as info:
        m.registry("backend").get("s3")
    assert str(info.value) == (
        "Unknown backend 's3': nydus-backend-s3 is installed but disabled by NYDUS_DISABLE_PLUGINS."
    )


def test_core_entry_point_name_is_reserved() -> None:
    m = manager(entry_point("core", "OtherBackendPlugin")).load()
    assert m.records["core"].distribution == "nydus-core"  # the real core is untouched
    impostor = [r for name, r in m.records.items() if name != "core"]
    assert len(impostor) == 1 and "reserved" in impostor[0].error
    assert "other" not in m.registry("backend")


def test_load_once_from_many_threads() -> None:
    m = manager(entry_point("sample-every", "EveryHook"))
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(m.registry("backend"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert m.registry("backend").names() == ["sample"]


# -- clashes -------------------------------------------------------------------------------------


def test_duplicate_names_error_names_both() -> None:
    m = manager(entry_point("sample-every", "EveryHook"), entry_point("dup", "DuplicateBackendPlugin")).load()
    with pytest.raises(DuplicatePluginError) as info:
        m.registry("backend").get("sample")
    message = str(info.value)
    assert message == (
        "backend 'sample' is provided by two plugins: 'dup' and 'sample-every'; "
        "uninstall one, or disable it with NYDUS_DISABLE_PLUGINS=sample-every"
    )
    assert "sample" not in m.registry("backend").names()
    assert m.conflicts() == [message]
    # Nothing else is affected.
    assert m.registry("compressor").get("sample-xor") is sample_plugins.SampleCompressor


def test_duplicate_alias_is_a_clash_too() -> None:
    m = manager(entry_point("sample-every", "EveryHook"),
                entry_point("dup-alias", "DuplicateAliasPlugin")).load()
    with pytest.raises(DuplicatePluginError, match="'dup-alias' and 'sample-every'"):
        m.registry("cache").get("sample-cache-alias")
    assert m.registry("cache").get("sample-cache") is sample_plugins.SampleCache


def test_duplicate_names_are_fatal_in_strict_mode() -> None:
    m = manager(entry_point("sample-every", "EveryHook"), entry_point("dup", "DuplicateBackendPlugin"),
                strict=True)
    with pytest.raises(DuplicatePluginError, match=r"'dup' and 'sample-every'.*NYDUS_STRICT_PLUGINS"):
        m.load()


def test_disabling_one_side_resolves_a_clash() -> None:
    m = manager(entry_point("sample-every", "EveryHook"), entry_point("dup", "DuplicateBackendPlugin"),
                disabled=("dup",)).load()
    assert m.registry("backend").get("sample") is sample_plugins.SampleBackend
    assert m.conflicts() == []


# -- unknown names -------------------------------------------------------------------------------


def test_unknown_first_party_name_gives_the_install_hint() -> None:
    m = manager(entry_point("sample-every", "EveryHook"), entry_point("other", "OtherBackendPlugin")).load()
    with pytest.raises(UnknownPluginError) as info:
        m.registry("backend").get("s3")
    assert str(info.value) == (
        "Unknown backend 's3'. Installed backends: other, sample. "
        "Install it with: pip install nydus-backend-s3"
    )


def test_unknown_name_says_where_it_came_from() -> None:
    m = manager().load()
    with pytest.raises(UnknownPluginError) as info:
        m.registry("compressor").get("zstd", where="recorded in /images/boot")
    assert str(info.value) == (
        "Unknown compressor 'zstd' (recorded in /images/boot). Installed compressors: none. "
        "Install it with: pip install nydus-compressor-zstd (or: pip install nydus-py, the default set)"
    )


def test_unknown_other_name_suggests_a_close_one() -> None:
    m = manager(entry_point("sample-every", "EveryHook")).load()
    with pytest.raises(UnknownPluginError) as info:
        m.registry("backend").get("sampel")
    assert str(info.value) == "Unknown backend 'sampel'. Installed backends: sample. Did you mean 'sample'?"
    with pytest.raises(UnknownPluginError) as info:
        m.registry("backend").get("qqqq")
    assert str(info.value) == "Unknown backend 'qqqq'. Installed backends: sample."


def test_installed_but_failed_says_so_with_the_cause(broken_module: str) -> None:
    m = manager(entry_point("backend-s3", broken_module)).load()
    with pytest.raises(UnknownPluginError) as info:
        m.registry("backend").get("s3")
    assert str(info.value) == (
        "Unknown backend 's3': nydus-backend-s3 is installed but failed to load: "
        "RuntimeError: boom: libfoo.so.1 cannot be opened"
    )


def test_unknown_kind_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown plugin kind 'bakend'"):
        manager().load().registry("bakend")


def test_ids_recorded_in_images_give_the_same_hints(process_manager: Callable[..., PluginManager]) -> None:
    process_manager(manager())
    assert isinstance(compressor_by_id(0), NoneCompressor)
    assert isinstance(digester_by_id(1), Sha256Digester)
    with pytest.raises(UnknownPluginError, match=r"Unknown compressor 'zstd' \(in the image\).*"
                                                 r"pip install nydus-compressor-zstd"):
        compressor_by_id(3, where="in the image")
    with pytest.raises(UnknownPluginError, match="pip install nydus-digester-blake3"):
        digester_by_id(0)
    with pytest.raises(UnknownPluginError, match="Unknown compressor 'id 9'"):
        compressor_by_id(9)


def test_process_wide_helpers_use_the_installed_manager(
    process_manager: Callable[..., PluginManager],
) -> None:
    m = process_manager(manager(entry_point("sample-every", "EveryHook")))
    assert get_manager() is m
    assert registry("backend").get("sample") is sample_plugins.SampleBackend
    assert isinstance(get_compressor("sample-xor"), sample_plugins.SampleCompressor)


# -- misbehaving hooks ---------------------------------------------------------------------------


def test_misspelt_hook_fails_that_plugin() -> None:
    m = manager(entry_point("typo", "MisspeltHook"), entry_point("sample-every", "EveryHook")).load()
    assert m.records["typo"].error == (
        "implements an unknown hook: nydus_register_backend (did you mean 'nydus_register_backends'?)"
    )
    assert m.registry("backend").names() == ["sample"]


def test_misspelt_hook_is_fatal_in_strict_mode() -> None:
    with pytest.raises(PluginLoadError, match="'typo' failed to load: implements an unknown hook"):
        manager(entry_point("typo", "MisspeltHook"), strict=True).load()


def test_hook_with_wrong_arguments_fails_that_plugin() -> None:
    m = manager(entry_point("wrong-args", "WrongArgumentHook"),
                entry_point("sample-every", "EveryHook")).load()
    error = m.records["wrong-args"].error
    assert error.startswith("PluginValidationError:") and "group" in error
    cli = click.Group("nydus")
    m.add_commands(cli)
    assert list(cli.commands) == ["sample-hello"]


@pytest.mark.parametrize(
    ("plugin", "error"),
    [
        ("ReturnsInstance", "nydus_register_backends returned <"),
        ("ReturnsWrongKind",
         "TypeError: nydus_register_backends returned SampleCompressor, not a Backend subclass"),
        ("ReturnsNameless", "TypeError: nydus_register_backends returned _NoName, which has no 'name'"),
        ("ReturnsString", "TypeError: nydus_register_backends returned 'other', not a class"),
        ("RaisesInHook", "RuntimeError: the SDK is not configured"),
        ("HalfBad", "TypeError: nydus_register_compressors returned object, not a Compressor subclass"),
    ],
)
def test_bad_hook_results_fail_that_plugin(plugin: str, error: str) -> None:
    m = manager(entry_point("bad", plugin), entry_point("sample-every", "EveryHook")).load()
    m.failures()  # register hooks run on first need; failures() runs them all
    assert m.records["bad"].error.startswith(error) or error in m.records["bad"].error
    assert m.records["bad"].provides == {}
    assert m.registry("backend").names() == ["sample"]  # nothing of the bad plugin, even its good half
    with pytest.raises(PluginLoadError, match="'bad' failed to load"):
        manager(entry_point("bad", plugin), strict=True).load()


def test_plugin_replacing_a_command_fails_and_the_original_stays() -> None:
    m = manager(entry_point("clash", "CommandClash"), entry_point("raises", "CommandRaises"),
                entry_point("sample-every", "EveryHook")).load()
    original = click.Command("plugins", callback=lambda: None)
    cli = click.Group("nydus", commands=[original])
    m.add_commands(cli)
    assert cli.commands["plugins"] is original
    assert sorted(cli.commands) == ["plugins", "sample-hello"]  # "half-added" was removed again
    assert "replaces the existing command(s) plugins" in m.records["clash"].error
    assert m.records["raises"].error == "RuntimeError: command registration failed"


# -- the CLI, in process -------------------------------------------------------------------------


def _run_cli(capsys: pytest.CaptureFixture[str], m: PluginManager, *args: str) -> tuple[int, str, str]:
    from nydus_core.cli.nydus import cli
    from nydus_core.cli.runner import run_main

    set_manager(m)
    try:
        capsys.readouterr()
        code = run_main(cli, list(args), prog_name="nydus")
        out, err = capsys.readouterr()
        return code, out, err
    finally:
        set_manager(None)


def test_plugins_json_lists_failures_and_conflicts(
    broken_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    m = manager(entry_point("backend-broken", broken_module), entry_point("sample-every", "EveryHook"),
                entry_point("dup", "DuplicateBackendPlugin"))
    code, out, _ = _run_cli(capsys, m, "plugins", "--json")
    assert code == 0
    data = json.loads(out)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert list(by_name) == ["core", "backend-broken", "dup", "sample-every"]
    assert by_name["backend-broken"]["error"] == "RuntimeError: boom: libfoo.so.1 cannot be opened"
    assert by_name["sample-every"]["provides"]["converter"] == ["sample-converter"]
    assert "sample" not in data["capabilities"]["backend"]
    assert data["conflicts"] == [m.registry("backend").conflict_message("sample")]


def test_plugins_table(broken_module: str, capsys: pytest.CaptureFixture[str]) -> None:
    m = manager(entry_point("backend-broken", broken_module), entry_point("sample-every", "EveryHook"),
                entry_point("off", "OtherBackendPlugin"), disabled=("off",))
    code, out, _ = _run_cli(capsys, m, "plugins")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["PLUGIN", "DISTRIBUTION", "VERSION", "PROVIDES", "STATUS"]
    row = {line.split()[0]: line for line in lines[1:]}
    assert row["backend-broken"].endswith("FAILED: RuntimeError: boom: libfoo.so.1 cannot be opened")
    assert row["off"].endswith("disabled")
    assert "backend: sample;" in row["sample-every"] and row["sample-every"].endswith("ok")


def test_plugins_check(capsys: pytest.CaptureFixture[str]) -> None:
    m = manager(entry_point("sample-every", "EveryHook"))
    code, out, err = _run_cli(capsys, m, "plugins", "--check", "backend:sample", "--check", "compressor:none")
    assert code == 0, err
    assert out.splitlines() == [
        "backend sample: nydus_testsupport.sample_plugins.SampleBackend from plugin 'sample-every'",
        "compressor none: nydus_core.builtins.NoneCompressor from plugin 'core' (nydus-core 0.1.0)",
    ]
    code, out, err = _run_cli(capsys, manager(entry_point("sample-every", "EveryHook")),
                              "plugins", "--check", "backend:sample", "--check", "backend:s3")
    assert code == UnknownPluginError.exit_code
    assert err == ("error: Unknown backend 's3'. Installed backends: sample. "
                   "Install it with: pip install nydus-backend-s3\n")
    code, _, err = _run_cli(capsys, manager(), "plugins", "--check", "backend")
    assert code == UsageError.exit_code and "expects KIND:NAME" in err


# -- end to end: a real broken distribution installed in a fresh venv ------------------------------

BROKEN_DIST_PYPROJECT = """\
[project]
name = "nydus-backend-s3"
version = "0.0.1"
description = "A stand-in for a nydus-backend-s3 whose SDK is missing"
requires-python = ">=3.11"
dependencies = ["nydus-core"]

[project.entry-points.nydus]
backend-s3 = "nydus_backend_s3_standin.hooks"

[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["nydus_backend_s3_standin"]
"""

BROKEN_DIST_HOOKS = """\
from nydus_core import hookimpl
import nydus_test_sdk_that_is_not_installed  # raises ModuleNotFoundError at load time


@hookimpl
def nydus_register_backends():
    return []
"""


@pytest.fixture(scope="module")
def broken_venv(tmp_path_factory: pytest.TempPathFactory):
    from nydus_testsupport.venv import build_wheel, create_venv, repo_root

    root = tmp_path_factory.mktemp("broken-dist")
    project = root / "nydus-backend-s3"
    (project / "nydus_backend_s3_standin").mkdir(parents=True)
    (project / "pyproject.toml").write_text(BROKEN_DIST_PYPROJECT)
    (project / "nydus_backend_s3_standin" / "__init__.py").write_text('"""Stand-in."""\n')
    (project / "nydus_backend_s3_standin" / "hooks.py").write_text(BROKEN_DIST_HOOKS)
    wheels = [build_wheel(repo_root()), build_wheel(repo_root() / "plugins" / "compressor_zstd"),
              build_wheel(project, root / "dist")]
    venv = create_venv(root / "venv")
    venv.install(*wheels)
    return venv


@pytest.mark.slow
def test_installed_broken_distribution_end_to_end(broken_venv) -> None:
    from nydus_testkit.cli import nydus_plugins_json, plugin_record, run_nydus

    assert {"nydus-core", "nydus-compressor-zstd", "nydus-backend-s3"} <= broken_venv.distributions()
    cause = "ModuleNotFoundError: No module named 'nydus_test_sdk_that_is_not_installed'"

    # Listed as failed, with the cause; the other plugin works.
    listing = nydus_plugins_json(bin_dir=broken_venv.bin)
    record = plugin_record(listing, "backend-s3")
    assert record["distribution"] == "nydus-backend-s3" and record["version"] == "0.0.1"
    assert record["error"] == cause
    assert plugin_record(listing, "compressor-zstd")["provides"] == {"compressor": ["zstd"]}
    table = run_nydus("plugins", bin_dir=broken_venv.bin)
    assert table.returncode == 0 and f"FAILED: {cause}" in table.stdout
    ok = run_nydus("plugins", "--check", "compressor:zstd", bin_dir=broken_venv.bin)
    assert ok.returncode == 0, ok.stderr

    # Asking for what it should have provided says it is installed but failed, and why.
    missing = run_nydus("plugins", "--check", "backend:s3", bin_dir=broken_venv.bin)
    assert missing.returncode == UnknownPluginError.exit_code
    assert missing.stderr == (
        f"error: Unknown backend 's3': nydus-backend-s3 is installed but failed to load: {cause}\n"
    )

    # Strict mode: non-zero exit, one line naming the plugin, no traceback.
    strict = run_nydus("plugins", bin_dir=broken_venv.bin, env={"NYDUS_STRICT_PLUGINS": "1"})
    assert strict.returncode == PluginLoadError.exit_code
    assert strict.stdout == ""
    assert strict.stderr == (
        f"error: plugin 'backend-s3' (nydus-backend-s3) failed to load: {cause} "
        "(NYDUS_STRICT_PLUGINS is set)\n"
    )
    debug = run_nydus("--debug", "plugins", bin_dir=broken_venv.bin, env={"NYDUS_STRICT_PLUGINS": "1"})
    assert debug.returncode == PluginLoadError.exit_code and "Traceback" in debug.stderr

    # Disabling it makes strict mode happy again.
    disabled = run_nydus("plugins", "--json", bin_dir=broken_venv.bin,
                         env={"NYDUS_STRICT_PLUGINS": "1", "NYDUS_DISABLE_PLUGINS": "backend-s3"})
    assert disabled.returncode == 0, disabled.stderr
    assert plugin_record(json.loads(disabled.stdout), "backend-s3")["disabled"] is True


def test_help_imports_no_heavy_sdk() -> None:
    """`nydus --help` builds the command group without importing backend or frontend SDKs."""
    import subprocess
    import sys

    code = ("from nydus_core.cli.nydus import build_cli; build_cli(); import sys; "
            "print(sorted(m for m in ('requests', 'boto3', 'oss2', 'pyfuse3', 'grpc') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"


def test_image_reference_hook_first_answer_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`nydus_resolve_image`: an existing file is a bootstrap; otherwise the first plugin answer wins,
    and with no answer the error names the package that resolves references."""
    from nydus_core.errors import UsageError
    from nydus_core.imageref import resolve_image_argument

    boot = tmp_path / "image.boot"
    boot.write_bytes(b"x")
    m = manager(entry_point("sample-every", "EveryHook")).load()
    set_manager(m)
    try:
        assert resolve_image_argument(str(boot)) == (str(boot), None)
        path, config = resolve_image_argument("sample.invalid/repo:tag")
        assert path == "/sample/sample.invalid/repo:tag.boot"
        assert config is not None and config["device"]["backend"]["type"] == "sample"
        set_manager(manager().load())
        with pytest.raises(UsageError, match="pip install nydus-converter-oci"):
            resolve_image_argument("registry.invalid/repo:tag")
        with pytest.raises(UsageError, match=r"missing\.boot: no such bootstrap file"):
            resolve_image_argument("missing.boot")
        # two plugins answering for one reference: an error naming both, never call order
        set_manager(manager(entry_point("sample-every", "EveryHook"),
                            entry_point("other-resolver", "OtherResolver")).load())
        with pytest.raises(DuplicatePluginError, match="'other-resolver' and 'sample-every'"):
            resolve_image_argument("sample.invalid/repo:tag")
    finally:
        set_manager(None)
