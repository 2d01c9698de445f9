"""--backend-type s3: blobs go to object storage (moto), only the bootstrap layer to the registry."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from nydus_backend_registry.testing import RegistryFlavour
from nydus_converter_oci.testing import push_image, sample_layers

from nydus_core.oci import mediatypes as mt
from nydus_core.testing.objstore import ACCESS_KEY_ID, ACCESS_KEY_SECRET, MotoServer, shared_moto
from nydus_core.testing.samples import random_bytes

NYDUSIFY = str(Path(sys.executable).with_name("nydusify"))


@pytest.fixture(scope="module")
def moto() -> MotoServer:
    pytest.importorskip("nydus_backend_s3", reason="nydus-backend-s3 is not installed")
    server = shared_moto()
    server.create_bucket("converter-blobs")
    return server


def test_convert_to_s3_and_check(registry_open: RegistryFlavour, moto: MotoServer, tmp_path: Path) -> None:
    host = registry_open.server.host
    client = registry_open.client()
    push_image(client, "src/s3", "v1", sample_layers(random_bytes(900_000, 8), random_bytes(1_700_000, 9)))
    backend = {"scheme": "http", "endpoint": moto.endpoint, "region": "us-east-1",
               "bucket_name": "converter-blobs", "object_prefix": "nydus/", "access_key_id": ACCESS_KEY_ID,
               "access_key_secret": ACCESS_KEY_SECRET, "retry_limit": 1}
    source, target = f"{host}/src/s3:v1", f"{host}/nydus/s3:v1"
    proc = subprocess.run([NYDUSIFY, "convert", "--source", source, "--target", target, "--plain-http",
                           "--backend-type", "s3", "--backend-config", json.dumps(backend),
                           "--work-dir", str(tmp_path / "work"), "--output-json", str(tmp_path / "m.json")],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    doc = client.get_manifest("nydus/s3", "v1").json()
    assert [d["mediaType"] for d in doc["layers"]] == [mt.OCI_LAYER_GZIP]  # only the bootstrap layer
    metrics = json.loads((tmp_path / "m.json").read_text())
    s3 = moto.client()
    objects = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket="converter-blobs",
                                                               Prefix="nydus/")["Contents"]}
    for layer in metrics["layers"]:
        key = "nydus/" + layer["blob_digest"].removeprefix("sha256:")
        assert objects[key] == layer["blob_size"]
        body = s3.get_object(Bucket="converter-blobs", Key=key)["Body"].read()
        assert "sha256:" + hashlib.sha256(body).hexdigest() == layer["blob_digest"]
        assert not client.blob_exists("nydus/s3", layer["blob_digest"])
    check = subprocess.run([NYDUSIFY, "check", "--source", source, "--target", target, "--plain-http",
                            "--target-backend-type", "s3", "--target-backend-config", json.dumps(backend),
                            "--work-dir", str(tmp_path / "check")],
                           capture_output=True, text=True, timeout=240)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "check passed" in check.stdout
