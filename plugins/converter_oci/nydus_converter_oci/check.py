"""``nydusify check``: validate a Nydus image and compare it with its source OCI image.

1. The manifest: blob layers (media type, annotation), the bootstrap layer last (annotations,
   fs version), config ``diff_ids`` (one per layer; the bootstrap's = sha256 of its tar) and the
   Nydus history entry.
2. The bootstrap: fetched (digest checked), every inode decoded (``nydus-image check``); its blob
   table must name the manifest's blob layers with their sizes (registry backend).
3. With ``--source``: the OCI rootfs (:mod:`.rootfs`, from the source layers) against the Nydus
   image, path by path: type, permissions, owner, mtime, size, link target, device numbers,
   xattrs, hard-link groups and (unless ``data=False``) file contents, read lazily through the
   backend with digest validation.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nydus_core.errors import NydusError
from nydus_core.fs import RafsFS, open_fs, open_metadata
from nydus_core.gzipstream import decompress, is_gzip
from nydus_core.oci import annotations as ann
from nydus_core.oci import image as oci
from nydus_core.oci import mediatypes as mt
from nydus_core.rafs.constants import BlobFeatures
from nydus_core.rafs.image import open_image
from nydus_core.tools.check import check_image

from . import remote
from .layerdata import is_estargz
from .rootfs import Entry, OciRootfs

_KIND_OF_MODE = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink", stat.S_IFCHR: "chr",
                 stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo"}


@dataclass
class CheckOptions:
    """What to check (upstream nydusify flag names)."""

    target: str
    source: str | None = None
    source_insecure: bool = False
    target_insecure: bool = False
    plain_http: bool = False
    platform: str = "linux/amd64"
    backend_type: str = "registry"
    backend_config: dict[str, Any] = field(default_factory=dict)
    data: bool = True
    work_dir: Path = Path("./output")


@dataclass
class CheckResult:
    """The differences found (empty = the check passed) and what was compared."""

    problems: list[str] = field(default_factory=list)
    paths: int = 0
    files_read: int = 0
    bytes_read: int = 0

    def summary(self) -> str:
        """One line for the user."""
        return f"{self.paths} paths compared, {self.files_read} files ({self.bytes_read} bytes) read"


def check_manifest(image: remote.RemoteImage, *, registry_blobs: bool = True) -> list[str]:
    """Problems in a Nydus manifest and config (empty when it follows rafs-format.md §8)."""
    out: list[str] = []
    doc = image.doc
    layers = image.layers
    where = str(image.ref)
    if not oci.is_nydus_manifest(doc):
        return [f"{where}: the last layer has no {ann.NYDUS_BOOTSTRAP} annotation: not a Nydus image"]
    boot = layers[-1]
    a = boot.get("annotations") or {}
    if a.get(ann.NYDUS_FS_VERSION) not in ("5", "6"):
        out.append(f"{where}: bootstrap layer: {ann.NYDUS_FS_VERSION} is {a.get(ann.NYDUS_FS_VERSION)!r}")
    if boot.get("mediaType") not in (mt.OCI_LAYER_GZIP, mt.DOCKER_LAYER_GZIP):
        out.append(f"{where}: bootstrap layer media type {boot.get('mediaType')!r} is not tar+gzip")
    for d in layers[:-1]:
        if d.get("mediaType") != mt.NYDUS_BLOB:
            out.append(f"{where}: layer {d.get('digest')}: media type {d.get('mediaType')!r}, "
                       f"expected {mt.NYDUS_BLOB}")
        if (d.get("annotations") or {}).get(ann.NYDUS_BLOB) != "true":
            out.append(f"{where}: layer {d.get('digest')}: no {ann.NYDUS_BLOB} annotation")
    if not registry_blobs and len(layers) != 1:
        out.append(f"{where}: blobs are in object storage but the manifest lists "
                   f"{len(layers) - 1} blob layers")
    cfg = image.config
    diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(layers):
        out.append(f"{where}: config has {len(diff_ids)} diff_ids for {len(layers)} layers")
    else:
        for d, diff in zip(layers[:-1], diff_ids[:-1]):
            if diff != d.get("digest"):
                out.append(f"{where}: diff_id {diff} of blob layer {d.get('digest')} is not its digest")
    history = cfg.get("history") or []
    if not history or {k: history[-1].get(k) for k in ann.BOOTSTRAP_HISTORY} != ann.BOOTSTRAP_HISTORY:
        out.append(f"{where}: config history does not end with the Nydus bootstrap entry")
    return out


def check_bootstrap(image: remote.RemoteImage, bootstrap: Path, raw: bytes, *, registry_blobs: bool = True
                    ) -> list[str]:
    """Problems of the bootstrap (unpacked at ``bootstrap`` from the layer bytes ``raw``): undecodable
    metadata, blob table vs manifest layers, diff_id."""
    out: list[str] = []
    where = f"{image.ref}: bootstrap"
    diff_ids = (image.config.get("rootfs") or {}).get("diff_ids") or []
    try:
        tar = decompress(raw, name=f"{where} layer", limit=oci.MAX_BOOTSTRAP_LAYER) if is_gzip(raw) else raw
    except NydusError as exc:
        return [*out, str(exc)]
    if diff_ids and diff_ids[-1] != oci.sha256_digest(tar):
        out.append(f"{where} layer: diff_id {diff_ids[-1]} is not the sha256 of its tar")
    try:
        report = check_image(bootstrap)
    except NydusError as exc:
        return [*out, f"{where}: {exc}"]
    if registry_blobs:
        sizes = {d["digest"]: int(d.get("size") or 0) for d in image.layers[:-1]}
        refs = {(d.get("annotations") or {}).get(ann.NYDUS_REF): d for d in image.layers[:-1]}
        separate = _ref_blobs(bootstrap)
        for b in report.blobs:
            digest = "sha256:" + str(b.get("blob_id"))
            if digest in separate:  # --oci-ref: the data blob is the source layer
                out += _check_ref_blob(image, where, digest, separate[digest], refs.get(digest))
            elif digest not in sizes:
                out.append(f"{where}: blob {b.get('blob_id')} is not a layer of the manifest")
            elif b.get("compressed_size") not in (None, 0, sizes[digest]):
                out.append(f"{where}: blob {b.get('blob_id')} size {b.get('compressed_size')} differs from "
                           f"its layer's {sizes[digest]}")
    return out


def _ref_blobs(bootstrap: Path) -> dict[str, tuple[str, int, int]]:
    """OCI-ref blobs of the bootstrap: layer digest -> (RAFS blob digest, its size, layer size)."""
    with open_image(bootstrap) as img:
        return {"sha256:" + b.blob_id: ("sha256:" + b.blob_meta_digest.hex(), b.blob_meta_size,
                                        b.compressed_size)
                for b in img.blobs if b.features & BlobFeatures.SEPARATE}


def _check_ref_blob(image: remote.RemoteImage, where: str, layer_digest: str, meta: tuple[str, int, int],
                    desc: dict[str, Any] | None) -> list[str]:
    """An OCI-ref blob: a RAFS blob layer annotated with the source layer, which is in the repository."""
    meta_digest, meta_size, layer_size = meta
    if desc is None:
        return [f"{where}: no layer has {ann.NYDUS_REF} {layer_digest}"]
    out: list[str] = []
    if desc.get("digest") != meta_digest or int(desc.get("size") or 0) != meta_size:
        out.append(f"{where}: layer {desc.get('digest')} ({desc.get('size')} bytes) is not the RAFS blob "
                   f"{meta_digest} ({meta_size} bytes) the bootstrap records for {layer_digest}")
    size = image.client.blob_size(image.repo, layer_digest)
    if size is None:
        out.append(f"{where}: source layer {layer_digest} is not in {image.repo}")
    elif size != layer_size:
        out.append(f"{where}: source layer {layer_digest} is {size} bytes, the bootstrap says {layer_size}")
    return out


def source_rootfs(image: remote.RemoteImage) -> OciRootfs:
    """The rootfs of an OCI image, its layers streamed from the registry."""
    from .streams import IterStream, layer_label

    fs = OciRootfs()
    for i, d in enumerate(image.layers):
        with image.client.open_blob(image.repo, d["digest"]) as reader:
            where = layer_label(image.ref, i, d)
            stream = IterStream(iter(reader), name=where)
            fs.apply_layer(stream, where=where, estargz=is_estargz(d))
            stream.drain()
    return fs


def _kind(mode: int) -> str:
    return _KIND_OF_MODE.get(stat.S_IFMT(mode), "?")


def _xattrs(fs: RafsFS, path: str) -> dict[str, bytes]:
    return {n: fs.getxattr(path, n, follow_symlinks=False) for n in fs.listxattr(path, follow_symlinks=False)}


def compare(expected: OciRootfs, fs: RafsFS, *, data: bool = True, result: CheckResult | None = None
            ) -> CheckResult:
    """Compare the OCI rootfs with a Nydus filesystem; differences go to ``result.problems``."""
    res = result or CheckResult()
    seen: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in fs.walk("/"):
        base = dirpath.rstrip("/")
        seen[dirpath if dirpath else "/"] = fs.lstat(dirpath)
        for n in (*dirnames, *filenames):
            p = f"{base}/{n}"
            seen[p] = fs.lstat(p)
    for p in sorted(set(expected.entries) - set(seen)):
        res.problems.append(f"{p}: in the OCI image, missing from the Nydus image")
    for p in sorted(set(seen) - set(expected.entries)):
        res.problems.append(f"{p}: in the Nydus image, not in the OCI image")
    groups_oci: dict[int, list[str]] = defaultdict(list)
    groups_nydus: dict[int, list[str]] = defaultdict(list)
    for p in sorted(set(seen) & set(expected.entries)):
        res.paths += 1
        e, st = expected.entries[p], seen[p]
        diff = _compare_one(fs, p, e, st, data, res)
        res.problems.extend(f"{p}: {d}" for d in diff)
        if e.kind == "file":
            groups_oci[id(e)].append(p)
            groups_nydus[st.st_ino].append(p)
    oci_sets = {tuple(v) for v in groups_oci.values()}
    nydus_sets = {tuple(v) for v in groups_nydus.values()}
    for g in sorted(oci_sets - nydus_sets):
        res.problems.append(f"{g[0]}: hard-link group {list(g)} in the OCI image is not one inode in Nydus")
    for g in sorted(nydus_sets - oci_sets):
        res.problems.append(f"{g[0]}: paths {list(g)} share an inode in Nydus but not in the OCI image")
    return res


def _compare_one(fs: RafsFS, p: str, e: Entry, st: os.stat_result, data: bool, res: CheckResult) -> list[str]:
    out: list[str] = []
    kind = _kind(st.st_mode)
    if kind != e.kind:
        return [f"type {kind} in Nydus, {e.kind} in OCI"]
    if e.implicit:
        return out
    if stat.S_IMODE(st.st_mode) != e.mode:
        out.append(f"mode {stat.S_IMODE(st.st_mode):o} in Nydus, {e.mode:o} in OCI")
    if (st.st_uid, st.st_gid) != (e.uid, e.gid):
        out.append(f"owner {st.st_uid}:{st.st_gid} in Nydus, {e.uid}:{e.gid} in OCI")
    if int(st.st_mtime) != e.mtime:
        out.append(f"mtime {int(st.st_mtime)} in Nydus, {e.mtime} in OCI")
    if kind == "symlink":
        target = fs.readlink(p)
        if target != e.target:
            out.append(f"link target {target!r} in Nydus, {e.target!r} in OCI")
    if kind in ("chr", "blk") and (os.major(st.st_rdev), os.minor(st.st_rdev)) != e.rdev:
        out.append(f"device {os.major(st.st_rdev)}:{os.minor(st.st_rdev)} in Nydus, "
                   f"{e.rdev[0]}:{e.rdev[1]} in OCI")
    if kind != "symlink":
        got = _xattrs(fs, p)
        if got != e.xattrs:
            out.append(f"xattrs {sorted(got)} in Nydus, {sorted(e.xattrs)} in OCI"
                       if set(got) != set(e.xattrs) else "xattr values differ")
    if kind == "file":
        if st.st_size != e.size:
            out.append(f"size {st.st_size} in Nydus, {e.size} in OCI")
        elif data:
            h = hashlib.sha256()
            with fs.open(p, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
            res.files_read += 1
            res.bytes_read += st.st_size
            if h.hexdigest() != e.sha256:
                out.append("file data differs")
    return out


def nydus_config(image: remote.RemoteImage, opts: CheckOptions) -> dict[str, Any]:
    """A nydusd (v1) config reading the image's blobs from its registry or the given backend."""
    if opts.backend_type == "registry":
        backend = {"type": "registry", "config": remote.registry_backend_config(
            image.client, image.ref, insecure=opts.target_insecure, plain_http=opts.plain_http)}
    else:
        backend = {"type": opts.backend_type, "config": dict(opts.backend_config)}
    return {"device": {"backend": backend}, "mode": "direct", "digest_validate": True}


def check(opts: CheckOptions) -> CheckResult:
    """Run every check; the result lists the differences."""
    res = CheckResult()
    registry_blobs = opts.backend_type == "registry"
    tclient, tref = remote.open_registry(opts.target, insecure=opts.target_insecure,
                                         plain_http=opts.plain_http)
    with tclient:
        target = remote.resolve(tclient, tref, opts.platform, nydus=True)
        res.problems += check_manifest(target, registry_blobs=registry_blobs)
        if res.problems:
            return res
        layer = target.fetch_bootstrap_layer()
        bootstrap = target.fetch_bootstrap(Path(opts.work_dir) / "nydus_bootstrap", layer)
        res.problems += check_bootstrap(target, bootstrap, layer, registry_blobs=registry_blobs)
        if res.problems or opts.source is None:
            return res
        sclient, sref = remote.open_registry(opts.source, insecure=opts.source_insecure,
                                             plain_http=opts.plain_http)
        with sclient:
            source = remote.resolve(sclient, sref, opts.platform, nydus=False)
            expected = source_rootfs(source)
        fs = open_fs(bootstrap, nydus_config(target, opts)) if opts.data else open_metadata(bootstrap)
        with fs:
            compare(expected, fs, data=opts.data, result=res)
    return res
