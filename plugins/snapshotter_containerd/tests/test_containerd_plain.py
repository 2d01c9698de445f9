"""A private containerd with our snapshotter as proxy plugin: listed ok, and plain OCI images run."""

from __future__ import annotations

import os
from pathlib import Path

from nydus_testsupport.containerd import Lab, push_oci_image

# runc keeps container state per namespace and id host-wide (/run/containerd/runc): ids unique to
# this process let two test runs share the machine.
RUN = os.getpid()


def test_plugin_is_listed_ok(lab: Lab) -> None:
    out = lab.ctr("plugins", "ls").stdout
    rows = [line.split() for line in out.splitlines()]
    nydus = [r for r in rows if len(r) >= 4 and r[0] == "io.containerd.snapshotter.v1" and r[1] == "nydus"]
    assert nydus and nydus[0][-1] == "ok", out


def test_plain_oci_image_pulls_and_runs(lab: Lab, rootfs: Path, tmp_path: Path) -> None:
    env = lab.env
    top = tmp_path / "top"
    (top / "data").mkdir(parents=True)
    (top / "data" / "hello.txt").write_text("hello from the top layer\n")
    (top / "bin").mkdir()
    with lab.registry.client() as client:
        img = push_oci_image(client, lab.registry.server.host, "snap/plain", "v1", [rootfs, top])
    env.ctr("images", "pull", "--plain-http", "--snapshotter", "nydus", img.ref)
    snaps = env.ctr("snapshots", "--snapshotter", "nydus", "ls").stdout
    committed = [line for line in snaps.splitlines() if line.rstrip().endswith("Committed")]
    assert len(committed) >= 2, snaps

    res = env.ctr("run", "--rm", "--snapshotter", "nydus", img.ref, f"plain-1-{RUN}", "/bin/sh", "-c",
                  "cat /data/hello.txt && echo written > /data/new && cat /data/new && ls /bin/cat",
                  check=False)
    assert res.returncode == 0, res.stderr + env.logs()
    assert res.stdout.splitlines() == ["hello from the top layer", "written", "/bin/cat"]

    # The container's write did not reach the image: a second container sees no /data/new.
    res = env.ctr("run", "--rm", "--snapshotter", "nydus", img.ref, f"plain-2-{RUN}", "/bin/sh", "-c",
                  "ls /data", check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["hello.txt"]
    # Containers are gone with --rm: only committed layers remain.
    after = env.ctr("snapshots", "--snapshotter", "nydus", "ls").stdout
    assert "Active" not in after, after


def test_nydus_pull_refuses_a_plain_image(lab: Lab, rootfs: Path) -> None:
    import subprocess
    import sys

    with lab.registry.client() as client:
        img = push_oci_image(client, lab.registry.server.host, "snap/plain2", "v1", [rootfs])
    res = subprocess.run([str(Path(sys.executable).with_name("nydus")), "containerd", "pull", "--address",
                          str(lab.env.containerd.address), "--plain-http", img.ref],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode != 0
    assert res.stderr.count("\n") == 1 and "not a Nydus image" in res.stderr and img.ref in res.stderr
    assert img.ref not in lab.ctr("images", "ls", "-q").stdout.split()


def test_pull_errors_are_one_line(lab: Lab, rootfs: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from nydus_testsupport.containerd import push_nydus_image

    nydus = str(Path(sys.executable).with_name("nydus"))
    with lab.registry.client() as client:
        img = push_nydus_image(client, lab.registry.server.host, "snap/errs", "v1", [rootfs])
    res = subprocess.run([nydus, "containerd", "pull", "--address", str(tmp_path / "none.sock"),
                          "--plain-http", img.ref], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode != 0 and res.stderr.count("\n") == 1, res.stderr
    assert "containerd is not reachable" in res.stderr
    res = subprocess.run([nydus, "containerd", "pull", "--address", str(lab.env.containerd.address),
                          "--plain-http", f"{lab.registry.server.host}/snap/errs:missing"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode != 0 and res.stderr.count("\n") == 1, res.stderr
