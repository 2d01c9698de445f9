"""Kubernetes' path: a private containerd with the CRI plugin (``snapshotter = "nydus"``, snapshot
annotations on) driven over CRI gRPC exactly as kubelet drives it — PullImage, RunPodSandbox (host
network), CreateContainer, StartContainer, logs from the CRI log path, removals — for a Nydus image
and a plain OCI image through the same snapshotter. Stubs come from ``../shared/fixtures/cri``."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from nydus_testsupport.containerd import (
    SnapshotterProcess,
    containerd_unavailable,
    push_nydus_image,
    push_oci_image,
)
from nydus_testsupport.cri import CriClient, CriContainerd, cri_proto, parse_cri_log, push_pause_image

from nydus_core.mounts import force_unmount, mounts_under

BIG = 8 << 20


@pytest.fixture(params=["fusedev", "erofs"])
def node(request: pytest.FixtureRequest, tmp_path: Path,
         registry_open) -> Iterator[tuple[SnapshotterProcess, CriContainerd, object]]:
    """Snapshotter (upstream's default daemon mode) + CRI containerd, both trusting the registry and
    a counting proxy in front of it."""
    if cri_proto() is None:
        pytest.skip("CRI proto fixture not found (expected ../shared/fixtures/cri/api.proto beside the repo)")
    reason = containerd_unavailable()
    if not reason and request.param == "erofs":
        from nydus_frontend_fuse.erofs_mount import erofs_unavailable

        reason = erofs_unavailable()
    if reason:
        pytest.skip(reason)
    from nydus_testsupport.registry import FaultProxy

    proxy = FaultProxy(registry_open.server.url).start()
    hosts = [registry_open.server.host, proxy.host]
    with registry_open.client() as c:
        pause = push_pause_image(c, registry_open.server.host, tmp_path)
    sn = SnapshotterProcess(tmp_path / "sn", daemon_mode="dedicated",
                            config_text="plain_http = [" + ", ".join(f'"{h}"' for h in hosts) + "]\n"
                            f'[daemon]\nfs_driver = "{request.param}"\n')
    cd = CriContainerd(tmp_path / "cd", sn.address, sandbox_image=pause, plain_http=hosts)
    try:
        sn.start()
        cd.start()
        yield sn, cd, proxy
    finally:
        cd.stop()
        sn.stop()
        sn.stop_nydusd()
        for mp in mounts_under(tmp_path.resolve()):
            force_unmount(mp)
        proxy.stop()


def _daemon_logs(root: Path) -> str:
    """The snapshotter's and every nydusd's log tail (for failure messages)."""
    out = []
    for f in [root / "logs" / "nydus-snapshotter.log", *sorted(root.glob("logs/*/nydusd.log"))]:
        out.append(f"--- {f}\n{f.read_text(errors='replace')[-2000:] if f.exists() else '(none)'}")
    return "\n".join(out)


def _run(cri: CriClient, root: Path, sandbox_id: str, sandbox_cfg: object, image: str, name: str,
         script: str) -> tuple[int, str]:
    pb = cri.pb
    cfg = pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=image),
                             command=["/bin/sh", "-c", script], log_path=f"{name}.log")
    try:
        cid = cri.runtime.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=cfg,
                                                                    sandbox_config=sandbox_cfg)).container_id
    except grpc.RpcError as exc:
        raise AssertionError(f"CreateContainer {name}: {exc}\n{_daemon_logs(root)}") from None
    cri.runtime.StartContainer(pb.StartContainerRequest(container_id=cid))
    st = cri.wait_exited(cid)
    log = Path(st.log_path).read_text()
    cri.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    return st.exit_code, "\n".join(line for stream, line in parse_cri_log(log) if stream == "stdout")


def test_cri_nydus_and_oci_images(node, registry_open, rootfs: Path, tmp_path: Path) -> None:
    sn, cd, proxy = node
    data = tmp_path / "data"
    (data / "etc").mkdir(parents=True)
    (data / "etc" / "motd").write_text("hello from a nydus image over CRI\n")
    big = os.urandom(BIG)
    (data / "data").mkdir()
    (data / "data" / "big.bin").write_bytes(big)
    oci_data = tmp_path / "oci"
    (oci_data / "etc").mkdir(parents=True)
    (oci_data / "etc" / "motd").write_text("hello from an OCI image over CRI\n")
    host = registry_open.server.host
    with registry_open.client() as c:
        nydus = push_nydus_image(c, host, "cri/app", "nydus", [rootfs, data])
        push_oci_image(c, host, "cri/app", "oci", [rootfs, oci_data])
    nydus_ref, oci_ref = f"{proxy.host}/cri/app:nydus", f"{host}/cri/app:oci"
    data_blobs = [la["digest"] for la in nydus.layers[:-1]]

    cri = CriClient(cd.address)
    pb = cri.pb
    try:
        # -- PullImage: the Nydus image's data blobs are not downloaded
        proxy.clear()
        cri.images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=nydus_ref)))
        blob_gets = [p for m, p, _ in proxy.requests if m == "GET" and "/blobs/" in p]
        assert not [p for p in blob_gets for d in data_blobs if d in p], blob_gets
        assert len(blob_gets) == 2, blob_gets  # the config and the bootstrap layer
        assert nydus.layers[-1]["size"] < 1 << 20 < BIG
        cri.images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=oci_ref)))

        # -- a pod on the host network (no CNI), hostname left empty
        logs = tmp_path / "pod-logs"
        logs.mkdir()
        sandbox_cfg = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="nydus-pod", uid=f"uid-{os.getpid()}", namespace="default"),
            log_directory=str(logs),
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE))))
        sandbox_id = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_cfg)).pod_sandbox_id

        code, out = _run(cri, sn.root, sandbox_id, sandbox_cfg, nydus_ref, "nydus",
                         "cat /etc/motd; head -c 65536 /data/big.bin | sha256sum")
        assert code == 0 and out.splitlines()[0] == "hello from a nydus image over CRI", out
        assert hashlib.sha256(big[:65536]).hexdigest() in out
        code, out = _run(cri, sn.root, sandbox_id, sandbox_cfg, oci_ref, "oci", "cat /etc/motd")
        assert (code, out) == (0, "hello from an OCI image over CRI"), out
        assert {p.name for p in logs.iterdir()} == {"nydus.log", "oci.log"}
        if "fs_driver erofs" in sn.log():  # the Nydus image went through kernel EROFS, no fallback
            assert "instead of erofs" not in sn.log() and "--fs-driver erofs" in sn.log()

        # -- removals, as kubelet does them; then nothing is left behind
        cri.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))
        images = cri.images.ListImages(pb.ListImagesRequest()).images
        for img in images:
            cri.images.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=img.id)))
        assert not cri.images.ListImages(pb.ListImagesRequest()).images
    finally:
        cri.close()

    def leftovers() -> list[str]:
        ls = cd.ctr("snapshots", "--snapshotter", "nydus", "ls", namespace="k8s.io").stdout
        sockets = list((sn.root / "socket").iterdir()) if (sn.root / "socket").exists() else []
        left = [s for s in ls.splitlines()[1:] if s.strip()] + [str(p) for p in sockets]
        left += [str(m) for m in mounts_under(sn.root)]
        left += [str(p) for p in (sn.root / "snapshots").iterdir()]
        left += [f.name for f in (sn.root / "cache").iterdir() if any(d[7:] in f.name for d in data_blobs)]
        return left

    deadline = time.monotonic() + 30  # containerd's garbage collection removes the snapshots
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers() == [], sn.log()[-3000:]
