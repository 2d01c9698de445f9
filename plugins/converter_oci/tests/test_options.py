"""nydusify convert options: Docker sources, --platform, --merge-platform, --with-referrer,
--chunk-dict, --prefetch-patterns, credentials from the Docker config, one-line errors."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nydus_testkit.samples import random_bytes
from nydus_testsupport.oci_images import LayerWriter, push_image, push_index
from nydus_testsupport.registry import RegistryFlavour

from nydus_core.fs import open_metadata
from nydus_core.oci import image as oci
from nydus_core.oci import mediatypes as mt
from nydus_core.rafs.image import open_image

NYDUSIFY = str(Path(sys.executable).with_name("nydusify"))


def nydusify(*args: str, stdin: str | None = None, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    """Run the installed nydusify console script."""
    return subprocess.run([NYDUSIFY, *args], capture_output=True, text=True, input=stdin, timeout=240,
                          env=env)


def small_layers(seed: int) -> list[bytes]:
    """Two small layers with a file unique to ``seed``."""
    return [LayerWriter().dir("app").file("app/data", random_bytes(300_000, seed)).file("app/x", b"x")
            .tar_gz(),
            LayerWriter().dir("app").file("app/seed", str(seed).encode()).whiteout("app/x").tar_gz()]


def fetch_bootstrap(client: object, repo: str, manifest: dict, dest: Path) -> Path:
    """Unpack the bootstrap of a Nydus manifest into ``dest``."""
    dest.write_bytes(oci.unpack_bootstrap_layer(client.fetch_blob(repo, manifest["layers"][-1]["digest"])))
    return dest


def check_ok(source: str, target: str, tmp: Path, *extra: str) -> None:
    """nydusify check passes."""
    proc = nydusify("check", "--source", source, "--target", target, "--plain-http", "--work-dir", str(tmp),
                    *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_docker_source_keeps_docker_media_types_unless_oci(registry_open: RegistryFlavour, tmp_path: Path
                                                         ) -> None:
    host, client = registry_open.server.host, registry_open.client()
    push_image(client, "src/docker", "v1", small_layers(1), docker=True)
    source = f"{host}/src/docker:v1"
    assert nydusify("convert", "--source", source, "--target", f"{host}/nydus/docker:v1", "--plain-http",
                    "--work-dir", str(tmp_path / "w")).returncode == 0
    man = client.get_manifest("nydus/docker", "v1")
    doc = man.json()
    assert man.media_type == mt.DOCKER_MANIFEST
    assert doc["config"]["mediaType"] == mt.DOCKER_CONFIG
    assert doc["layers"][-1]["mediaType"] == mt.DOCKER_LAYER_GZIP
    assert {d["mediaType"] for d in doc["layers"][:-1]} == {mt.NYDUS_BLOB}
    check_ok(source, f"{host}/nydus/docker:v1", tmp_path / "c")
    assert nydusify("convert", "--source", source, "--target", f"{host}/nydus/docker:oci", "--plain-http",
                    "--oci", "--work-dir", str(tmp_path / "w")).returncode == 0
    oci_man = client.get_manifest("nydus/docker", "oci")
    assert oci_man.media_type == mt.OCI_MANIFEST
    assert oci_man.json()["layers"][-1]["mediaType"] == mt.OCI_LAYER_GZIP


def test_platform_from_index_and_merge_platform(registry_open: RegistryFlavour, tmp_path: Path) -> None:
    host, client = registry_open.server.host, registry_open.client()
    push_index(client, "src/multi", "v1", {"linux/amd64": small_layers(10), "linux/arm64": small_layers(11)})
    source = f"{host}/src/multi:v1"
    target = f"{host}/nydus/multi:v1"
    proc = nydusify("convert", "--source", source, "--target", target, "--plain-http", "--platform",
                    "linux/arm64", "--merge-platform", "--work-dir", str(tmp_path / "w"))
    assert proc.returncode == 0, proc.stderr
    index = client.get_manifest("nydus/multi", "v1")
    assert index.media_type == mt.OCI_INDEX
    entries = index.json()["manifests"]
    assert [e["platform"] for e in entries] == [{"architecture": "arm64", "os": "linux"}] * 2
    assert "artifactType" not in entries[0]
    assert entries[1]["artifactType"] == "application/vnd.nydus.image.manifest.v1+json"
    arm = client.get_manifest("src/multi", "v1-arm64")
    assert entries[0]["digest"] == arm.digest
    nydus_doc = client.get_manifest("nydus/multi", entries[1]["digest"]).json()
    assert nydus_doc["config"]["mediaType"] == mt.NYDUS_CONFIG
    boot = fetch_bootstrap(client, "nydus/multi", nydus_doc, tmp_path / "boot")
    with open_metadata(boot) as fs:
        # the arm64 image (its own data size; the amd64 one has the same shape, so compare the blobs)
        assert fs.lstat("/app/seed").st_size == 2 and not fs.exists("/app/x")
    arm_layers = {d["digest"] for d in arm.json()["layers"]}
    amd_layers = {d["digest"] for d in client.get_manifest("src/multi", "v1-amd64").json()["layers"]}
    assert arm_layers.isdisjoint(amd_layers)
    # check resolves the Nydus manifest of the merged index, and the OCI one of the source index
    check_ok(source, target, tmp_path / "c", "--platform", "linux/arm64")
    # a platform the index lacks is a one-line error naming the ones it has
    bad = nydusify("convert", "--source", source, "--target", target + "x", "--plain-http", "--platform",
                   "linux/s390x", "--work-dir", str(tmp_path / "w"))
    assert bad.returncode != 0
    assert bad.stderr.strip() == (f"error: {source}: no manifest for platform linux/s390x "
                                  "(available: linux/amd64, linux/arm64)")


def test_with_referrer_sets_subject(registry_open: RegistryFlavour, tmp_path: Path) -> None:
    host, client = registry_open.server.host, registry_open.client()
    digest, _ = push_image(client, "src/ref", "v1", small_layers(20))
    proc = nydusify("convert", "--source", f"{host}/src/ref:v1", "--target", f"{host}/nydus/ref:v1",
                    "--plain-http", "--with-referrer", "--work-dir", str(tmp_path / "w"))
    assert proc.returncode == 0, proc.stderr
    doc = client.get_manifest("nydus/ref", "v1").json()
    src = client.get_manifest("src/ref", "v1")
    assert doc["subject"] == {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": src.size}
    # the subject is resolvable in the target repository
    assert client.get_manifest("nydus/ref", digest).digest == digest


def test_chunk_dict_from_registry(registry_open: RegistryFlavour, tmp_path: Path) -> None:
    host, client = registry_open.server.host, registry_open.client()
    shared = random_bytes(800_000, 30)
    push_image(client, "src/dict", "v1", [LayerWriter().file("lib.so", shared).tar_gz()])
    assert nydusify("convert", "--source", f"{host}/src/dict:v1", "--target", f"{host}/nydus/dict:v1",
                    "--plain-http", "--work-dir", str(tmp_path / "w1")).returncode == 0
    dict_doc = client.get_manifest("nydus/dict", "v1").json()
    dict_blob = dict_doc["layers"][0]["digest"]
    push_image(client, "src/app", "v1", [LayerWriter().dir("opt").file("opt/lib.so", shared)
                                         .file("opt/own", random_bytes(200_000, 31)).tar_gz()])
    proc = nydusify("convert", "--source", f"{host}/src/app:v1", "--target", f"{host}/nydus/app:v1",
                    "--plain-http", "--chunk-dict", f"bootstrap:registry:{host}/nydus/dict:v1",
                    "--work-dir", str(tmp_path / "w2"))
    assert proc.returncode == 0, proc.stderr
    doc = client.get_manifest("nydus/app", "v1").json()
    layers = doc["layers"]
    # own blob (new data only), then the chunk-dict blob it references, then the bootstrap
    assert [d["mediaType"] for d in layers] == [mt.NYDUS_BLOB, mt.NYDUS_BLOB, mt.OCI_LAYER_GZIP]
    assert layers[1]["digest"] == dict_blob
    assert layers[0]["size"] < len(shared)
    assert json.loads(layers[-1]["annotations"]["containerd.io/snapshot/nydus-reference-blob-ids"]) == [
        dict_blob.removeprefix("sha256:")]
    check_ok(f"{host}/src/app:v1", f"{host}/nydus/app:v1", tmp_path / "c")


def test_prefetch_patterns_from_stdin(registry_open: RegistryFlavour, tmp_path: Path) -> None:
    host, client = registry_open.server.host, registry_open.client()
    push_image(client, "src/pf", "v1", small_layers(40))
    proc = nydusify("convert", "--source", f"{host}/src/pf:v1", "--target", f"{host}/nydus/pf:v1",
                    "--plain-http", "--prefetch-patterns", "--work-dir", str(tmp_path / "w"),
                    stdin="/app/seed\n/app/data\n")
    assert proc.returncode == 0, proc.stderr
    boot = fetch_bootstrap(client, "nydus/pf", client.get_manifest("nydus/pf", "v1").json(), tmp_path / "b")
    img = open_image(str(boot))
    try:
        inos = set(img.prefetch_inodes())
    finally:
        img.close()
    with open_metadata(boot) as fs:
        assert inos == {fs.lstat("/app/seed").st_ino, fs.lstat("/app/data").st_ino}


def test_credentials_from_docker_config(registry_basic: RegistryFlavour, tmp_path: Path) -> None:
    host, client = registry_basic.server.host, registry_basic.client()
    push_image(client, "src/auth", "v1", small_layers(50))
    args = ("convert", "--source", f"{host}/src/auth:v1", "--target", f"{host}/nydus/auth:v1", "--plain-http",
            "--work-dir", str(tmp_path / "w"))
    env = dict(os.environ, DOCKER_CONFIG=str(tmp_path / "docker"))
    denied = nydusify(*args, env=env)
    assert denied.returncode != 0 and "authentication" in denied.stderr
    assert len(denied.stderr.strip().splitlines()) == 1
    (tmp_path / "docker").mkdir()
    user_pass = base64.b64decode(registry_basic.auth).decode()
    (tmp_path / "docker" / "config.json").write_text(json.dumps(
        {"auths": {host: {"auth": base64.b64encode(user_pass.encode()).decode()}}}))
    proc = nydusify(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert oci.is_nydus_manifest(client.get_manifest("nydus/auth", "v1").json())


@pytest.mark.parametrize("args, message", [
    (("--chunk-dict", "registry:x"), "--chunk-dict 'registry:x': expected bootstrap:registry:REF or "
                                     "bootstrap:local:PATH"),
    (("--fs-version", "5"), "--fs-version 5: nydus-py converts to RAFS v6 only"),
    (("--chunk-size", "0x3000"), "--chunk-size 0x3000: must be a power of two between 0x1000 and 0x1000000"),
    (("--backend-type", "s3"), "--backend-type s3 needs --backend-config"),
    (("--backend-type", "s3", "--backend-config", "{"), None),
])
def test_bad_options_are_one_line_errors(args: tuple[str, ...], message: str | None, tmp_path: Path) -> None:
    proc = nydusify("convert", "--source", "127.0.0.1:1/a:b", "--target", "127.0.0.1:1/c:d", *args,
                    "--work-dir", str(tmp_path))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    if message is not None:
        assert lines[0] == f"error: {message}"
    else:
        assert lines[0].startswith("error: --backend-config: invalid JSON")


def test_insecure_flags_with_a_tls_registry(registry_factory: object, tmp_path: Path) -> None:
    server = registry_factory.registry(tls=True)
    client = server.client()
    push_image(client, "src/tls", "v1", small_layers(60))
    args = ("convert", "--source", f"{server.host}/src/tls:v1", "--target", f"{server.host}/nydus/tls:v1",
            "--work-dir", str(tmp_path / "w"))
    refused = nydusify(*args)
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and server.host in lines[0]
    proc = nydusify(*args, "--source-insecure", "--target-insecure")
    assert proc.returncode == 0, proc.stderr
    assert oci.is_nydus_manifest(client.get_manifest("nydus/tls", "v1").json())
