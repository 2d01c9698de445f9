"""Real layer shapes convert with every entry: two-member and bgzip-shaped gzip, ``tar+zstd``,
eStargz (TOC and landmark files left out); a bad gzip layer fails on one line naming the layer."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from nydus_testkit.samples import random_bytes
from nydus_testsupport.oci_images import LayerWriter
from nydus_testsupport.registry import RegistryFlavour

from nydus_core.fs import open_metadata
from nydus_core.oci import image as oci
from nydus_core.oci import mediatypes as mt

NYDUSIFY = str(Path(sys.executable).with_name("nydusify"))
ESTARGZ_TOC = "containerd.io/snapshot/stargz/toc.digest"


def nydusify(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed nydusify console script."""
    return subprocess.run([NYDUSIFY, *args], capture_output=True, text=True, timeout=300)


def _members(data: bytes, size: int) -> bytes:
    """gzip members of ``size`` input bytes each, concatenated (what bgzip writes)."""
    return b"".join(gzip.compress(data[i:i + size], mtime=0) for i in range(0, len(data), size))


def _estargz(files: dict[str, bytes]) -> bytes:
    """An eStargz-shaped layer: landmark first, one gzip member per entry, the TOC member last."""
    parts = []
    w = LayerWriter().file(".prefetch.landmark", b"\xf0")
    for name, data in files.items():
        w = w.file(name, data)
    tar = w.tar()
    toc = LayerWriter().file("stargz.index.json", json.dumps({"version": 1, "entries": []}).encode()).tar()
    # every 512-byte tar block boundary is a valid cut: one member for the files, one for the TOC
    body = tar[:-1024]
    parts = [gzip.compress(body[:512 * 3], mtime=0), gzip.compress(body[512 * 3:], mtime=0),
             gzip.compress(toc, mtime=0)]
    return b"".join(parts)


def _push(client: Any, repo: str, tag: str, layers: list[tuple[bytes, str, bytes, dict[str, str]]]) -> None:
    """Push layers given as (blob, media type, uncompressed tar, annotations)."""
    descs, diff_ids = [], []
    for blob, media, tar, notes in layers:
        diff_ids.append(oci.sha256_digest(tar))
        descs.append(oci.descriptor(media, client.push_blob(repo, blob), len(blob), annotations=notes))
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "history": [{"created_by": f"layer {i}"} for i in range(len(layers))]}
    cfg = json.dumps(config).encode()
    manifest = oci.image_manifest(oci.descriptor(mt.OCI_CONFIG, client.push_blob(repo, cfg), len(cfg)), descs)
    client.put_manifest(repo, tag, oci.dumps(manifest), mt.OCI_MANIFEST)


@pytest.fixture(scope="module")
def shapes(registry_open: RegistryFlavour) -> dict[str, Any]:
    client = registry_open.client()
    two = LayerWriter().dir("a").file("a/one", random_bytes(300_000, 1)).file("a/two", b"x" * 90_000).tar()
    bg = (LayerWriter().dir("b").file("b/big", random_bytes(700_000, 2))
          .file("b/text", b"hello world\n" * 40_000)).tar()
    zs = LayerWriter().dir("z").file("z/zst", random_bytes(200_000, 3)).file("z/note", b"zstd\n").tar()
    es = {"e/first": b"first\n" * 1000, "e/second": random_bytes(150_000, 4)}
    es_blob = _estargz(es)
    layers = [
        (gzip.compress(two[:10240], mtime=0) + gzip.compress(two[10240:], mtime=0), mt.OCI_LAYER_GZIP, two,
         {}),
        (_members(bg, 0xFF00), mt.OCI_LAYER_GZIP, bg, {}),
        (zstandard.ZstdCompressor().compress(zs), mt.OCI_LAYER_ZSTD, zs, {}),
        (es_blob, mt.OCI_LAYER_GZIP, gzip.decompress(es_blob), {ESTARGZ_TOC: "sha256:" + "1" * 64}),
    ]
    _push(client, "src/shapes", "v1", layers)
    host = registry_open.server.host
    return {"client": client, "source": f"{host}/src/shapes:v1", "host": host, "es": es}


def test_every_shape_converts_with_every_entry(shapes: dict[str, Any], tmp_path: Path) -> None:
    target = f"{shapes['host']}/nydus/shapes:v1"
    proc = nydusify("convert", "--source", shapes["source"], "--target", target, "--plain-http",
                    "--work-dir", str(tmp_path / "w"))
    assert proc.returncode == 0, proc.stderr
    check = nydusify("check", "--source", shapes["source"], "--target", target, "--plain-http",
                     "--work-dir", str(tmp_path / "c"))
    assert check.returncode == 0, check.stdout + check.stderr
    client = shapes["client"]
    doc = client.get_manifest("nydus/shapes", "v1").json()
    raw = gzip.decompress(client.fetch_blob("nydus/shapes", doc["layers"][-1]["digest"]))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        member = tf.extractfile("image/image.boot")
        assert member is not None
        (tmp_path / "boot").write_bytes(member.read())
    with open_metadata(tmp_path / "boot") as fs:
        assert sorted(fs.listdir("/")) == ["a", "b", "e", "z"]  # no TOC, no landmark
        assert fs.listdir("/a") == ["one", "two"] and fs.listdir("/z") == ["note", "zst"]
        assert fs.stat("/b/big").st_size == 700_000
        assert fs.stat("/e/second").st_size == 150_000


def test_bad_gzip_layer_fails_on_one_line_naming_it(shapes: dict[str, Any], tmp_path: Path) -> None:
    client = shapes["client"]
    tar = LayerWriter().dir("d").file("d/f", random_bytes(50_000, 9)).tar()
    blob = bytearray(gzip.compress(tar, mtime=0))
    blob[-8] ^= 0xFF  # the CRC-32
    _push(client, "src/badcrc", "v1", [(bytes(blob), mt.OCI_LAYER_GZIP, tar, {})])
    digest = oci.sha256_digest(bytes(blob))
    for extra in ([], ["--oci-ref"]):
        proc = nydusify("convert", *extra, "--source", f"{shapes['host']}/src/badcrc:v1",
                        "--target", f"{shapes['host']}/nydus/badcrc:v1", "--plain-http",
                        "--work-dir", str(tmp_path / f"w{len(extra)}"))
        assert proc.returncode != 0
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert len(lines) == 1, proc.stderr
        assert digest in lines[0] and "CRC" in lines[0], lines[0]


@pytest.mark.parametrize("oci_ref", [False, True])
def test_implicit_parents_keep_the_lower_layers_attributes(shapes: dict[str, Any], tmp_path: Path,
                                                            oci_ref: bool) -> None:
    client = shapes["client"]
    low = (LayerWriter().dir("opt", mode=0o750, uid=5, gid=6, mtime=1_234_567)
           .dir("opt/sub", mode=0o700, mtime=7_654_321).file("opt/sub/old", b"old")).tar()
    up = LayerWriter().file("opt/sub/new", b"new").file("opt/top", b"top").tar()  # parents not listed
    _push(client, "src/implicit", "v1", [(gzip.compress(low, mtime=0), mt.OCI_LAYER_GZIP, low, {}),
                                         (gzip.compress(up, mtime=0), mt.OCI_LAYER_GZIP, up, {})])
    host = shapes["host"]
    target = f"{host}/nydus/implicit:{'ref' if oci_ref else 'full'}"
    extra = ["--oci-ref"] if oci_ref else []
    proc = nydusify("convert", *extra, "--source", f"{host}/src/implicit:v1", "--target", target,
                    "--plain-http", "--work-dir", str(tmp_path / "w"))
    assert proc.returncode == 0, proc.stderr
    check = nydusify("check", "--source", f"{host}/src/implicit:v1", "--target", target, "--plain-http",
                     "--work-dir", str(tmp_path / "c"))
    assert check.returncode == 0, check.stdout + check.stderr
    boot = Path(tmp_path / "w" / "bootstrap")
    with open_metadata(boot) as fs:
        st = fs.stat("/opt")
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid, int(st.st_mtime)) == (0o750, 5, 6, 1_234_567)
        sub = fs.stat("/opt/sub")
        assert (sub.st_mode & 0o7777, int(sub.st_mtime)) == (0o700, 7_654_321)
        assert sorted(fs.listdir("/opt/sub")) == ["new", "old"]
