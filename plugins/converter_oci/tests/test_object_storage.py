"""--backend-type s3|oss: blobs go to object storage (moto speaks both), only the bootstrap layer to
the registry."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from nydus_testkit.samples import random_bytes
from nydus_testsupport.objstore import ACCESS_KEY_ID, ACCESS_KEY_SECRET, MotoServer, shared_moto
from nydus_testsupport.oci_images import push_image, sample_layers
from nydus_testsupport.registry import RegistryFlavour

from nydus_core.oci import mediatypes as mt

NYDUSIFY = str(Path(sys.executable).with_name("nydusify"))


@pytest.fixture(scope="module")
def moto() -> MotoServer:
    server = shared_moto()
    for kind in ("s3", "oss"):
        server.create_bucket(f"converter-{kind}")
    return server


@pytest.mark.parametrize("kind, extra", [("s3", {"region": "us-east-1"}), ("oss", {})])
def test_convert_to_object_storage_and_check(kind: str, extra: dict, registry_open: RegistryFlavour,
                                             moto: MotoServer, tmp_path: Path) -> None:
    pytest.importorskip(f"nydus_backend_{kind}", reason=f"nydus-backend-{kind} is not installed")
    host = registry_open.server.host
    client = registry_open.client()
    layers = sample_layers(random_bytes(900_000, 8), random_bytes(1_700_000, 9))
    push_image(client, f"src/{kind}", "v1", layers)
    bucket = f"converter-{kind}"
    backend = {"scheme": "http", "endpoint": moto.endpoint, **extra, "bucket_name": bucket,
               "object_prefix": "nydus/", "access_key_id": ACCESS_KEY_ID,
               "access_key_secret": ACCESS_KEY_SECRET, "retry_limit": 1}
    source, target = f"{host}/src/{kind}:v1", f"{host}/nydus/{kind}:v1"
    proc = subprocess.run([NYDUSIFY, "convert", "--source", source, "--target", target, "--plain-http",
                           "--backend-type", kind, "--backend-config", json.dumps(backend),
                           "--work-dir", str(tmp_path / "work"), "--output-json", str(tmp_path / "m.json")],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    doc = client.get_manifest(f"nydus/{kind}", "v1").json()
    assert [d["mediaType"] for d in doc["layers"]] == [mt.OCI_LAYER_GZIP]  # only the bootstrap layer
    metrics = json.loads((tmp_path / "m.json").read_text())
    s3 = moto.client()
    objects = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="nydus/")["Contents"]}
    for layer in metrics["layers"]:
        key = "nydus/" + layer["blob_digest"].removeprefix("sha256:")
        assert objects[key] == layer["blob_size"]
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert "sha256:" + hashlib.sha256(body).hexdigest() == layer["blob_digest"]
        assert not client.blob_exists(f"nydus/{kind}", layer["blob_digest"])
    check = subprocess.run([NYDUSIFY, "check", "--source", source, "--target", target, "--plain-http",
                            "--target-backend-type", kind, "--target-backend-config", json.dumps(backend),
                            "--work-dir", str(tmp_path / "check")],
                           capture_output=True, text=True, timeout=240)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "check passed" in check.stdout
