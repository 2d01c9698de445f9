"""`pip install ./plugins/backend_s3` into a venv holding only nydus-core: before, a config naming s3
gets the install hint; after, `s3` is listed by `nydus plugins` and `nydus cat` reads through it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from nydus_testkit.cli import clean_env, nydus_plugins_json, plugin_record, run_nydus
from nydus_testkit.samples import payload
from nydus_testsupport.objstore import ACCESS_KEY_ID, ACCESS_KEY_SECRET, MotoServer, shared_moto
from nydus_testsupport.storage_helpers import build_image
from nydus_testsupport.venv import Venv, build_wheel, create_venv, repo_root

from nydus_core.errors import UnknownPluginError

pytestmark = pytest.mark.slow

FILES = {"hello.txt": b"hello from s3\n", "data/blob.bin": payload(200_000, seed=41)}


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    venv = create_venv(tmp_path_factory.mktemp("s3-clean") / "venv")
    venv.install(build_wheel(repo_root()))
    return venv


@pytest.fixture(scope="module")
def moto() -> MotoServer:
    server = shared_moto()
    server.create_bucket("s3-clean")
    return server


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer) -> tuple[str, Path]:
    """An image readable by nydus-core alone (uncompressed, sha256), its blob in moto, and a config."""
    work = tmp_path_factory.mktemp("image")
    bootstrap, blob_dir, _ = build_image(work, FILES, compressor="none", digester="sha256")
    for blob in Path(blob_dir).iterdir():
        moto.client().upload_file(str(blob), "s3-clean", f"nydus/{blob.name}")
    config = work / "nydusd.json"
    config.write_text(json.dumps({"device": {"backend": {"type": "s3", "config": {
        "scheme": "http", "endpoint": moto.endpoint, "region": "us-east-1", "bucket_name": "s3-clean",
        "object_prefix": "nydus/", "access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET,
    }}}, "mode": "direct", "digest_validate": True}))
    return bootstrap, config


def cat(venv: Venv, bootstrap: str, config: Path, *paths: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(venv.bin / "nydus"), "cat", bootstrap, *paths, "--config", str(config)],
                          capture_output=True, env=clean_env(), timeout=120, stdin=subprocess.DEVNULL)


def test_install_adds_s3(core_venv: Venv, image: tuple[str, Path]) -> None:
    bootstrap, config = image
    assert {d for d in core_venv.distributions() if d.startswith("nydus")} == {"nydus-core"}

    # before: the config's backend type names a plugin that is not installed
    before = cat(core_venv, bootstrap, config, "/hello.txt")
    err = before.stderr.decode()
    assert before.returncode != 0 and before.stdout == b"", err
    assert str(config) in err and "Unknown backend 's3'" in err and "pip install nydus-backend-s3" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    check = run_nydus("plugins", "--check", "backend:s3", bin_dir=core_venv.bin)
    assert check.returncode == UnknownPluginError.exit_code
    assert "pip install nydus-backend-s3" in check.stderr

    core_venv.install(repo_root() / "plugins" / "backend_s3")

    listing = nydus_plugins_json(bin_dir=core_venv.bin)
    record = plugin_record(listing, "backend-s3")
    assert record["distribution"] == "nydus-backend-s3" and record["error"] is None
    assert listing["capabilities"]["backend"] == ["s3"]
    after = cat(core_venv, bootstrap, config, "/hello.txt", "/data/blob.bin")
    assert after.returncode == 0, after.stderr.decode()
    assert after.stdout == FILES["hello.txt"] + FILES["data/blob.bin"]
