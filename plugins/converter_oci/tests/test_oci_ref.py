"""``nydusify convert --oci-ref`` against the real docker-registry: only small RAFS blobs and the
bootstrap are pushed, the source layers stay the data blobs; check, mount and the bytes agree."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from nydus_testkit.samples import random_bytes
from nydus_testsupport.oci_images import LayerWriter, push_image, sample_layers
from nydus_testsupport.registry import RegistryFlavour

from nydus_core.mounts import force_unmount, is_mountpoint
from nydus_core.oci import mediatypes as mt
from nydus_core.rafs.constants import BlobFeatures
from nydus_core.rafs.image import open_image

NYDUSIFY = str(Path(sys.executable).with_name("nydusify"))


def nydusify(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed nydusify console script."""
    return subprocess.run([NYDUSIFY, *args], capture_output=True, text=True, timeout=300)


def _text(n: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    words = [bytes(rnd.choice(b"abcdefghij \n") for _ in range(rnd.randint(2, 9))) for _ in range(500)]
    out = bytearray()
    while len(out) < n:
        out += rnd.choice(words) + b" "
    return bytes(out[:n])


#: Real Debian files from the host (about 5 MB of tar): a small Debian-rootfs-like layer.
HOST_DIRS = ("etc/apt", "usr/share/doc/apt", "usr/share/doc/dpkg", "usr/share/doc/bash",
             "usr/share/doc/coreutils", "usr/share/zoneinfo", "usr/share/common-licenses")


def _host_layer() -> bytes:
    """A layer of the host's Debian files (tar by tar(1), gzip by gzip(1))."""
    dirs = [d for d in HOST_DIRS if os.path.isdir("/" + d)]
    raw = subprocess.run(["tar", "-C", "/", "-cf", "-", "--format=pax", *dirs],
                         capture_output=True, check=True).stdout
    return subprocess.run(["gzip", "-n", "-c"], input=raw, capture_output=True, check=True).stdout


def _mixed_layer() -> bytes:
    w = LayerWriter().dir("srv")
    for i in range(40):
        w = w.file(f"srv/t{i}.txt", _text(20_000 + 997 * i, i))
    w = w.file("srv/blob.bin", random_bytes(2_500_000, seed=81)).file("srv/log.txt", _text(3_000_000, 82))
    return w.tar_gz()


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.fixture(scope="module")
def converted(registry_open: RegistryFlavour, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    client = registry_open.client()
    host = registry_open.server.host
    layers = [_host_layer(), *sample_layers(random_bytes(900_000, 83), random_bytes(1_700_000, 84)),
              _mixed_layer()]
    push_image(client, "src/ociref", "v1", layers)
    source, target = f"{host}/src/ociref:v1", f"{host}/nydus/ociref:v1"
    data = registry_open.server.directory / "data"
    before = _dir_size(data)
    work = tmp_path_factory.mktemp("ociref")
    out = work / "metrics.json"
    proc = nydusify("convert", "--oci-ref", "--source", source, "--target", target, "--plain-http",
                    "--work-dir", str(work / "work"), "--output-json", str(out))
    assert proc.returncode == 0, proc.stderr
    growth = _dir_size(data) - before
    return {"source": source, "target": target, "layers": layers, "metrics": json.loads(out.read_text()),
            "growth": growth, "client": client, "work": work, "host": host}


def test_only_small_blobs_are_pushed(converted: dict[str, Any]) -> None:
    m = converted["metrics"]
    source_size = sum(len(x) for x in converted["layers"])
    assert m["source_image_size"] == source_size
    # registry growth: RAFS blobs, bootstrap layer, config, manifest (and the registry's own links)
    assert converted["growth"] <= source_size // 10, (converted["growth"], source_size)
    assert 0 < m["pushed_bytes"] <= converted["growth"]
    assert set(m["profile"]) >= {"download", "index", "push"}


def test_manifest_references_the_source_layers(converted: dict[str, Any]) -> None:
    client = converted["client"]
    doc = client.get_manifest("nydus/ociref", "v1").json()
    assert doc["mediaType"] == mt.OCI_MANIFEST
    src_digests = ["sha256:" + hashlib.sha256(x).hexdigest() for x in converted["layers"]]
    blob_layers = doc["layers"][:-1]
    assert [d["annotations"]["containerd.io/snapshot/nydus-ref"] for d in blob_layers] == src_digests
    for d in blob_layers:
        assert d["mediaType"] == "application/vnd.oci.image.layer.nydus.blob.v1"
        assert d["annotations"]["containerd.io/snapshot/nydus-blob"] == "true"
        raw = client.fetch_blob("nydus/ociref", d["digest"])
        assert d["digest"] == "sha256:" + hashlib.sha256(raw).hexdigest() and len(raw) == d["size"]
        assert raw[-512:].split(b"\0", 1)[0] == b"rafs.blob.toc"
    for digest in src_digests:  # nydusd pulls them from the target repository
        assert client.blob_exists("nydus/ociref", digest)
    boot = doc["layers"][-1]
    assert boot["annotations"]["containerd.io/snapshot/nydus-bootstrap"] == "true"


def test_bootstrap_records_layers_and_rafs_blobs(converted: dict[str, Any], tmp_path: Path) -> None:
    client = converted["client"]
    doc = client.get_manifest("nydus/ociref", "v1").json()
    raw = client.fetch_blob("nydus/ociref", doc["layers"][-1]["digest"])
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tf:
        member = tf.extractfile("image/image.boot")
        assert member is not None
        (tmp_path / "boot").write_bytes(member.read())
    refs = {d["annotations"]["containerd.io/snapshot/nydus-ref"]: d for d in doc["layers"][:-1]}
    with open_image(tmp_path / "boot") as image:
        assert image.blobs
        for b in image.blobs:
            assert b.features & BlobFeatures.ZRAN and b.features & BlobFeatures.SEPARATE
            d = refs["sha256:" + b.blob_id]
            assert d["digest"] == "sha256:" + b.blob_meta_digest.hex() and d["size"] == b.blob_meta_size


def test_check_passes(converted: dict[str, Any], tmp_path: Path) -> None:
    proc = nydusify("check", "--source", converted["source"], "--target", converted["target"],
                    "--plain-http", "--work-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "check passed" in proc.stdout


def test_check_notices_a_missing_source_layer(converted: dict[str, Any], tmp_path: Path) -> None:
    """The RAFS blob layer must name the layer its data comes from: a manifest whose nydus-ref is
    wrong fails the check."""
    client = converted["client"]
    man = client.get_manifest("nydus/ociref", "v1")
    doc = man.json()
    doc["layers"][0]["annotations"]["containerd.io/snapshot/nydus-ref"] = "sha256:" + "0" * 64
    body = json.dumps(doc).encode()
    client.put_manifest("nydus/ociref", "broken", body, mt.OCI_MANIFEST)
    proc = nydusify("check", "--target", f"{converted['host']}/nydus/ociref:broken", "--plain-http",
                    "--work-dir", str(tmp_path))
    assert proc.returncode == 1
    assert "nydus-ref" in proc.stdout


@pytest.mark.root
def test_mount_reads_identical_bytes(converted: dict[str, Any], tmp_path: Path) -> None:
    try:
        from nydus_testsupport.fuse import fuse_unavailable
    except ImportError:
        pytest.skip("nydus-frontend-fuse is not installed")
    reason = fuse_unavailable()
    if reason:
        pytest.skip(reason)
    expected: dict[str, bytes] = {}
    for layer in converted["layers"]:  # later layers win; sample_layers' whiteouts are not in /srv, /usr
        with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as tf:
            for m in tf:
                if m.isreg() and m.name.startswith(("srv/", "usr/", "data/")):
                    f = tf.extractfile(m)
                    assert f is not None
                    expected[m.name] = f.read()
    mp = tmp_path / "mnt"
    proc = subprocess.Popen([NYDUSIFY, "mount", "--target", converted["target"], "--plain-http",
                             "--mount-path", str(mp), "--work-dir", str(tmp_path / "mwork")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not is_mountpoint(mp.resolve()):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "nydusify mount did not mount in 60 s"
            time.sleep(0.05)
        assert len(expected) > 100
        for name, data in expected.items():
            assert (mp / name).read_bytes() == data, name
        assert os.path.isdir(mp / "etc" / "apt")
        zones = mp / "usr" / "share" / "zoneinfo"
        assert sorted(os.listdir(zones)) == sorted(os.listdir("/usr/share/zoneinfo"))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        force_unmount(mp)


def test_prefetch_table_with_oci_ref(registry_open: RegistryFlavour, tmp_path: Path) -> None:
    """--prefetch-patterns records the paths in the merged bootstrap of an --oci-ref image."""
    client = registry_open.client()
    host = registry_open.server.host
    push_image(client, "src/ociref-pf", "v1", [_mixed_layer()])
    proc = subprocess.run([NYDUSIFY, "convert", "--oci-ref", "--prefetch-patterns", "--source",
                           f"{host}/src/ociref-pf:v1", "--target", f"{host}/nydus/ociref-pf:v1",
                           "--plain-http", "--work-dir", str(tmp_path / "w")],
                          input="/srv/log.txt\n/srv/t3.txt\n", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open_image(tmp_path / "w" / "bootstrap") as image:
        wanted = set(image.prefetch_inodes())
        paths = {p for p, ino in image.walk() if ino in wanted}
    assert paths == {b"/srv/log.txt", b"/srv/t3.txt"}
    check = nydusify("check", "--source", f"{host}/src/ociref-pf:v1", "--target",
                     f"{host}/nydus/ociref-pf:v1", "--plain-http", "--work-dir", str(tmp_path / "c"))
    assert check.returncode == 0, check.stdout + check.stderr
