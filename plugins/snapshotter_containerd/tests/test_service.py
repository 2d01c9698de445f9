"""The snapshots gRPC service of a real ``containerd-nydus-grpc`` process, called as containerd would.

Mounts it returns are mounted with the real ``mount`` (overlayfs, bind) to check what they show.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from nydus_snapshotter_containerd import labels as L
from nydus_testsupport.containerd import (
    SnapshotsClient,
    SnapshotterProcess,
    containerd_unavailable,
    push_nydus_image,
)


@pytest.fixture
def proc(tmp_path: Path) -> Iterator[SnapshotterProcess]:
    """A snapshotter on a temp root (no containerd)."""
    if os.geteuid() != 0:
        pytest.skip("the snapshotter mounts (overlay, FUSE): needs root")
    p = SnapshotterProcess(tmp_path / "sn").start()
    yield p
    p.stop()
    p.stop_nydusd()


@pytest.fixture
def client(proc: SnapshotterProcess) -> Iterator[SnapshotsClient]:
    c = SnapshotsClient(proc.address)
    yield c
    c.close()


def _code(fn, *args, **kwargs) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    return info.value.code()


@contextlib.contextmanager
def mounted(mounts: list, target: Path) -> Iterator[Path]:
    """Mount what the snapshotter returned (one mount) at ``target``."""
    assert len(mounts) == 1
    m = mounts[0]
    target.mkdir(parents=True, exist_ok=True)
    opts = list(m.options)
    if m.type == "bind":
        argv = ["mount", "--bind", m.source, str(target)]
        if "ro" in opts:
            argv = ["mount", "-o", "bind,ro", m.source, str(target)]
    else:
        argv = ["mount", "-t", m.type, "-o", ",".join(opts), m.source, str(target)]
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"{argv}: {res.stderr}"
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)


def test_overlay_snapshots_prepare_commit_view_remove(client: SnapshotsClient, tmp_path: Path) -> None:
    pb = client.pb
    with mounted(client.prepare("k-base"), tmp_path / "m0") as m:
        (m / "etc").mkdir()
        (m / "etc" / "base.txt").write_text("base\n")
    assert client.stat("k-base").kind == pb.ACTIVE
    client.commit("layer-1", "k-base", {"a": "1"})
    info = client.stat("layer-1")
    assert (info.kind, info.parent, dict(info.labels)) == (pb.COMMITTED, "", {"a": "1"})
    assert _code(client.stat, "k-base") == grpc.StatusCode.NOT_FOUND
    assert _code(client.mounts, "layer-1") == grpc.StatusCode.FAILED_PRECONDITION

    mounts = client.prepare("k-top", "layer-1")
    assert mounts[0].type == "overlay"
    with mounted(mounts, tmp_path / "m1") as m:
        assert (m / "etc" / "base.txt").read_text() == "base\n"
        (m / "etc" / "base.txt").unlink()
        (m / "top.txt").write_text("top\n")
    client.commit("layer-2", "k-top")
    assert client.stat("layer-2").parent == "layer-1"

    with mounted(client.view("v", "layer-2"), tmp_path / "m2") as m:
        assert sorted(os.listdir(m)) == ["etc", "top.txt"]
        assert not (m / "etc" / "base.txt").exists()  # the whiteout of layer 2 hides it
        with pytest.raises(OSError):
            (m / "new").write_text("x")
    with mounted(client.view("v1", "layer-1"), tmp_path / "m3") as m:
        assert (m / "etc" / "base.txt").read_text() == "base\n"
    assert client.stat("v").kind == pb.VIEW

    assert _code(client.prepare, "v") == grpc.StatusCode.ALREADY_EXISTS
    assert _code(client.prepare, "k-x", "missing-parent") == grpc.StatusCode.NOT_FOUND
    client.prepare("k-active")
    assert _code(client.prepare, "k-y", "k-active") == grpc.StatusCode.FAILED_PRECONDITION
    assert _code(client.commit, "layer-3", "layer-2") == grpc.StatusCode.FAILED_PRECONDITION
    assert _code(client.remove, "layer-1") == grpc.StatusCode.FAILED_PRECONDITION  # has children
    for key in ("v", "v1", "layer-2", "layer-1", "k-active"):
        client.remove(key)
    assert client.list() == []
    assert _code(client.remove, "layer-1") == grpc.StatusCode.NOT_FOUND


def test_update_usage_list_cleanup(client: SnapshotsClient, proc: SnapshotterProcess, tmp_path: Path) -> None:
    client.prepare("a", labels={"keep": "1", "drop": "2"})
    with mounted(client.mounts("a"), tmp_path / "m") as m:
        (m / "blob").write_bytes(os.urandom(1 << 20))
    u = client.usage("a")
    assert u.size >= 1 << 20 and u.inodes == 1
    client.commit("c", "a")
    client.prepare("b", "c")

    info = client.update("c", {"keep": "3", "new": "4"}, ["labels.keep", "labels.drop", "labels.new"])
    assert dict(info.labels) == {"keep": "3", "new": "4"}
    assert dict(client.update("c", {"only": "x"}).labels) == {"only": "x"}
    assert _code(client.update, "c", {}, ["parent"]) == grpc.StatusCode.INVALID_ARGUMENT

    names = lambda infos: sorted(i.name for i in infos)  # noqa: E731
    assert names(client.list()) == ["b", "c"]
    assert names(client.list("kind==active")) == ["b"]
    assert names(client.list('labels."only"==x')) == ["c"]
    assert names(client.list("parent==c", "name==c")) == ["b", "c"]
    assert names(client.list("name~=^c$,kind==committed")) == ["c"]
    assert _code(client.list, "name==c,") == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(client.list, "==c") == grpc.StatusCode.INVALID_ARGUMENT

    orphan = proc.root / "snapshots" / "999"
    (orphan / "fs").mkdir(parents=True)
    client.cleanup()
    assert not orphan.exists()
    assert names(client.list()) == ["b", "c"]


def test_metadata_survives_restart(proc: SnapshotterProcess, tmp_path: Path) -> None:
    c = SnapshotsClient(proc.address)
    c.prepare("x", labels={"l": "v"})
    c.commit("X", "x")
    c.prepare("y", "X")
    c.view("z", "X")
    before = sorted((i.name, i.parent, i.kind, dict(i.labels), i.created_at.ToNanoseconds())
                    for i in c.list())
    c.close()
    proc.stop()
    proc.start()
    c = SnapshotsClient(proc.address)
    try:
        after = sorted((i.name, i.parent, i.kind, dict(i.labels), i.created_at.ToNanoseconds())
                       for i in c.list())
        assert after == before and len(after) == 3
        assert c.mounts("y")[0].type == "overlay"
    finally:
        c.close()


def test_nydus_blob_layer_is_committed_at_once(client: SnapshotsClient, proc: SnapshotterProcess) -> None:
    labels = {L.TARGET_REF: "sha256:" + "1" * 64, L.NYDUS_BLOB: "true"}
    assert _code(client.prepare, "extract-1 chain1", "", labels) == grpc.StatusCode.ALREADY_EXISTS
    info = client.stat(labels[L.TARGET_REF])
    assert info.kind == client.pb.COMMITTED and info.labels[L.NYDUS_BLOB] == "true"
    assert info.labels[L.TARGET_REF] == labels[L.TARGET_REF] and L.REMOTE in info.labels
    assert _code(client.stat, "extract-1 chain1") == grpc.StatusCode.NOT_FOUND
    # the next layer stacks on it; asking again for a target that exists answers AlreadyExists at once
    labels2 = {L.TARGET_REF: "sha256:" + "2" * 64, L.NYDUS_BLOB: "true"}
    assert _code(client.prepare, "extract-2", labels[L.TARGET_REF], labels2) == grpc.StatusCode.ALREADY_EXISTS
    assert _code(client.prepare, "extract-3", labels[L.TARGET_REF], labels2) == grpc.StatusCode.ALREADY_EXISTS
    assert client.stat(labels2[L.TARGET_REF]).parent == labels[L.TARGET_REF]
    assert len(client.list()) == 2
    assert client.usage(labels[L.TARGET_REF]).size == 0
    # a bootstrap layer without the image reference to fetch it from is refused, and leaves nothing
    boot = {L.TARGET_REF: "sha256:" + "3" * 64, L.NYDUS_BOOTSTRAP: "true"}
    assert _code(client.prepare, "extract-4", labels2[L.TARGET_REF], boot) == grpc.StatusCode.INVALID_ARGUMENT
    assert len(client.list()) == 2


@pytest.fixture
def nydus_proc(tmp_path: Path, registry_open) -> Iterator[tuple[SnapshotterProcess, object]]:
    """A snapshotter trusting the test registry and a FaultProxy in front of it."""
    from nydus_testsupport.registry import FaultProxy

    reason = containerd_unavailable()
    if reason:
        pytest.skip(reason)
    proxy = FaultProxy(registry_open.server.url).start()
    p = SnapshotterProcess(tmp_path / "sn", config_text=f'plain_http = ["{proxy.host}"]\n').start()
    yield p, proxy
    p.stop()
    p.stop_nydusd()
    proxy.stop()


def _image(registry_open, proxy, tmp_path: Path, name: str):
    layer = tmp_path / "layer"
    (layer / "dir").mkdir(parents=True)
    (layer / "dir" / "file.txt").write_text("from a nydus image\n")
    (layer / "dir" / "data.bin").write_bytes(os.urandom(3 << 20))
    with registry_open.client() as c:
        img = push_nydus_image(c, registry_open.server.host, name, "v1", [layer])
    return img, layer, f"{proxy.host if proxy else registry_open.server.host}/{name}:v1"


def _chain(client: SnapshotsClient, img, ref: str) -> str:
    from nydus_snapshotter_containerd.pull import chain_ids

    chains = chain_ids(img.config["rootfs"]["diff_ids"])
    parent = ""
    for layer, chain in zip(img.layers, chains):
        labels = {k: v for k, v in layer.get("annotations", {}).items()}
        labels.update({L.TARGET_REF: chain, L.IMAGE_REF: ref, L.LAYER_DIGEST: layer["digest"]})
        assert _code(client.prepare, f"extract {chain}", parent, labels) == grpc.StatusCode.ALREADY_EXISTS
        parent = chain
    return parent


def test_nydus_image_mounts_through_nydusd(nydus_proc, registry_open, tmp_path: Path) -> None:
    proc, proxy = nydus_proc
    img, layer, ref = _image(registry_open, proxy, tmp_path, "svc/nydus")
    client = SnapshotsClient(proc.address)
    try:
        proxy.clear()
        top = _chain(client, img, ref)
        boot_digest = img.layers[-1]["digest"]
        gets = [p for m, p, _ in proxy.requests if m == "GET"]
        assert len(gets) == 1 and boot_digest in gets[0]  # only the bootstrap layer was downloaded
        kept = list((proc.root / "snapshots").glob("*/image.boot"))
        assert len(kept) == 1
        # the kept bootstrap is the one inside the (digest-checked) layer
        with registry_open.client() as c:
            raw = c.fetch_blob("svc/nydus", boot_digest)
        import gzip
        import io

        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
            member = tar.extractfile("image/image.boot")
            assert member is not None and member.read() == kept[0].read_bytes()

        mounts = client.prepare("container-1", top)
        opts = dict(o.split("=", 1) for o in mounts[0].options)
        rafs = Path(opts["lowerdir"])
        assert mounts[0].type == "overlay" and rafs.parent == proc.root / "mnt"
        with mounted(mounts, tmp_path / "rootfs") as m:
            assert (m / "dir" / "file.txt").read_text() == "from a nydus image\n"
            assert (m / "dir" / "data.bin").read_bytes() == (layer / "dir" / "data.bin").read_bytes()
            (m / "dir" / "written").write_text("upper\n")
        assert not (rafs / "dir" / "written").exists()
        assert (Path(opts["upperdir"]) / "dir" / "written").read_text() == "upper\n"

        # nydusd killed: the next Mounts starts a new daemon and mounts the image again
        pid = int((proc.root / "nydusd.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        mounts = client.mounts("container-1")
        with mounted(mounts, tmp_path / "rootfs2") as m:
            assert (m / "dir" / "file.txt").read_text() == "from a nydus image\n"
            assert (m / "dir" / "written").read_text() == "upper\n"

        # nydusd killed while the snapshotter is down: the next start mounts what snapshots need
        proc.stop()
        pid = int((proc.root / "nydusd.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        proc.start()
        assert int((proc.root / "nydusd.pid").read_text()) != pid
        assert (rafs / "dir" / "file.txt").read_text() == "from a nydus image\n"

        client.remove("container-1")
        assert not rafs.exists() or not os.listdir(proc.root / "mnt")

        # Cleanup drops cached blobs no image uses and keeps the image's own
        cache = proc.root / "cache"
        mine = sorted(f.name for f in cache.iterdir())
        assert mine and all(f.split(".")[0] in img.layers[0]["digest"] for f in mine), mine
        orphan = cache / ("ab" * 32 + ".blob.data")
        orphan.write_bytes(b"x" * 4096)
        client.cleanup()
        assert sorted(f.name for f in cache.iterdir()) == mine
    finally:
        client.close()


def test_bootstrap_download_is_checked(nydus_proc, registry_open, tmp_path: Path) -> None:
    proc, proxy = nydus_proc
    img, _, ref = _image(registry_open, proxy, tmp_path, "svc/checked")
    client = SnapshotsClient(proc.address)
    try:
        from nydus_snapshotter_containerd.pull import chain_ids

        chains = chain_ids(img.config["rootfs"]["diff_ids"])
        blob = {L.TARGET_REF: chains[0], L.NYDUS_BLOB: "true"}
        assert _code(client.prepare, "e0", "", blob) == grpc.StatusCode.ALREADY_EXISTS
        boot = {**img.layers[-1]["annotations"], L.TARGET_REF: chains[1], L.IMAGE_REF: ref,
                L.LAYER_DIGEST: img.layers[-1]["digest"]}
        proxy.truncate_next(5, match=lambda m, p: "/blobs/" in p)
        with pytest.raises(grpc.RpcError) as info:
            client.prepare("e1", chains[0], boot)
        assert info.value.code() == grpc.StatusCode.UNKNOWN
        wrong = {**boot, L.LAYER_DIGEST: "sha256:" + "0" * 64}
        with pytest.raises(grpc.RpcError) as info:
            client.prepare("e2", chains[0], wrong)
        assert "0000000000" in info.value.details()
        # a layer that is a valid tar.gz but whose image.boot is not a RAFS bootstrap
        from nydus_testsupport.containerd import bootstrap_layer

        junk, _ = bootstrap_layer(b"not a bootstrap" * 300)
        with registry_open.client() as c:
            junk_digest = c.push_blob("svc/checked", junk)
        proxy.clear()
        with pytest.raises(grpc.RpcError) as info:
            client.prepare("e4", chains[0], {**boot, L.LAYER_DIGEST: junk_digest})
        assert "not a usable RAFS bootstrap" in info.value.details()
        assert [i.name for i in client.list()] == [chains[0]]  # nothing half-made is left
        assert not list((proc.root / "snapshots").glob("*/image.boot"))
        proxy.clear()
        assert _code(client.prepare, "e3", chains[0], boot) == grpc.StatusCode.ALREADY_EXISTS
    finally:
        client.close()


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('address = "/tmp/x.sock"\nrooot = "/tmp"\n')
    res = subprocess.run([SnapshotterProcess.script(), "--config", str(cfg)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode != 0
    assert res.stderr.strip().count("\n") == 0 and "rooot" in res.stderr and str(cfg) in res.stderr



def test_docker_config_credentials(tmp_path: Path, registry_basic) -> None:
    reason = containerd_unavailable()
    if reason:
        pytest.skip(reason)
    import json

    host = registry_basic.server.host
    docker_cfg = tmp_path / "docker" / "config.json"
    docker_cfg.parent.mkdir()
    docker_cfg.write_text(json.dumps({"auths": {host: {"auth": registry_basic.auth}}}))
    img, _, _ = _image(registry_basic, None, tmp_path, "svc/private")
    ref = f"{host}/svc/private:v1"
    # without credentials the bootstrap cannot be fetched: an error, nothing left behind
    anon = SnapshotterProcess(tmp_path / "anon", config_text=f'plain_http = ["{host}"]\n'
                              f'docker_config = "{tmp_path / "none.json"}"\n').start()
    c = SnapshotsClient(anon.address)
    try:
        from nydus_snapshotter_containerd.pull import chain_ids

        chains = chain_ids(img.config["rootfs"]["diff_ids"])
        assert _code(c.prepare, "e0", "", {L.TARGET_REF: chains[0], L.NYDUS_BLOB: "true"}) == \
            grpc.StatusCode.ALREADY_EXISTS
        boot = {**img.layers[-1]["annotations"], L.TARGET_REF: chains[1], L.IMAGE_REF: ref,
                L.LAYER_DIGEST: img.layers[-1]["digest"]}
        with pytest.raises(grpc.RpcError) as info:
            c.prepare("e1", chains[0], boot)
        assert info.value.code() == grpc.StatusCode.UNKNOWN and "\n" not in info.value.details()
        assert "401" in info.value.details() or "auth" in info.value.details().lower(), info.value.details()
        assert [i.kind for i in c.list()] == [c.pb.COMMITTED]  # only the data-blob layer
    finally:
        c.close()
        anon.stop()
        anon.stop_nydusd()
    p = SnapshotterProcess(tmp_path / "sn", config_text=f'plain_http = ["{host}"]\n'
                           f'docker_config = "{docker_cfg}"\n').start()
    c = SnapshotsClient(p.address)
    try:
        top = _chain(c, img, ref)
        with mounted(c.prepare("ctr", top), tmp_path / "rootfs") as m:
            assert (m / "dir" / "file.txt").read_text() == "from a nydus image\n"
            assert len((m / "dir" / "data.bin").read_bytes()) == 3 << 20  # data through the auth'd backend
        c.remove("ctr")
    finally:
        c.close()
        p.stop()
        p.stop_nydusd()
