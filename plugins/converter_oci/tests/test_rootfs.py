"""The OCI rootfs model (used by nydusify check) agrees with umoci's unpacking of the same image."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
from pathlib import Path

import pytest
from nydus_converter_oci.rootfs import OciRootfs
from nydus_testkit.samples import random_bytes
from nydus_testsupport.oci_images import LayerWriter, push_image, sample_layers
from nydus_testsupport.registry import RegistryFlavour

from nydus_core.errors import FormatError

KINDS = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink", stat.S_IFCHR: "chr",
         stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo"}


@pytest.mark.root
def test_model_matches_umoci(registry_open: RegistryFlavour, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("umoci unpack keeps owners and devices only as root")
    layers = sample_layers(random_bytes(400_000, 1), random_bytes(1_100_000, 2))
    model = OciRootfs()
    for data in layers:
        model.apply_layer(io.BytesIO(data))
    push_image(registry_open.client(), "src/rootfs", "v1", layers)
    ref = f"docker://{registry_open.server.host}/src/rootfs:v1"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", ref, f"oci:{tmp_path}/layout:v1"], check=True,
                   capture_output=True, timeout=120)
    subprocess.run(["umoci", "unpack", "--image", f"{tmp_path}/layout:v1", str(tmp_path / "b")], check=True,
                   capture_output=True, timeout=120)
    root = tmp_path / "b" / "rootfs"
    seen = {"/"}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            seen.add("/" + os.path.relpath(os.path.join(dirpath, n), root))
    assert seen == set(model.entries)
    inode_of: dict[int, int] = {}
    for path, e in model.entries.items():
        full = root / path.lstrip("/") if path != "/" else root
        st = os.lstat(full)
        assert KINDS[stat.S_IFMT(st.st_mode)] == e.kind, path
        if e.implicit:
            continue
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (e.mode, e.uid, e.gid), path
        if e.kind != "dir":
            assert int(st.st_mtime) == e.mtime, path
        names = [n for n in os.listxattr(full, follow_symlinks=False) if n.startswith("user.")]
        assert {n: os.getxattr(full, n, follow_symlinks=False) for n in names} == e.xattrs, path
        if e.kind == "file":
            assert hashlib.sha256(full.read_bytes()).hexdigest() == e.sha256, path
            assert inode_of.setdefault(id(e), st.st_ino) == st.st_ino, f"{path}: hard-link group"
        elif e.kind == "symlink":
            assert os.readlink(full) == e.target
        elif e.kind in ("chr", "blk"):
            assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == e.rdev
    assert len(set(inode_of.values())) == len(inode_of)  # distinct entries are distinct inodes


def test_whiteouts_opaque_and_replacement_rules() -> None:
    fs = OciRootfs()
    fs.apply_layer(io.BytesIO(LayerWriter().dir("a").file("a/1", b"1").dir("a/d").file("a/d/2", b"2")
                              .file("f", b"f").dir("o").file("o/x", b"x").tar_gz()))
    fs.apply_layer(io.BytesIO(LayerWriter().whiteout("a/d").dir("f").file("f/inner", b"i").opaque("o")
                              .file("o/y", b"y").tar()))
    assert sorted(fs.entries) == ["/", "/a", "/a/1", "/f", "/f/inner", "/o", "/o/y"]
    assert fs.entries["/a"].implicit is False  # lower attributes kept when the layer lists no entry
    assert fs.entries["/o"].implicit is False  # opaque: the children go, the directory stays
    fs.apply_layer(io.BytesIO(LayerWriter().file("new/deep/file", b"d").tar()))
    assert fs.entries["/new"].implicit and fs.entries["/new/deep"].implicit
    fs.apply_layer(io.BytesIO(LayerWriter().opaque("").file("only", b"1").tar_gz()))
    assert sorted(fs.entries) == ["/", "/only"]


def test_bad_layers_are_format_errors() -> None:
    with pytest.raises(FormatError, match="layer: not a readable tar"):
        OciRootfs().apply_layer(io.BytesIO(gzip.compress(b"x" * 1000)))
    writer = LayerWriter().hardlink("b", "missing")
    with pytest.raises(FormatError, match="hard link b -> missing: target not found"):
        OciRootfs().apply_layer(io.BytesIO(writer.tar()))


def test_multi_member_layers_are_read_whole_and_crc_checked() -> None:
    writer = LayerWriter().file("a", random_bytes(70_000, 1)).file("d/b", b"bee").file("z", b"last")
    raw = writer.tar()
    split = gzip.compress(raw[:1024], mtime=0) + gzip.compress(raw[1024:], mtime=0)
    fs = OciRootfs()
    fs.apply_layer(io.BytesIO(split), where="L")
    assert {"/a", "/d/b", "/z"} <= set(fs.entries)
    bad = bytearray(split)
    bad[-8] ^= 0x01
    with pytest.raises(FormatError, match=r"L: invalid gzip stream: member 2 .*CRC32"):
        OciRootfs().apply_layer(io.BytesIO(bytes(bad)), where="L")
