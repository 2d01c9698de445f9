"""End to end: an image built by nydus-py, its blobs in a moto bucket, and `nydus cat` with a nydusd
config naming the s3 backend gives back every file's bytes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nydus_core.testing.cli import clean_env
from nydus_core.testing.objstore import ACCESS_KEY_ID, ACCESS_KEY_SECRET, MotoServer, shared_moto
from nydus_core.testing.samples import payload, random_bytes
from nydus_core.testing.storage_helpers import build_image

MiB = 1024 * 1024
FILES: dict[str, bytes | str | None] = {
    "etc": None,
    "etc/hostname": b"nydus\n",
    "etc/empty": b"",
    "usr/lib/big.bin": random_bytes(3 * MiB + 17, seed=21),
    "usr/lib/text.txt": payload(300_000, seed=22),
    "usr/lib/exact.bin": random_bytes(0x10000, seed=23),
    "usr/bin/link": "->../lib/text.txt",
    "a/b/c/d/deep.txt": b"deep file\n" * 1000,
}


@pytest.fixture(scope="module")
def moto() -> MotoServer:
    server = shared_moto()
    server.create_bucket("s3-layers")
    return server


def nydus_cat(*args: str) -> subprocess.CompletedProcess[bytes]:
    exe = Path(sys.executable).parent / "nydus"
    return subprocess.run([str(exe), "cat", *args], capture_output=True, env=clean_env(), timeout=120,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("cache", [False, True], ids=["no-cache", "blobcache"])
def test_nydus_cat_reads_every_file_through_s3(tmp_path: Path, moto: MotoServer, cache: bool) -> None:
    bootstrap, blob_dir, _ = build_image(tmp_path, FILES, chunk_size=0x10000)
    client = moto.client()
    blobs = sorted(os.listdir(blob_dir))
    assert blobs
    for name in blobs:
        client.upload_file(os.path.join(blob_dir, name), "s3-layers", f"nydus/{name}")
    device: dict = {"backend": {"type": "s3", "config": {
        "scheme": "http", "endpoint": moto.endpoint, "region": "us-east-1", "bucket_name": "s3-layers",
        "object_prefix": "nydus/", "access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET,
        "retry_limit": 1,
    }}}
    if cache:
        device["cache"] = {"type": "blobcache", "config": {"work_dir": str(tmp_path / "cache")}}
    config = tmp_path / "nydusd.json"
    config.write_text(json.dumps({"device": device, "mode": "direct", "digest_validate": True}))

    regular = sorted(p for p, content in FILES.items() if isinstance(content, bytes))
    proc = nydus_cat(bootstrap, *(f"/{p}" for p in regular), "--config", str(config))
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"".join(FILES[p] for p in regular)  # type: ignore[misc]
    one = nydus_cat(bootstrap, "/usr/bin/link", "--config", str(config))
    assert one.returncode == 0 and one.stdout == FILES["usr/lib/text.txt"]


def test_a_missing_blob_is_a_one_line_error(tmp_path: Path, moto: MotoServer) -> None:
    bootstrap, _, _ = build_image(tmp_path, {"f.txt": b"never uploaded\n"})
    config = tmp_path / "nydusd.json"
    config.write_text(json.dumps({"device": {"backend": {"type": "s3", "config": {
        "scheme": "http", "endpoint": moto.endpoint, "bucket_name": "s3-layers", "object_prefix": "absent/",
        "access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET,
    }}}, "mode": "direct"}))
    proc = nydus_cat(bootstrap, "/f.txt", "--config", str(config))
    err = proc.stderr.decode()
    assert proc.returncode != 0 and proc.stdout == b""
    assert "not found" in err and "s3://s3-layers/absent/" in err
    assert "Traceback" not in err and ACCESS_KEY_SECRET not in err
