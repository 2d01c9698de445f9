"""``create -t targz-ref`` / ``-t tar-ref``: an image whose data blob is the original layer.

Nothing of the layer is copied: the bootstrap's blob entry names the layer by its digest (its
``compressed_size`` is the layer's size), and a small separate RAFS blob (``blob_meta_digest`` /
``blob_meta_size``) holds blob.meta (ZRAN contexts for a gzip layer), the chunk digests and a ToC
(rafs-format.md §6.8). A layer starting with the gzip magic is ZRAN whatever ``-t`` says (as
upstream); digests are SHA-256 (forced, as upstream). With ``-D`` the blob directory receives the
RAFS blob named by its digest and the original layer named by its digest (hard-linked when
possible), which is what the readers look for.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from ..errors import BuildError, NydusError, UnknownPluginError, UsageError
from ..interfaces import Compressor, IndexedStream
from ..plugins import get_compressor, get_digester
from ..rafs.checks import recorded_id
from ..rafs.model import BlobInfo, TreeInode
from ..rafs.ref_blob import write_ref_blob
from ..rafs.v6_writer import V6Writer
from ..tools.check import self_check
from .chunker import ChunkPipeline, Readable, finalize_chunks
from .inputs import LoadedImage, chunk_map, load_image
from .limits import check_tree
from .options import BuildOptions, BuildResult, BuildStats
from .outputs import OutputFile, write_file
from .ref_chunks import RefChunkSink
from .source_tar import TarSource
from .whiteout import apply_layer

__all__ = ["REF_SOURCE_TYPES", "build_ref"]

log = logging.getLogger("nydus.builder")

REF_SOURCE_TYPES = ("targz-ref", "tar-ref")
_GZIP_MAGIC = b"\x1f\x8b\x08"
_STEP = 1 << 20


class _Hashing:
    """Reads a file, hashing and counting every byte (the layer digest and size)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self._f.read(n)
        self.sha256.update(data)
        self.count += len(data)
        return data


def _drain(stream: Readable) -> None:
    while stream.read(_STEP):
        pass


def _place_layer(layer: Path, blob_dir: Path, digest: str) -> None:
    """Put the original layer into ``blob_dir`` under its digest: a hard link (atomic, no temporary
    name), else a copy through a locked temporary output that a later build sweeps if this one dies."""
    target = blob_dir / digest
    if target.exists():
        return
    try:
        os.link(layer, target)
        return
    except FileExistsError:
        return  # placed by a concurrent build: the same bytes under the same digest
    except OSError:
        pass  # another file system, or links not allowed: copy
    out = OutputFile(target, what="the original layer")
    try:
        with open(layer, "rb") as src:
            shutil.copyfileobj(src, out.file, _STEP)
    except OSError as exc:
        out.discard()
        raise BuildError(f"{target}: cannot place the original layer: {exc.strerror or exc}") from None
    except BaseException:
        out.discard()
        raise
    out.commit()


def build_ref(
    source: str | os.PathLike[str],
    source_type: str,
    *,
    bootstrap: str | os.PathLike[str] | None,
    blob: str | os.PathLike[str] | None,
    blob_dir: str | os.PathLike[str] | None,
    options: BuildOptions,
) -> BuildResult:
    """Build a ``*-ref`` image of the layer file ``source`` (see the module docstring)."""
    opts = options
    if source_type not in REF_SOURCE_TYPES:
        raise UsageError(f"'{source_type}' is not a *-ref source type")
    if not isinstance(source, (str, os.PathLike)) or os.fspath(source) == "-":
        raise UsageError(f"source type {source_type} needs the layer as a file (its digest names the blob)")
    if bootstrap is None:
        raise UsageError(f"source type {source_type} needs a bootstrap output (-B)")
    if blob is None and blob_dir is None:
        raise UsageError("a blob output is required: give a blob file or a blob directory")
    if opts.inline_meta:
        raise UsageError(f"--blob-inline-meta is not supported with {source_type}")
    if opts.chunk_dict is not None:
        raise UsageError(f"--chunk-dict is not supported with {source_type}")
    layer = Path(source)
    digester = get_digester("sha256", where=f"{source_type} (digests are sha256)")
    ci_compressor: Compressor | None
    try:
        ci_compressor = get_compressor("zstd")
    except UnknownPluginError:
        ci_compressor = None
    cs = opts.chunk_size
    stats = BuildStats()
    parent: LoadedImage | None = None
    table: list[BlobInfo] = []
    known = {}
    if opts.parent_bootstrap is not None:
        parent = load_image(opts.parent_bootstrap, "parent bootstrap")
        if parent.chunk_size != cs:
            raise BuildError(f"{parent.path}: parent bootstrap uses chunk size {parent.chunk_size:#x}, "
                             f"this build {cs:#x}")
        table = list(parent.blobs)
        known = chunk_map(parent.tree) if parent.digester == digester.algorithm_id else {}
    own_index = len(table)

    try:
        f = open(layer, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise BuildError(f"{layer}: cannot open source: {exc.strerror or exc}") from None
    indexed: IndexedStream | None = None
    try:
        zran = f.read(3) == _GZIP_MAGIC
        f.seek(0)
        compressor = get_compressor("gzip" if zran else "none", where=f"{source_type} layer {layer}")
        hashing = _Hashing(f)
        stream: Readable = hashing
        if zran:
            indexed = compressor.open_indexed(hashing)  # type: ignore[arg-type]  # read() is all it uses
            stream = indexed
        sink = RefChunkSink(own_index, cs, indexed)
        tsrc = TarSource(stream, repeatable=opts.repeatable, estargz=opts.estargz)
        tsrc.name = str(layer)
        size = os.fstat(f.fileno()).st_size
        pipeline = ChunkPipeline(sink, digester, cs, known=known, stats=stats, progress=opts.progress,
                                 total=size, position=lambda: hashing.count)
        tree = tsrc.load(pipeline, stats)
        _drain(stream)  # the rest of the layer: gzip trailers checked, the digest complete
        _drain(hashing)
    except NydusError as exc:
        if isinstance(exc, (BuildError, UsageError)):
            raise
        raise BuildError(f"{layer}: {exc}") from None
    except OSError as exc:
        raise BuildError(f"{layer}: cannot read: {exc.strerror or exc}") from None
    finally:
        close = getattr(indexed, "close", None)
        if close is not None:
            close()
        f.close()
    layer_digest = hashing.sha256.hexdigest()
    implicit = tsrc.implicit_dirs
    implicit_paths = tsrc.implicit_paths(tree)
    check_tree(tree, str(layer))  # what the format cannot hold is refused, naming the entry
    root: TreeInode = tree
    if parent is not None:
        root = apply_layer(parent.tree, tree, opts.whiteout_spec, keep_lower_attrs=implicit)

    info: BlobInfo | None = None
    written: Path | None = None
    if sink.chunk_count:
        contexts, dicts = sink.contexts() if zran else ([], [])
        out = OutputFile(Path(blob) if blob is not None else None,
                         directory=Path(blob_dir) if blob_dir is not None else None, what="blob")
        try:
            meta = write_ref_blob(out.file, sink.chunks, sink.refs if zran else None, contexts, dicts,
                                  ci_compressor=ci_compressor)
            written = out.commit(None if blob is not None else Path(blob_dir or ".") / meta.blob_id)
        except BaseException:
            out.discard()
            raise
        if blob_dir is not None:
            _place_layer(layer, Path(blob_dir), layer_digest)
        info = BlobInfo(
            blob_id=layer_digest, blob_index=own_index, chunk_size=cs, chunk_count=sink.chunk_count,
            compressor=recorded_id(compressor, "compressor"), digester=recorded_id(digester, "digester"),
            features=meta.features, compressed_size=size, uncompressed_size=sink.uncompressed_size,
            blob_toc_size=meta.blob_toc_size, ci_compressor=meta.ci_compressor, ci_offset=meta.ci_offset,
            ci_compressed_size=meta.ci_compressed_size, ci_uncompressed_size=meta.ci_uncompressed_size,
            blob_toc_digest=meta.blob_toc_digest, blob_meta_digest=bytes.fromhex(meta.blob_id),
            blob_meta_size=meta.size,
        )
        table = [*table, info]
        stats.bytes_stored = meta.size
    finalize_chunks(root, cs)
    from .build import resolve_paths

    prefetch = resolve_paths(root, opts.prefetch) if opts.prefetch else []
    writer = V6Writer(root, table, chunk_size=cs, compressor=recorded_id(compressor, "compressor"),
                      digester=recorded_id(digester, "digester"), explicit_uid_gid=not opts.repeatable,
                      prefetch=prefetch)
    data = writer.dump(table)
    self_check(data, str(bootstrap))
    boot_path = write_file(Path(bootstrap), data, "bootstrap")
    log.info("%s: %s image of layer %s (%d chunks, RAFS blob %s)", boot_path, source_type, layer_digest,
             sink.chunk_count, info.blob_meta_digest.hex() if info else "none")
    return BuildResult(bootstrap_path=boot_path, blob_path=written, blob_info=info, blobs=table,
                       inode_count=writer.inode_count, bootstrap_size=len(data), stats=stats,
                       implicit_dirs=implicit_paths)
