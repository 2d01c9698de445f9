"""Helpers for tests and benchmarks: write image layers as tar streams and push OCI images.

:class:`LayerWriter` writes one layer tar with any entry type (files with xattrs, hard links,
symlinks, devices, fifos) and OCI whiteouts; :func:`push_image` pushes layers, a config and a
manifest (OCI or Docker schema 2) with the registry client.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Sequence
from typing import Any

from nydus_core.oci import image as oci
from nydus_core.oci import mediatypes as mt

MTIME = 1_650_000_000


class LayerWriter:
    """Builds one layer tar in memory (PAX format, so xattrs and long names survive)."""

    def __init__(self) -> None:
        self._raw = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._raw, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115

    def _info(self, path: str, kind: bytes, mode: int, uid: int, gid: int, mtime: int,
              xattrs: dict[str, bytes] | None) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(path)
        ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = kind, mode, uid, gid, mtime
        if xattrs:
            ti.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                              for k, v in xattrs.items()}
        return ti

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int = MTIME,
            xattrs: dict[str, bytes] | None = None) -> LayerWriter:
        """Add a directory."""
        self._tar.addfile(self._info(path, tarfile.DIRTYPE, mode, uid, gid, mtime, xattrs))
        return self

    def file(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0,
             mtime: int = MTIME, xattrs: dict[str, bytes] | None = None) -> LayerWriter:
        """Add a regular file."""
        ti = self._info(path, tarfile.REGTYPE, mode, uid, gid, mtime, xattrs)
        ti.size = len(data)
        self._tar.addfile(ti, io.BytesIO(data))
        return self

    def symlink(self, path: str, target: str, mtime: int = MTIME) -> LayerWriter:
        """Add a symbolic link."""
        ti = self._info(path, tarfile.SYMTYPE, 0o777, 0, 0, mtime, None)
        ti.linkname = target
        self._tar.addfile(ti)
        return self

    def hardlink(self, path: str, target: str) -> LayerWriter:
        """Add a hard link to an earlier entry ``target``."""
        ti = self._info(path, tarfile.LNKTYPE, 0o644, 0, 0, MTIME, None)
        ti.linkname = target
        self._tar.addfile(ti)
        return self

    def device(self, path: str, kind: str, major: int, minor: int, mode: int = 0o666) -> LayerWriter:
        """Add a character (``kind="c"``) or block (``"b"``) device."""
        ti = self._info(path, tarfile.CHRTYPE if kind == "c" else tarfile.BLKTYPE, mode, 0, 0, MTIME, None)
        ti.devmajor, ti.devminor = major, minor
        self._tar.addfile(ti)
        return self

    def fifo(self, path: str, mode: int = 0o644) -> LayerWriter:
        """Add a fifo."""
        self._tar.addfile(self._info(path, tarfile.FIFOTYPE, mode, 0, 0, MTIME, None))
        return self

    def whiteout(self, path: str) -> LayerWriter:
        """Hide ``path`` of the layers below (``.wh.NAME``)."""
        parent, _, name = path.rstrip("/").rpartition("/")
        return self.file(f"{parent}/.wh.{name}" if parent else f".wh.{name}", b"")

    def opaque(self, directory: str) -> LayerWriter:
        """Make ``directory`` opaque: hide what the layers below have in it."""
        return self.file(f"{directory.rstrip('/')}/.wh..wh..opq", b"")

    def tar(self) -> bytes:
        """The finished tar."""
        self._tar.close()
        return self._raw.getvalue()

    def tar_gz(self) -> bytes:
        """The finished tar, gzip-compressed."""
        return gzip.compress(self.tar(), compresslevel=1, mtime=0)


def push_image(client: Any, repo: str, tag: str, layers: Sequence[bytes], *, docker: bool = False,
               compressed: bool = True, architecture: str = "amd64",
               config_extra: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    """Push an image whose layers are the given tars (gzip-compressed when ``compressed``).

    Returns ``(manifest digest, diff_ids)``.
    """
    descs, diff_ids = [], []
    for data in layers:
        raw = gzip.decompress(data) if compressed else data
        diff_ids.append(oci.sha256_digest(raw))
        digest = client.push_blob(repo, data)
        media = (mt.DOCKER_LAYER_GZIP if docker else mt.OCI_LAYER_GZIP) if compressed else mt.OCI_LAYER_TAR
        descs.append(oci.descriptor(media, digest, len(data)))
    config = {"architecture": architecture, "os": "linux",
              "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "history": [{"created_by": f"layer {i}"} for i in range(len(layers))]}
    config.update(config_extra or {})
    cfg_bytes = json.dumps(config).encode()
    cfg_digest = client.push_blob(repo, cfg_bytes)
    manifest = oci.image_manifest(oci.descriptor(mt.config_media_type(docker), cfg_digest, len(cfg_bytes)),
                                  descs, docker=docker)
    body = oci.dumps(manifest)
    digest = client.put_manifest(repo, tag, body, mt.manifest_media_type(docker))
    return digest, diff_ids


def sample_layers(shared: bytes, big: bytes) -> list[bytes]:
    """Three tar.gz layers exercising what a converter must get right.

    Layer 1: directories with and without xattrs, an empty file, a file larger than a 1 MiB chunk
    (``big``), a hard-link pair, relative and absolute symlinks, character and block devices, a
    fifo, a file owned by 1000:1001 with mode 0640, and ``shared`` at ``/data/shared-a``.
    Layer 2 (parent directories listed, as image builders write them): deletes a file and a
    directory tree, makes ``/opq`` opaque, turns the file ``/replace`` into a directory, stores
    ``shared`` again at ``/data/shared-b`` (same content in two layers), adds a hard-link pair.
    Layer 3: replaces ``/etc/hosts`` (new content, mode, xattr), re-creates ``/del/gone`` and
    replaces one name of the layer-1 hard-link pair (the other keeps the old data).
    """
    l1 = (LayerWriter()
          .dir("etc", xattrs={"user.dir": b"d"}).file("etc/hosts", b"127.0.0.1 localhost\n",
                                                        xattrs={"user.k": b"v1", "user.bin": b"\x00\x01\xff"})
          .file("etc/empty", b"").symlink("etc/alt", "/etc/hosts")
          .dir("usr").dir("usr/bin").file("usr/bin/tool", big, mode=0o755)
          .hardlink("usr/bin/tool2", "usr/bin/tool").symlink("bin", "usr/bin")
          .dir("dev").device("dev/null", "c", 1, 3).device("dev/loop9", "b", 7, 9).fifo("dev/initctl")
          .dir("opq").file("opq/old", b"old").dir("opq/sub").file("opq/sub/old2", b"old2")
          .dir("del").file("del/gone", b"gone").dir("del/dir").dir("del/dir/sub").file("del/dir/sub/f", b"f")
          .file("replace", b"A" * 100).dir("data").file("data/shared-a", shared)
          .dir("home", mode=0o700, uid=1000, gid=1001)
          .file("home/owned", b"o", mode=0o640, uid=1000, gid=1001)
          ).tar_gz()
    l2 = (LayerWriter()
          .dir("del").whiteout("del/gone").whiteout("del/dir")
          .dir("opq").opaque("opq").file("opq/new", b"new")
          .dir("replace").file("replace/me", b"B" * 50)
          .dir("data").file("data/shared-b", shared)
          .file("data/l2-a", b"hard link in layer 2\n").hardlink("data/l2-b", "data/l2-a")
          ).tar_gz()
    l3 = (LayerWriter()
          .dir("etc", xattrs={"user.dir": b"d"}).file("etc/hosts", b"10.0.0.1 changed\n", mode=0o600,
                                                        xattrs={"user.k": b"v3"})
          .dir("del").file("del/gone", b"back again\n")
          .dir("usr").dir("usr/bin").file("usr/bin/tool2", b"replaced\n", mode=0o755)
          ).tar_gz()
    return [l1, l2, l3]


def push_index(client: Any, repo: str, tag: str, platforms: dict[str, Sequence[bytes]]) -> str:
    """Push one image per ``os/arch`` (layers as for :func:`push_image`) and an OCI index over them."""
    entries = []
    for plat, layers in platforms.items():
        os_name, arch = plat.split("/")[:2]
        digest, _ = push_image(client, repo, f"{tag}-{arch}", layers, architecture=arch)
        body = client.get_manifest(repo, digest).content
        entries.append(oci.descriptor(mt.OCI_MANIFEST, digest, len(body),
                                      platform={"architecture": arch, "os": os_name}))
    index_digest: str = client.put_manifest(repo, tag, oci.dumps(oci.merged_index(entries)), mt.OCI_INDEX)
    return index_digest
