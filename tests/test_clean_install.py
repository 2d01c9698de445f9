"""Clean-install smoke test: wheels of nydus-core and one plugin in a fresh venv, then the real
`nydus` command; and `pip install ./ ./plugins/compressor_zstd` from the source tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nydus_testkit.cli import nydus_plugins_json, run_nydus
from nydus_testsupport.venv import Venv, create_venv, repo_root

from nydus_core.errors import UnknownPluginError
from nydus_core.plugins import CAPABILITIES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # may build the wheelhouse

NO_TRACEBACK = "Traceback"


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Venv:
    """nydus-core and nydus-compressor-zstd, installed from the wheelhouse (scripts/wheels.sh)."""
    wheels = [*wheelhouse.glob("nydus_core-*.whl"), *wheelhouse.glob("nydus_compressor_zstd-*.whl")]
    assert len(wheels) == 2, wheels
    venv = create_venv(tmp_path_factory.mktemp("clean") / "venv")
    venv.install(*wheels)
    return venv


def test_nydus_plugins_lists_exactly_what_was_installed(wheel_venv: Venv) -> None:
    nydus_dists = {d for d in wheel_venv.distributions() if d.startswith("nydus")}
    assert nydus_dists == {"nydus-core", "nydus-compressor-zstd"}

    listing = nydus_plugins_json(bin_dir=wheel_venv.bin)
    assert [(p["name"], p["distribution"], p["error"]) for p in listing["plugins"]] == [
        ("core", "nydus-core", None),
        ("compressor-zstd", "nydus-compressor-zstd", None),
    ]
    assert listing["plugins"][1]["provides"] == {"compressor": ["zstd"]}
    expected = {kind: [] for kind in CAPABILITIES} | {"compressor": ["none", "zstd"], "digester": ["sha256"]}
    assert listing["capabilities"] == expected
    assert listing["conflicts"] == []


def test_uninstalled_plugins_get_the_install_hint(wheel_venv: Venv) -> None:
    default_set = " (or: pip install nydus-py, the default set)"
    for spec, installed, dist in [
        ("backend:s3", "Installed backends: none", "nydus-backend-s3"),
        ("compressor:lz4_block", "Installed compressors: none, zstd", "nydus-compressor-lz4" + default_set),
        ("digester:blake3", "Installed digesters: sha256", "nydus-digester-blake3" + default_set),
    ]:
        kind, name = spec.split(":")
        proc = run_nydus("plugins", "--check", spec, bin_dir=wheel_venv.bin)
        assert proc.returncode == UnknownPluginError.exit_code
        assert proc.stdout == ""
        assert proc.stderr == (
            f"error: Unknown {kind} '{name}'. {installed}. Install it with: pip install {dist}\n"
        )
        assert NO_TRACEBACK not in proc.stderr
    ok = run_nydus("plugins", "--check", "compressor:zstd", "--check", "digester:sha256",
                   bin_dir=wheel_venv.bin)
    assert ok.returncode == 0, ok.stderr


def test_core_commands_work(wheel_venv: Venv) -> None:
    from nydus_core import __version__

    version = run_nydus("--version", bin_dir=wheel_venv.bin)
    assert version.returncode == 0 and __version__ in version.stdout
    helptext = run_nydus("--help", bin_dir=wheel_venv.bin)
    assert helptext.returncode == 0 and "plugins" in helptext.stdout
    table = run_nydus("plugins", bin_dir=wheel_venv.bin)
    assert table.returncode == 0
    assert [line.split()[0] for line in table.stdout.splitlines()] == ["PLUGIN", "core", "compressor-zstd"]


def test_pip_install_from_the_source_tree(tmp_path: Path) -> None:
    """`pip install ./ ./plugins/compressor_zstd` into an empty venv: zstd listed, lz4 not."""
    venv = create_venv(tmp_path / "venv", with_pip=True)
    proc = venv.run("pip", "install", "--quiet", "--disable-pip-version-check",
                    "./", "./plugins/compressor_zstd", cwd=repo_root())
    assert proc.returncode == 0, proc.stderr

    table = run_nydus("plugins", bin_dir=venv.bin)
    assert table.returncode == 0, table.stderr
    assert "compressor: zstd" in table.stdout and "lz4" not in table.stdout

    raw = run_nydus("plugins", "--json", bin_dir=venv.bin)
    listing = json.loads(raw.stdout)
    assert [p["name"] for p in listing["plugins"]] == ["core", "compressor-zstd"]
    assert listing["capabilities"]["compressor"] == ["none", "zstd"]
    assert all(p["error"] is None for p in listing["plugins"])
