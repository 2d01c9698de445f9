"""Property: for any tar the builder accepts, ``check`` passes (every chunk verified) and the kernel's
EROFS mount of the v6 result (loop devices) lists exactly the tar's names. Hostile values are in
the mix (names up to 300 bytes, device numbers beyond EROFS's, mtimes before 1970 and after 2106,
large xattrs): the builder must refuse those with a BuildError or store them so the kernel agrees.
Few examples: each one builds, checks and mounts an image."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from nydus_testsupport.blob_images import make_blob_images
from nydus_testsupport.erofs import erofs_mount, kernel_mount_unavailable

from nydus_core.builder import BuildOptions, build
from nydus_core.errors import BuildError
from nydus_core.tools.check import check_image
from nydus_core.tools.datasource import open_chunk_source

_NAME_CHARS = st.sampled_from([*"abcxyz019._-", "\u00e9", " "])


@st.composite
def _names(draw: st.DrawFn, hostile: bool) -> str:
    length = draw(st.sampled_from([1, 2, 5, 12, 1, 3, 8, 20, 254, 255] + ([256, 300] if hostile else [])))
    base = draw(st.text(_NAME_CHARS, min_size=1, max_size=8))
    name = (base * (length // len(base) + 1))[:length]
    return "_" + name[1:] if name in (".", "..") or (name.startswith(".") and set(name) == {"."}) else name


@st.composite
def _entries(draw: st.DrawFn) -> list[tuple[str, str, dict[str, object]]]:
    """(path, kind, attrs) with every directory listed before what it holds; paths unique."""
    out: list[tuple[str, str, dict[str, object]]] = []
    dirs = [""]
    used: set[str] = set()
    hostile = draw(st.booleans())  # half the tars hold values beyond the format's limits

    def pick(valid: list[object], beyond: list[object]) -> object:
        return draw(st.sampled_from(valid + beyond if hostile else valid))

    for _ in range(draw(st.integers(1, 8))):
        parent = draw(st.sampled_from(dirs))
        name = draw(_names(hostile))
        path = f"{parent}/{name}".lstrip("/")
        if path in used or any(p == path or p.startswith(path + "/") for p in used):
            continue
        used.add(path)
        kind = draw(st.sampled_from(["dir", "file", "file", "symlink", "chr", "fifo", "hardlink"]))
        attrs: dict[str, object] = {
            "mtime": pick([0, 1, 1_700_000_000, 2**33, 2**40, 3], [-5]),
            "mode": draw(st.sampled_from([0o644, 0o755, 0o4755, 0o600])),
            "uid": draw(st.sampled_from([0, 1000, 65536, 2**31])),
        }
        if draw(st.integers(0, 3)) == 0:
            attrs["xattr"] = pick([b"v", b"x" * 300], [b"y" * 70_000])
        if kind == "file":
            attrs["data"] = draw(st.binary(max_size=9000))
        elif kind == "symlink":
            attrs["target"] = draw(st.sampled_from(["a", "../x", "/abs/target", "t" * 300]))
        elif kind == "chr":
            attrs["dev"] = pick([(1, 3), (4095, 1), (8, 0), (0, (1 << 20) - 1)],
                                [(4096, 0), (8, 1 << 20), (2_097_151, 7)])
        elif kind == "hardlink":
            files = [p for p, k, _ in out if k == "file"]
            if not files:
                continue
            attrs["target"] = draw(st.sampled_from(files))
        if kind == "dir":
            dirs.append(path)
        out.append((path, kind, attrs))
    return out


def _tar(entries: list[tuple[str, str, dict[str, Any]]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, kind, a in entries:
            info = tarfile.TarInfo(path)
            info.mtime, info.mode, info.uid = a["mtime"], a["mode"], a["uid"]
            if "xattr" in a:
                info.pax_headers = {"SCHILY.xattr.user.k": a["xattr"].decode()}
            data = None
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "file":
                data = io.BytesIO(a["data"])
                info.size = len(a["data"])
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, a["target"]
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, a["target"]
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = a["dev"]
            else:
                info.type = tarfile.FIFOTYPE
            tf.addfile(info, data)
    return buf.getvalue()


def _names_below(root: Path) -> set[str]:
    out = set()
    for top, dirs, files in os.walk(root):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(top, n), root))
    return out


@pytest.mark.skipif(kernel_mount_unavailable() is not None, reason=str(kernel_mount_unavailable()))
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_entries())
def test_any_tar_the_builder_accepts_checks_and_mounts_alike(entries: list[tuple[str, str, dict[str, object]]]
                                                            ) -> None:
    with tempfile.TemporaryDirectory(prefix="tarprop-") as tmp_s:
        tmp = Path(tmp_s)
        src = tmp / "in.tar"
        src.write_bytes(_tar(entries))
        boot, blobs = tmp / "img.boot", tmp / "blobs"
        try:
            build(src, "tar-rafs", bootstrap=boot, blob_dir=blobs, options=BuildOptions(chunk_size=0x1000))
        except BuildError as exc:  # refused: one line naming the tar and the entry, nothing written
            assert str(exc).startswith(f"{src}: entry /") and "\n" not in str(exc)
            assert not boot.exists()
            event("refused")
            return
        event("accepted")
        report = check_image(boot, open_chunk_source(blob_dir=str(blobs)))
        assert report.errors == []
        want = {p for p, _, _ in entries}
        devices = make_blob_images(boot, blobs, tmp / "devices")
        with erofs_mount(boot, devices, tmp / "mnt") as mnt:
            assert _names_below(mnt) == want
