"""Issue 8's acceptance, end to end with real components on 127.0.0.1.

An OCI image is converted with ``nydusify convert`` into the Debian ``docker-registry``; ``nydus
containerd pull`` (through a counting proxy) downloads the manifest, config and bootstrap only; a
container started with ``ctr run --snapshotter nydus`` reads files lazily through the shared nydusd
and writes into its own upper dir; the snapshotter is restarted while the container runs; removing
the container and the image removes the snapshots, the RAFS mount and the blob cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nydus_testsupport.containerd import Lab, push_oci_image

from nydus_core.mounts import mounts_under

# runc keeps container state per namespace and id host-wide (/run/containerd/runc): ids unique to
# this process let two test runs share the machine.
RUN = os.getpid()

BIG = 24 << 20  # incompressible, so reading 4 KiB of it must not fetch it whole


def _nydus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).with_name("nydus")), *args], capture_output=True,
                          text=True, timeout=300, check=False)


def _exec(lab: Lab, container: str, script: str) -> str:
    exec_id = f"e{time.time_ns()}"
    res = lab.ctr("tasks", "exec", "--exec-id", exec_id, container, "/bin/sh", "-c", script, check=False)
    assert res.returncode == 0, f"{script}: {res.stderr}\n{lab.env.logs()}"
    return res.stdout


def _snapshots(lab: Lab) -> list[str]:
    out = lab.ctr("snapshots", "--snapshotter", "nydus", "ls").stdout
    return sorted(line.split()[0] + " " + line.split()[-1] for line in out.splitlines()[1:] if line.strip())


def _snapshots_when_reconnected(lab: Lab, timeout: float = 60.0) -> list[str]:
    """``_snapshots`` once containerd has redialled the restarted snapshotter (gRPC backoff)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _snapshots(lab)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _backend_read(apisock: Path) -> int:
    from nydus_frontend_fuse.ctl import ApiClient

    api = ApiClient(str(apisock), timeout=10)
    total = 0
    for mp in api.call("GET", "/api/v1/daemon").get("backend_collection") or {}:
        total += int(api.call("GET", "/api/v1/metrics/backend", {"id": mp}).get("read_amount_total", 0))
    return total


@pytest.fixture(scope="module")
def nydus_image(lab: Lab, rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """An OCI image (host binaries + data layer) converted by nydusify; refs go through the proxy."""
    if not Path(sys.executable).with_name("nydusify").exists():
        pytest.skip("nydusify is not installed (pip install nydus-converter-oci)")
    tmp = tmp_path_factory.mktemp("src")
    data = tmp / "data-layer"
    (data / "data").mkdir(parents=True)
    big = os.urandom(BIG)
    (data / "data" / "big.bin").write_bytes(big)
    (data / "data" / "small.txt").write_text("small file in a lazily pulled image\n")
    host = lab.registry.server.host
    with lab.registry.client() as client:
        src = push_oci_image(client, host, "accept/app", "oci", [rootfs, data], cmd=("/bin/sh",))
    target = f"{host}/accept/app:nydus"
    res = subprocess.run([str(Path(sys.executable).with_name("nydusify")), "convert", "--source", src.ref,
                          "--target", target, "--plain-http", "--work-dir", str(tmp / "work")],
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr
    with lab.registry.client() as client:
        manifest = client.get_manifest("accept/app", "nydus").json()
    return {
        "ref": f"{lab.proxy.host}/accept/app:nydus",
        "manifest": manifest,
        "big_head": hashlib.sha256(big[:4096]).hexdigest(),
        "big_mid": hashlib.sha256(big[BIG // 2:BIG // 2 + 8192]).hexdigest(),
        "big_size": BIG,
    }


def test_lazy_pull_run_restart_and_remove(lab: Lab, nydus_image: dict[str, object]) -> None:
    ref = str(nydus_image["ref"])
    manifest: dict = nydus_image["manifest"]
    layers = manifest["layers"]
    bootstrap_digest = layers[-1]["digest"]
    blob_digests = [la["digest"] for la in layers[:-1]]
    assert layers[-1]["annotations"]["containerd.io/snapshot/nydus-bootstrap"] == "true"
    sn_root = lab.env.snapshotter.root

    # -- pull: only manifest, config and bootstrap come over the wire
    lab.proxy.clear()
    res = _nydus("containerd", "pull", "--address", str(lab.env.containerd.address), "--plain-http", ref)
    assert res.returncode == 0, res.stderr + lab.env.logs()
    blob_gets = [p for m, p, _ in lab.proxy.requests if m == "GET" and "/blobs/" in p]
    assert any(bootstrap_digest in p for p in blob_gets), blob_gets
    assert not [p for p in blob_gets for d in blob_digests if d in p], blob_gets
    assert len(blob_gets) == 2, blob_gets  # the config and the bootstrap layer
    assert ref in lab.ctr("images", "ls", "-q").stdout.split()
    pulled = _snapshots(lab)
    assert len(pulled) == len(layers) and all(s.endswith("Committed") for s in pulled), pulled
    # Pulling again is a no-op: every chain ID is there.
    again = _nydus("containerd", "pull", "--address", str(lab.env.containerd.address), "--plain-http",
                   "--json", ref)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["prepared"] == []

    # -- run: lazy reads and a write into the container's upper dir
    lab.ctr("run", "-d", "--snapshotter", "nydus", ref, f"acc-1-{RUN}", "/bin/sleep", "600")
    try:
        out = _exec(lab, f"acc-1-{RUN}", "cat /data/small.txt; head -c 4096 /data/big.bin | sha256sum; "
                                  "echo written-by-container > /data/new.txt; cat /data/new.txt")
        assert out.split("\n")[0] == "small file in a lazily pulled image"
        assert nydus_image["big_head"] in out
        assert "written-by-container" in out
        read = _backend_read(sn_root / "nydusd.sock")
        assert 0 < read < int(nydus_image["big_size"]) // 2, read  # lazily: far less than the image
        uppers = list((sn_root / "snapshots").glob("*/fs/data/new.txt"))
        assert len(uppers) == 1 and uppers[0].read_text() == "written-by-container\n"
        rafs = [Path(m) for m in mounts_under(sn_root / "mnt")]
        rafs_dirs = [p for p in (sn_root / "mnt").iterdir()]
        assert len(rafs_dirs) == 1 and not (rafs_dirs[0] / "data" / "new.txt").exists(), rafs
        assert (rafs_dirs[0] / "data" / "small.txt").exists()

        # -- restart the snapshotter while the container runs
        before = _snapshots(lab)
        assert any(s.endswith("Active") for s in before), before
        nydusd_pid = (sn_root / "nydusd.pid").read_text()
        lab.env.restart_snapshotter()
        assert _snapshots_when_reconnected(lab) == before
        out = _exec(lab, f"acc-1-{RUN}", f"tail -c +{int(nydus_image['big_size']) // 2 + 1} /data/big.bin "
                                  "| head -c 8192 | sha256sum; cat /data/new.txt")
        assert nydus_image["big_mid"] in out and "written-by-container" in out
        assert (sn_root / "nydusd.pid").read_text() == nydusd_pid  # reconnected, not restarted
    finally:
        lab.ctr("tasks", "kill", "-s", "SIGKILL", f"acc-1-{RUN}", check=False)
        for _ in range(100):
            if f"acc-1-{RUN}" not in lab.ctr("tasks", "ls", "-q", check=False).stdout.split():
                break
            time.sleep(0.1)
        lab.ctr("tasks", "rm", "-f", f"acc-1-{RUN}", check=False)
        lab.ctr("containers", "rm", f"acc-1-{RUN}", check=False)

    # the container's snapshot is gone and the image's RAFS instance is unmounted
    assert not any(s.endswith("Active") for s in _snapshots(lab))
    from nydus_frontend_fuse.ctl import ApiClient

    api = ApiClient(str(sn_root / "nydusd.sock"), timeout=10)

    def rafs_mounted() -> bool:
        return bool(api.call("GET", "/api/v1/daemon").get("backend_collection"))

    deadline = time.monotonic() + 30  # containerd removes backend snapshots in its garbage collection
    while rafs_mounted() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not rafs_mounted(), lab.env.logs()
    cache = sn_root / "cache"
    assert any(cache.iterdir()), "the reads above should have filled the blob cache"

    # -- remove the image: snapshots, bootstrap and cache go
    lab.ctr("images", "rm", "--sync", ref)
    deadline = time.monotonic() + 30
    while _snapshots(lab) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _snapshots(lab) == []
    assert not list((sn_root / "snapshots").glob("*/image.boot"))
    assert not [f for f in cache.iterdir() if any(d.split(":")[1] in f.name for d in blob_digests)]


def test_merged_index_picks_the_nydus_manifest(lab: Lab, rootfs: Path, tmp_path: Path) -> None:
    """``nydusify convert --merge-platform``: an index with the OCI and the Nydus manifest. The pull
    picks the Nydus one (whose config says ``application/vnd.nydus.image.config.v1+json``) and the
    image runs."""
    if not Path(sys.executable).with_name("nydusify").exists():
        pytest.skip("nydusify is not installed (pip install nydus-converter-oci)")
    data = tmp_path / "data"
    (data / "etc").mkdir(parents=True)
    (data / "etc" / "motd").write_text("merged index\n")
    host = lab.registry.server.host
    with lab.registry.client() as client:
        src = push_oci_image(client, host, "accept/merged", "oci", [rootfs, data])
    res = subprocess.run([str(Path(sys.executable).with_name("nydusify")), "convert", "--source", src.ref,
                          "--target", f"{host}/accept/merged:multi", "--merge-platform", "--plain-http",
                          "--work-dir", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr
    with lab.registry.client() as client:
        index = client.get_manifest("accept/merged", "multi").json()
    assert len(index["manifests"]) == 2
    nydus_desc = next(m for m in index["manifests"] if m.get("artifactType"))
    ref = f"{host}/accept/merged:multi"
    lab.proxy.clear()
    out = _nydus("containerd", "pull", "--address", str(lab.env.containerd.address), "--plain-http",
                 "--json", ref)
    assert out.returncode == 0, out.stderr + lab.env.logs()
    with lab.registry.client() as client:
        nydus_manifest = client.get_manifest("accept/merged", nydus_desc["digest"]).json()
    assert nydus_manifest["config"]["mediaType"] == "application/vnd.nydus.image.config.v1+json"
    pulled = json.loads(out.stdout)
    assert pulled["chain_ids"][-1] in " ".join(_snapshots(lab))
    # containerd holds a local copy whose config type is OCI (ctr accepts no other), same layers
    assert pulled["manifest"] != nydus_desc["digest"]
    assert pulled["manifest"] in lab.ctr("images", "ls").stdout
    run = lab.ctr("run", "--rm", "--snapshotter", "nydus", ref, f"merged-1-{RUN}", "/bin/cat", "/etc/motd",
                  check=False)
    assert run.returncode == 0 and run.stdout == "merged index\n", run.stderr + lab.env.logs()
    lab.ctr("images", "rm", "--sync", ref)


def test_oci_ref_image_runs(lab: Lab, rootfs: Path, tmp_path: Path) -> None:
    """``nydusify convert --oci-ref`` (the source layers stay the data blobs, zran): the snapshotter
    pulls it and a container reads identical bytes."""
    if not Path(sys.executable).with_name("nydusify").exists():
        pytest.skip("nydusify is not installed (pip install nydus-converter-oci)")
    data = tmp_path / "data"
    (data / "data").mkdir(parents=True)
    blob = os.urandom(3 << 20)
    (data / "data" / "blob.bin").write_bytes(blob)
    (data / "data" / "note.txt").write_text("read through zran\n")
    host = lab.registry.server.host
    with lab.registry.client() as client:
        src = push_oci_image(client, host, "accept/ociref", "oci", [rootfs, data])
    res = subprocess.run([str(Path(sys.executable).with_name("nydusify")), "convert", "--oci-ref",
                          "--source", src.ref, "--target", f"{host}/accept/ociref:nydus", "--plain-http",
                          "--work-dir", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr
    ref = f"{host}/accept/ociref:nydus"
    out = _nydus("containerd", "pull", "--address", str(lab.env.containerd.address), "--plain-http", ref)
    assert out.returncode == 0, out.stderr + lab.env.logs()
    run = lab.ctr("run", "--rm", "--snapshotter", "nydus", ref, f"ociref-1-{RUN}", "/bin/sh", "-c",
                  "cat /data/note.txt; sha256sum /data/blob.bin", check=False)
    assert run.returncode == 0, run.stderr + lab.env.logs()
    assert run.stdout.splitlines()[0] == "read through zran"
    assert hashlib.sha256(blob).hexdigest() in run.stdout
    lab.ctr("images", "rm", "--sync", ref)
