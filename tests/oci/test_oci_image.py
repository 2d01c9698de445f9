"""nydus_core.oci against upstream's example manifests and real tar/gzip readers."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from nydus_testsupport.fixtures import require_upstream

from nydus_core.errors import FormatError, UsageError
from nydus_core.oci import annotations as ann
from nydus_core.oci import image as oci
from nydus_core.oci import mediatypes as mt
from nydus_core.oci.platform import Platform, select_manifest, select_nydus_manifest


def _fixture(name: str) -> dict:
    return json.loads((require_upstream() / "manifests" / name).read_text())


def test_upstream_manifest_is_recognised_and_has_the_layout_we_build() -> None:
    doc = _fixture("manifest.json")
    assert oci.is_nydus_manifest(doc)
    boot = oci.bootstrap_layer_of(doc, where="manifest.json")
    assert boot["mediaType"] == mt.OCI_LAYER_GZIP
    for layer in doc["layers"][:-1]:
        built = oci.blob_layer(layer["digest"], layer["size"])
        assert built == {k: layer[k] for k in ("mediaType", "digest", "size", "annotations")}
    ours = oci.bootstrap_layer_descriptor(boot["digest"], boot["size"], reference_blob_ids=json.loads(
        boot["annotations"][ann.NYDUS_REFERENCE_BLOB_IDS]))
    # upstream's example predates the fs-version annotation; everything else matches
    assert {k: v for k, v in ours["annotations"].items() if k != ann.NYDUS_FS_VERSION} == boot["annotations"]
    assert ours["mediaType"] == boot["mediaType"]


def test_upstream_merged_index_selection() -> None:
    index = _fixture("index.json")
    amd64 = Platform.parse("linux/amd64")
    assert select_manifest(index, amd64, where="index.json")["digest"] == index["manifests"][0]["digest"]
    nydus = select_nydus_manifest(index, amd64, where="index.json")
    assert nydus["digest"] == index["manifests"][1]["digest"]
    with pytest.raises(UsageError, match=r"no manifest for platform linux/arm64 \(available: linux/amd64\)"):
        select_manifest(index, Platform.parse("linux/arm64"), where="index.json")
    with pytest.raises(FormatError, match="no Nydus manifest for platform linux/arm64"):
        select_nydus_manifest(index, Platform.parse("linux/arm64"), where="index.json")
    legacy = {"manifests": [{"digest": "sha256:" + "a" * 64, "platform": {
        "os": "linux", "architecture": "amd64", "os.features": [mt.NYDUS_OS_FEATURE]}}]}
    assert oci.is_nydus_descriptor(legacy["manifests"][0])


def test_bootstrap_layer_round_trip_read_by_gnu_tar(tmp_path: Path) -> None:
    boot = bytes(range(256)) * 100
    gz, diff_id = oci.pack_bootstrap_layer(boot)
    assert oci.pack_bootstrap_layer(boot) == (gz, diff_id)  # deterministic
    path = tmp_path / "layer.tar.gz"
    path.write_bytes(gz)
    listing = subprocess.run(["tar", "-tvzf", str(path)], capture_output=True, text=True, check=True).stdout
    lines = listing.splitlines()
    assert lines[0].startswith("drwxr-xr-x") and lines[0].endswith(" image/")
    assert lines[1].startswith("-r--r--r--") and lines[1].endswith(" image/image.boot")
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "-xzf", str(path), "-C", str(out)], check=True)
    assert (out / "image" / "image.boot").read_bytes() == boot
    raw = subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True).stdout
    assert diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert oci.unpack_bootstrap_layer(gz) == boot


def test_unpack_legacy_and_broken_layers(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.tar"
    (tmp_path / "image.boot").write_bytes(b"legacy bootstrap")
    with tarfile.open(legacy, "w") as tar:
        tar.add(tmp_path / "image.boot", arcname="image.boot")
    assert oci.unpack_bootstrap_layer(legacy.read_bytes()) == b"legacy bootstrap"
    with pytest.raises(FormatError, match=r"no image/image\.boot"):
        empty = tmp_path / "empty.tar"
        with tarfile.open(empty, "w"):
            pass
        oci.unpack_bootstrap_layer(empty.read_bytes(), where="x")
    with pytest.raises(FormatError, match="bootstrap layer: invalid gzip stream"):
        oci.unpack_bootstrap_layer(b"\x1f\x8bnot gzip")
    gz, _ = oci.pack_bootstrap_layer(b"B" * 5000)
    assert oci.unpack_bootstrap_layer(gz[:20] + gz[20:]) == b"B" * 5000
    flipped = bytearray(gz)
    flipped[-8] ^= 0x01  # the CRC32 of the (only) member, checked though the bootstrap was read before it
    with pytest.raises(FormatError, match=r"boot layer: invalid gzip stream: member 1 .*CRC32 mismatch"):
        oci.unpack_bootstrap_layer(bytes(flipped), where="boot layer")


def test_chain_id_and_config() -> None:
    a, b = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    assert oci.chain_id([a]) == a
    assert oci.chain_id([a, b]) == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    src = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [a]},
           "history": [{"created_by": "x"}]}
    cfg = oci.nydus_config(src, [b, a])
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": [b, a]}
    assert cfg["history"] == [{"created_by": "x"}, ann.BOOTSTRAP_HISTORY]
    assert src["history"] == [{"created_by": "x"}]  # the source is not modified


def test_platform_parsing() -> None:
    assert Platform.parse("linux/arm64/v8") == Platform("linux", "arm64", "v8")
    assert Platform.parse("linux/arm64").matches(Platform("linux", "arm64", "v8"))
    assert not Platform.parse("linux/arm/v7").matches(Platform("linux", "arm", "v6"))
    for bad in ("linux", "linux/", "a/b/c/d"):
        with pytest.raises(UsageError, match="invalid platform"):
            Platform.parse(bad)
