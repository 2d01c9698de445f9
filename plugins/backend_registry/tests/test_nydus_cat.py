"""End to end: an image built with nydus_core.builder, its blob pushed with the client, every file
read back through `nydus cat --config` (a nydusd config naming the registry backend) and through
the library API, against each registry flavour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nydus_backend_registry.config import AUTH_ENV
from nydus_testkit.cli import clean_env
from nydus_testsupport.registry import BASIC_USER, RegistryFlavour, basic_auth
from nydus_testsupport.trees import make_random_tree

from nydus_core.builder import build
from nydus_core.builder.options import BuildOptions
from nydus_core.fs import open_fs

CHUNK = 0x4000


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, list[str]]:
    """(source tree, bootstrap, blob, regular file paths inside the image)."""
    tmp = tmp_path_factory.mktemp("image")
    src = make_random_tree(tmp / "src", seed=7, entries=80, max_size=5 * CHUNK, chunk_size=CHUNK)
    (src / "big.bin").write_bytes(os.urandom(9 * CHUNK + 123))
    result = build(src, "dir-rafs", bootstrap=tmp / "bootstrap", blob_dir=tmp / "blobs",
                   options=BuildOptions(chunk_size=CHUNK, compressor="none", digester="sha256"))
    assert result.blob_path is not None and result.bootstrap_path is not None
    files = sorted("/" + p.relative_to(src).as_posix() for p in src.rglob("*")
                   if p.is_file() and not p.is_symlink())
    return src, result.bootstrap_path, result.blob_path, files


def _nydus(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """Run the venv's ``nydus`` (binary output)."""
    exe = Path(sys.executable).parent / "nydus"
    return subprocess.run([str(exe), *args], capture_output=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)


def _config(tmp_path: Path, backend_config: dict) -> Path:
    cfg = {"device": {"backend": {"type": "registry", "config": backend_config}, "cache": {"type": ""}},
           "mode": "direct", "digest_validate": True}
    path = tmp_path / "nydusd.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.mark.parametrize("flavour_name", ["registry_open", "registry_basic", "registry_token"])
def test_every_file_through_nydus_cat(request: pytest.FixtureRequest, image, tmp_path: Path,
                                      flavour_name: str) -> None:
    flavour: RegistryFlavour = request.getfixturevalue(flavour_name)
    src, bootstrap, blob, files = image
    repo = f"e2e/{flavour.name}"
    with flavour.client() as client:
        client.push_blob(repo, blob)
    backend_config = flavour.backend_config(repo)
    env = clean_env()
    if flavour.name == "basic":  # credentials from the environment, as upstream allows
        env[AUTH_ENV] = backend_config.pop("auth")
    config = _config(tmp_path, backend_config)

    proc = _nydus("cat", str(bootstrap), *files, "--config", str(config), env=env)
    assert proc.returncode == 0, proc.stderr
    expected = b"".join((src / f.lstrip("/")).read_bytes() for f in files)
    assert proc.stdout == expected

    if flavour.name == "basic":
        backend_config["auth"] = env[AUTH_ENV]
    fs = open_fs(bootstrap, _config(tmp_path, backend_config))
    try:
        for f in files:
            with fs.open(f, buffering=0) as fh:
                assert fh.read() == (src / f.lstrip("/")).read_bytes(), f
    finally:
        fs.close()


def test_wrong_credentials_give_a_one_line_error(registry_basic: RegistryFlavour, image,
                                                 tmp_path: Path) -> None:
    _, bootstrap, blob, files = image
    repo = "e2e/badauth"
    with registry_basic.client() as client:
        client.push_blob(repo, blob)
    wrong_password = "not-the-password-123"
    cfg = registry_basic.backend_config(repo, auth=basic_auth(BASIC_USER, wrong_password))
    proc = _nydus("cat", str(bootstrap), files[-1], "--config", str(_config(tmp_path, cfg)), env=clean_env())
    assert proc.returncode != 0
    err = proc.stderr.decode().strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "authentication failed" in err and registry_basic.server.host in err
    assert wrong_password not in err and cfg["auth"] not in err
