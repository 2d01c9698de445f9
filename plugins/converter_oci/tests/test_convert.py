"""nydusify convert against the real docker-registry: manifest shape, blobs, dedup, check, skopeo."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nydus_testkit.samples import random_bytes
from nydus_testsupport.oci_images import LayerWriter, push_image, sample_layers
from nydus_testsupport.registry import RegistryFlavour

from nydus_core.fs import open_metadata
from nydus_core.oci import annotations as ann
from nydus_core.oci import image as oci
from nydus_core.oci import mediatypes as mt
from nydus_core.plugins import compressor_by_id
from nydus_core.rafs.image import open_image
from nydus_core.rafs.toc import extract_bootstrap_file

NYDUSIFY = str(Path(sys.executable).with_name("nydusify"))
SHARED = random_bytes(1_500_000, seed=71)
BIG = random_bytes(2_600_000, seed=72)


def nydusify(*args: str, stdin: str | None = None, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    """Run the installed nydusify console script."""
    return subprocess.run([NYDUSIFY, *args], capture_output=True, text=True, input=stdin, timeout=240,
                          env=env)


@pytest.fixture(scope="module")
def source(registry_open: RegistryFlavour) -> str:
    """A three-layer OCI image (see ``sample_layers``) in the registry."""
    client = registry_open.client()
    push_image(client, "src/sample", "v1", sample_layers(SHARED, BIG))
    return f"{registry_open.server.host}/src/sample:v1"


@pytest.fixture(scope="module")
def converted(source: str, registry_open: RegistryFlavour, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, Any]:
    """The sample converted once with the CLI (shared by the tests of this module)."""
    work = tmp_path_factory.mktemp("convert")
    target = f"{registry_open.server.host}/nydus/sample:v1"
    out = work / "metrics.json"
    proc = nydusify("convert", "--source", source, "--target", target, "--plain-http",
                    "--work-dir", str(work / "work"), "--output-json", str(out))
    assert proc.returncode == 0, proc.stderr
    client = registry_open.client()
    man = client.get_manifest("nydus/sample", "v1")
    return {"target": target, "work": work, "metrics": json.loads(out.read_text()), "manifest": man,
            "client": client}


def test_manifest_follows_upstream_layout(converted: dict[str, Any], registry_open: RegistryFlavour) -> None:
    man = converted["manifest"]
    doc = man.json()
    client = converted["client"]
    assert man.media_type == mt.OCI_MANIFEST
    layers = doc["layers"]
    assert len(layers) == 4  # one blob per source layer + the bootstrap layer
    for d in layers[:-1]:
        assert d["mediaType"] == "application/vnd.oci.image.layer.nydus.blob.v1"
        assert d["annotations"] == {"containerd.io/snapshot/nydus-blob": "true"}
        data = client.fetch_blob("nydus/sample", d["digest"])
        assert len(data) == d["size"]
        assert d["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    boot = layers[-1]
    assert boot["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert boot["annotations"] == {"containerd.io/snapshot/nydus-bootstrap": "true",
                                   "containerd.io/snapshot/nydus-fs-version": "6"}
    raw = gzip.decompress(client.fetch_blob("nydus/sample", boot["digest"]))
    config = json.loads(client.fetch_blob("nydus/sample", doc["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [d["digest"] for d in layers[:-1]] + [
        "sha256:" + hashlib.sha256(raw).hexdigest()]
    assert config["history"][-1] == {"created_by": "Nydus Converter", "comment": "Nydus Bootstrap Layer"}
    assert config["history"][:-1] == [{"created_by": f"layer {i}"} for i in range(3)]
    assert config["architecture"] == "amd64" and config["config"]["Cmd"] == ["/bin/sh"]


def test_bootstrap_layer_holds_merged_bootstrap_naming_layer_digests(converted: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    doc = converted["manifest"].json()
    client = converted["client"]
    boot = oci.unpack_bootstrap_layer(client.fetch_blob("nydus/sample", doc["layers"][-1]["digest"]))
    path = tmp_path / "boot"
    path.write_bytes(boot)
    img = open_image(str(path))
    try:
        ids = ["sha256:" + b.blob_id for b in img.blobs]
        sizes = {"sha256:" + b.blob_id: b.compressed_size for b in img.blobs}
    finally:
        img.close()
    blob_layers = {d["digest"]: d["size"] for d in doc["layers"][:-1]}
    assert set(ids) <= set(blob_layers)
    assert all(sizes[i] == blob_layers[i] for i in ids)
    # each blob carries its own layer's bootstrap (inline meta + ToC), as upstream's converter does
    for i, (present, absent) in enumerate([("/usr/bin/tool", "/opq/new"), ("/opq/new", "/usr/bin/tool")]):
        blob = tmp_path / f"blob{i}"
        blob.write_bytes(client.fetch_blob("nydus/sample", doc["layers"][i]["digest"]))
        inline = extract_bootstrap_file(blob, compressor_for=compressor_by_id)
        with open_metadata(_write(tmp_path / f"inline{i}", inline)) as fs:
            assert fs.exists(present) and not fs.exists(absent)


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_same_content_in_two_layers_is_stored_once(converted: dict[str, Any]) -> None:
    layers = converted["manifest"].json()["layers"]
    # layer 2 adds 1.5 MB of random data already stored by layer 1: its blob holds metadata only
    assert layers[0]["size"] > len(SHARED) + len(BIG)
    assert layers[1]["size"] < 100_000
    assert layers[2]["size"] < 100_000


def test_check_passes(converted: dict[str, Any], source: str, tmp_path: Path) -> None:
    proc = nydusify("check", "--source", source, "--target", converted["target"], "--plain-http",
                    "--work-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"check passed: (\d+) paths compared, (\d+) files \((\d+) bytes\) read", proc.stdout)
    assert m, proc.stdout
    # every file's data was read through the registry backend: both copies of SHARED, BIG, the rest
    assert int(m.group(3)) >= 2 * len(SHARED) + len(BIG)
    assert int(m.group(1)) == 27  # / + 26 entries the three layers leave (see sample_layers)


def test_check_lists_differences(converted: dict[str, Any], registry_open: RegistryFlavour,
                                 tmp_path: Path) -> None:
    from nydus_testsupport.oci_images import LayerWriter

    client = registry_open.client()
    extra = (LayerWriter().dir("etc").file("etc/hosts", b"10.0.0.1 changed\n", mode=0o644)
             .file("etc/new", b"n").dir("data").whiteout("data/l2-b")).tar_gz()
    push_image(client, "src/sample", "v1-more", [*sample_layers(SHARED, BIG), extra])
    other = f"{registry_open.server.host}/src/sample:v1-more"
    proc = nydusify("check", "--source", other, "--target", converted["target"], "--plain-http",
                    "--work-dir", str(tmp_path))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert "/etc/new: in the OCI image, missing from the Nydus image" in lines
    assert "/data/l2-b: in the Nydus image, not in the OCI image" in lines
    assert "/etc/hosts: mode 600 in Nydus, 644 in OCI" in lines
    assert "/etc/hosts: xattrs ['user.k'] in Nydus, [] in OCI" in lines


def test_metrics_json_and_work_dir_reuse(converted: dict[str, Any], source: str,
                                         registry_open: RegistryFlavour) -> None:
    m = converted["metrics"]
    assert m["target"] == converted["target"]
    assert m["manifest_digest"] == converted["manifest"].digest
    assert [entry["cached"] for entry in m["layers"]] == [False, False, False]
    assert m["source_image_size"] > len(SHARED) and m["target_image_size"] > len(SHARED)
    for key in ("conversion_elapsed", "push_elapsed", "total_elapsed", "bootstrap_size"):
        assert m[key] >= 0
    # converting again with the same work dir and options reuses every layer (and gives the same image)
    target2 = f"{registry_open.server.host}/nydus/sample:again"
    out = converted["work"] / "again.json"
    proc = nydusify("convert", "--source", source, "--target", target2, "--plain-http",
                    "--work-dir", str(converted["work"] / "work"), "--output-json", str(out))
    assert proc.returncode == 0, proc.stderr
    again = json.loads(out.read_text())
    assert [entry["cached"] for entry in again["layers"]] == [True, True, True]
    assert again["manifest_digest"] == m["manifest_digest"]
    # other options (chunk size) are another conversion
    out3 = converted["work"] / "other.json"
    proc = nydusify("convert", "--source", source, "--target", target2, "--plain-http", "--chunk-size",
                    "0x40000", "--work-dir", str(converted["work"] / "work"), "--output-json", str(out3))
    assert proc.returncode == 0, proc.stderr
    assert [entry["cached"] for entry in json.loads(out3.read_text())["layers"]] == [False, False, False]


def test_skopeo_inspects_and_copies_the_nydus_image(converted: dict[str, Any], tmp_path: Path) -> None:
    ref = "docker://" + converted["target"]
    proc = subprocess.run(["skopeo", "inspect", "--tls-verify=false", ref], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["Digest"] == converted["manifest"].digest
    assert info["Layers"] == [d["digest"] for d in converted["manifest"].json()["layers"]]
    proc = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", ref, f"oci:{tmp_path}/layout:v1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    copied = json.loads((tmp_path / "layout" / "blobs" / "sha256" / manifest_digest[7:]).read_text())
    assert [d["digest"] for d in copied["layers"]] == info["Layers"]
    for d in copied["layers"]:
        blob = (tmp_path / "layout" / "blobs" / "sha256" / d["digest"][7:]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == d["digest"][7:]


def test_already_nydus_source_is_refused(converted: dict[str, Any], tmp_path: Path) -> None:
    proc = nydusify("convert", "--source", converted["target"], "--target", converted["target"] + "x",
                    "--plain-http", "--work-dir", str(tmp_path))
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"error: {converted['target']}: already a Nydus image"]
    assert ann.NYDUS_BOOTSTRAP  # the annotation the detection uses


def test_check_finds_manifest_and_config_problems(converted: dict[str, Any], registry_open: RegistryFlavour,
                                                  tmp_path: Path) -> None:
    client = converted["client"]
    doc = converted["manifest"].json()
    config = json.loads(client.fetch_blob("nydus/sample", doc["config"]["digest"]))
    config["rootfs"]["diff_ids"][0] = "sha256:" + "0" * 64
    config["history"] = config["history"][:-1]
    body = oci.dumps(config)
    doc["config"] = oci.descriptor(mt.OCI_CONFIG, client.push_blob("nydus/sample", body), len(body))
    del doc["layers"][0]["annotations"]
    doc["layers"][-1]["annotations"][ann.NYDUS_FS_VERSION] = "7"
    client.put_manifest("nydus/sample", "broken", oci.dumps(doc), mt.OCI_MANIFEST)
    target = f"{registry_open.server.host}/nydus/sample:broken"
    proc = nydusify("check", "--target", target, "--plain-http", "--work-dir", str(tmp_path))
    assert proc.returncode == 1
    first = doc["layers"][0]["digest"]
    assert proc.stdout.splitlines() == [
        f"{target}: bootstrap layer: {ann.NYDUS_FS_VERSION} is '7'",
        f"{target}: layer {first}: no {ann.NYDUS_BLOB} annotation",
        f"{target}: diff_id sha256:{'0' * 64} of blob layer {first} is not its digest",
        f"{target}: config history does not end with the Nydus bootstrap entry",
    ]


def test_bad_source_layer_is_named_by_digest_and_media_type(registry_open: RegistryFlavour,
                                                            tmp_path: Path) -> None:
    client = registry_open.client()
    good = SHARED[:1000]
    push_image(client, "src/badlayer", "v1", [LayerWriter().file("ok", good).tar_gz()])
    doc = client.get_manifest("src/badlayer", "v1").json()
    junk = b"this is not gzip" * 64
    bad = oci.descriptor(mt.OCI_LAYER_GZIP, client.push_blob("src/badlayer", junk), len(junk))
    doc["layers"].append(bad)
    client.put_manifest("src/badlayer", "bad", oci.dumps(doc), mt.OCI_MANIFEST)
    source = f"{registry_open.server.host}/src/badlayer:bad"
    proc = nydusify("convert", "--source", source, "--target", f"{registry_open.server.host}/nydus/bad:v1",
                    "--plain-http", "--work-dir", str(tmp_path))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    layer = f"{source} layer 1 ({bad['digest']}, {mt.OCI_LAYER_GZIP})"
    assert lines[0].startswith(f"error: {layer}: invalid "), lines
    assert "IterStream" not in proc.stderr and "object at 0x" not in proc.stderr
