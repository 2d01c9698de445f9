"""nydusify mount: the mounted Nydus image equals the OCI rootfs (umoci unpack) byte for byte."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nydus_testkit.samples import random_bytes
from nydus_testsupport.oci_images import push_image, sample_layers
from nydus_testsupport.registry import RegistryFlavour

from nydus_core.mounts import force_unmount, is_mountpoint, mounts_at

NYDUSIFY = str(Path(sys.executable).with_name("nydusify"))


def _fuse_reason() -> str | None:
    try:
        from nydus_testsupport.fuse import fuse_unavailable
    except ImportError:
        return "nydus-frontend-fuse is not installed"
    return fuse_unavailable()


def umoci_rootfs(ref: str, tmp: Path) -> Path:
    """The OCI image unpacked by skopeo + umoci (the reference rootfs)."""
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp}/layout:src"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run(["umoci", "unpack", "--image", f"{tmp}/layout:src", str(tmp / "bundle")], check=True,
                   capture_output=True, timeout=120)
    return tmp / "bundle" / "rootfs"


def _erofs_reason() -> str | None:
    reason = _fuse_reason()
    if reason is None:
        from nydus_frontend_fuse.erofs_mount import erofs_unavailable

        reason = erofs_unavailable()
    return reason


@pytest.fixture(scope="module")
def converted(registry_open: RegistryFlavour, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A two-layer OCI image pushed and converted by ``nydusify convert`` once for both drivers:
    the target reference and the reference rootfs (umoci unpack of the source)."""
    tmp = tmp_path_factory.mktemp("converted")
    host = registry_open.server.host
    client = registry_open.client()
    layers = sample_layers(random_bytes(1_200_000, 5), random_bytes(2_300_000, 6))
    push_image(client, "src/mount", "v1", layers)
    source, target = f"{host}/src/mount:v1", f"{host}/nydus/mount:v1"
    conv = subprocess.run([NYDUSIFY, "convert", "--source", source, "--target", target, "--plain-http",
                           "--work-dir", str(tmp / "work")], capture_output=True, text=True, timeout=240)
    assert conv.returncode == 0, conv.stderr
    return target, umoci_rootfs(source, tmp)


@pytest.mark.root
@pytest.mark.parametrize("fs_driver", ["fusedev", "erofs"])
def test_mount_equals_oci_rootfs(request: pytest.FixtureRequest, tmp_path: Path, fs_driver: str) -> None:
    """The image converted by nydusify convert, read lazily from the registry through nydusd with
    either driver (erofs: the kernel reads the bootstrap, blob data through nydusd's blob devices)."""
    reason = _fuse_reason() if fs_driver == "fusedev" else _erofs_reason()
    if reason:
        pytest.skip(reason)
    from nydus_testsupport.fuse import snapshot_tree, tar_bytes

    target, rootfs = request.getfixturevalue("converted")
    mp = tmp_path / "mnt"
    proc = subprocess.Popen([NYDUSIFY, "mount", "--target", target, "--plain-http", "--mount-path", str(mp),
                             "--work-dir", str(tmp_path / "mwork"), "--fs-driver", fs_driver],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not is_mountpoint(mp.resolve()):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "nydusify mount did not mount in 60 s"
            time.sleep(0.05)
        fstypes = {m.fstype for m in mounts_at(str(mp.resolve()))}
        assert fstypes == ({"erofs"} if fs_driver == "erofs" else {"fuse.rafs"}), fstypes
        want = snapshot_tree(rootfs)
        got = snapshot_tree(mp)
        assert sorted(got) == sorted(want)
        for path in want:
            assert got[path] == want[path], path
        assert tar_bytes(mp) == tar_bytes(rootfs)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert not is_mountpoint(mp.resolve())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        force_unmount(mp)
