"""``create``: build a RAFS v6 bootstrap and data blob from a directory or a tar stream.

Blob table order: the parent image's blobs (kept as they are), then this build's blob (only when
it holds chunk data), then the chunk-dict blobs that are really referenced.

Inline metadata (``inline_meta``): the bootstrap embedded in the blob carries the placeholder blob
id ``"x" * 64`` for this build's blob, as upstream (the blob's hash cannot be inside the blob);
``merge``/nydusd replace it by the real id. The separate ``bootstrap`` file, written after the blob
is complete, carries the **real** id, sizes and ToC digest, so it is usable directly with the blob.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import BuildError, UnknownPluginError, UsageError
from ..interfaces import Compressor, Digester
from ..plugins import get_compressor, get_digester
from ..rafs.blob_writer import BlobWriter
from ..rafs.checks import recorded_id
from ..rafs.constants import BLOB_ID_INLINE_PLACEHOLDER
from ..rafs.model import BlobInfo, ChunkInfo, TreeInode
from ..rafs.v6_writer import V6Writer
from ..tools.check import self_check
from .build_ref import REF_SOURCE_TYPES, build_ref
from .chunker import ChunkKey, ChunkPipeline, Readable, remap_blob_indexes, unique_inodes
from .inputs import LoadedImage, chunk_map, load_image, strip_chunk_dict_prefix
from .limits import check_tree
from .options import SOURCE_TYPES, UNSUPPORTED_SOURCE_TYPES, BuildOptions, BuildResult, BuildStats
from .outputs import OutputFile, write_file
from .source_dir import DirectorySource
from .source_tar import TarSource
from .whiteout import apply_layer

log = logging.getLogger("nydus.builder")

#: provisional blob indexes of chunk-dict blobs, remapped once the used ones are known
_DICT_BASE = 1 << 20


def resolve_algorithms(compressor: str, digester: str) -> tuple[Compressor, Digester]:
    """Return plugin instances for the names (unknown names give the registry's install hint)."""
    comp = get_compressor(compressor, where="--compressor")
    dig = get_digester(digester, where="--digester")
    for kind, obj in (("compressor", comp), ("digester", dig)):
        if obj.algorithm_id is None or obj.super_flag is None:
            raise UsageError(
                f"{kind} '{obj.name}' has no upstream on-disk id and cannot be used in a RAFS image"
            )
    return comp, dig


def _check_compatible(img: LoadedImage, what: str, chunk_size: int, digester: Digester) -> None:
    if img.chunk_size != chunk_size:
        raise BuildError(
            f"{img.path}: {what} uses chunk size {img.chunk_size:#x}, this build {chunk_size:#x}"
        )
    if img.digester != digester.algorithm_id:
        raise BuildError(f"{img.path}: {what} uses another chunk digester than '{digester.name}'")


def resolve_paths(root: TreeInode, paths: Sequence[str | bytes], what: str = "prefetch") -> list[TreeInode]:
    """Return the inodes at the given absolute paths; missing paths are skipped with a warning."""
    out: list[TreeInode] = []
    for p in paths:
        raw = os.fsencode(p).strip()
        if not raw:
            continue
        node: TreeInode | None = root
        for part in raw.split(b"/"):
            if part in (b"", b"."):
                continue
            node = node.children.get(part) if node is not None and node.is_dir else None
        if node is None:
            log.warning("%s path %s is not in the image; ignored", what, os.fsdecode(raw))
            continue
        out.append(node)
    return out


def _referenced_blobs(root: TreeInode) -> set[int]:
    return {c.blob_index for node in unique_inodes(root) for c in node.chunks}


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: a build makes millions of long-lived objects (the tree,
    chunk records) and no cycles, so its full collections (0.8 s of 4.5 s CPU on 100k small files)
    find nothing. Reference counting still frees everything; the collector's state is restored."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def build(
    source: str | os.PathLike[str] | Readable,
    source_type: str = "dir-rafs",
    *,
    bootstrap: str | os.PathLike[str] | None = None,
    blob: str | os.PathLike[str] | None = None,
    blob_dir: str | os.PathLike[str] | None = None,
    options: BuildOptions | None = None,
) -> BuildResult:
    """Build a RAFS v6 image from ``source`` (``nydus-image create``).

    ``source_type``: ``dir-rafs``/``directory`` (a directory), ``tar-rafs`` or ``targz-rafs`` (a tar
    path, a fifo, ``"-"`` for stdin, or an open binary stream: anything with ``read(n)``). Outputs:
    ``bootstrap`` (required unless ``options.inline_meta``), and the blob to ``blob`` (a path or fifo)
    or into ``blob_dir`` named by its id. A build without file data writes no blob (unless the
    metadata is inlined).
    """
    with _no_cyclic_gc():
        return _build(source, source_type, bootstrap=bootstrap, blob=blob, blob_dir=blob_dir, options=options)


def _build(
    source: str | os.PathLike[str] | Readable,
    source_type: str,
    *,
    bootstrap: str | os.PathLike[str] | None,
    blob: str | os.PathLike[str] | None,
    blob_dir: str | os.PathLike[str] | None,
    options: BuildOptions | None,
) -> BuildResult:
    opts = options or BuildOptions()
    opts.validate()
    if source_type in REF_SOURCE_TYPES:
        if not isinstance(source, (str, os.PathLike)):
            raise UsageError(f"source type {source_type} needs the layer as a file path")
        return build_ref(source, source_type, bootstrap=bootstrap, blob=blob, blob_dir=blob_dir,
                         options=opts)
    if source_type in UNSUPPORTED_SOURCE_TYPES:
        raise UsageError(f"source type '{source_type}' is not supported by nydus-py "
                         f"(supported: {', '.join(SOURCE_TYPES)})")
    if source_type not in SOURCE_TYPES:
        raise UsageError(f"unknown source type '{source_type}' (supported: {', '.join(SOURCE_TYPES)})")
    if bootstrap is None and not opts.inline_meta:
        raise UsageError("a bootstrap output is required unless the metadata is inlined into the blob")
    if blob is None and blob_dir is None:
        raise UsageError("a blob output is required: give a blob file or a blob directory")
    compressor, digester = resolve_algorithms(opts.compressor, opts.digester)
    meta_compressor: Compressor | None = None
    if opts.inline_meta and opts.blob_toc:
        try:
            meta_compressor = get_compressor("zstd")
        except UnknownPluginError:
            log.warning("zstd is not installed: the inlined bootstrap is stored uncompressed")
    cs = opts.chunk_size
    stats = BuildStats()

    parent: LoadedImage | None = None
    table: list[BlobInfo] = []
    known: dict[ChunkKey, ChunkInfo] = {}
    if opts.parent_bootstrap is not None:
        parent = load_image(opts.parent_bootstrap, "parent bootstrap")
        _check_compatible(parent, "parent bootstrap", cs, digester)
        table = list(parent.blobs)
        known = chunk_map(parent.tree)
    own_index = len(table)
    dict_blobs: list[BlobInfo] = []
    if opts.chunk_dict is not None:
        chunk_dict = load_image(strip_chunk_dict_prefix(opts.chunk_dict), "chunk dict")
        _check_compatible(chunk_dict, "chunk dict", cs, digester)
        dict_blobs = chunk_dict.blobs
        for key, c in chunk_map(chunk_dict.tree).items():
            if key not in known:
                known[key] = ChunkInfo(c.block_id, _DICT_BASE + c.blob_index, c.flags, c.compressed_size,
                                       c.uncompressed_size, c.compressed_offset, c.uncompressed_offset, 0,
                                       c.index, c.crc32)

    blob_path = Path(blob) if blob is not None else None
    out = OutputFile(blob_path, directory=Path(blob_dir) if blob_dir is not None else None, what="blob")
    workers = opts.workers or os.cpu_count() or 1
    bw = BlobWriter(
        out.file, compressor=compressor, digester=digester, chunk_size=cs, blob_index=own_index,
        blob_toc=opts.blob_toc, inline_meta=opts.inline_meta, meta_compressor=meta_compressor,
        workers=workers,
    )
    try:
        implicit: set[int] = set()
        implicit_paths: list[bytes] = []
        layer = (os.fspath(source) if isinstance(source, (str, os.PathLike))
                 else getattr(source, "name", None) or "<stream>")
        if source_type in ("dir-rafs", "directory"):
            if not isinstance(source, (str, os.PathLike)):
                raise UsageError("a directory source must be a path")
            own = out.identity()
            dsrc = DirectorySource(source, repeatable=opts.repeatable, exclude={own} if own else None)
            # file data is read while the walk goes on (the total is known once it ends)
            pipeline = ChunkPipeline(bw, digester, cs, known=known, stats=stats, progress=opts.progress)
            tree = dsrc.scan(stats, pipeline=pipeline, workers=workers)  # format limits checked in the walk
        else:
            tsrc = TarSource(source, gzip=source_type == "targz-rafs", repeatable=opts.repeatable,
                             estargz=opts.estargz)
            pipeline = ChunkPipeline(bw, digester, cs, known=known, stats=stats, progress=opts.progress,
                                     total=tsrc.size, position=lambda: tsrc.consumed)
            tree = tsrc.load(pipeline, stats)
            implicit = tsrc.implicit_dirs
            implicit_paths = tsrc.implicit_paths(tree)
            layer = tsrc.name
            check_tree(tree, str(layer))  # what the format cannot hold is refused, naming the entry
        root = tree
        if parent is not None:
            root = apply_layer(parent.tree, tree, opts.whiteout_spec, keep_lower_attrs=implicit)
        bw.flush()
        stats.bytes_stored = bw.position
        has_data = bw.chunk_count > 0

        own_slot = [BlobInfo(BLOB_ID_INLINE_PLACEHOLDER, own_index, cs)] if has_data else []
        used: list[int] = []
        if dict_blobs:  # chunk-dict records carry provisional blob indexes: number the used blobs
            used = sorted(i - _DICT_BASE for i in _referenced_blobs(root) if i >= _DICT_BASE)
            first_dict = own_index + len(own_slot)
            remap_blob_indexes(root, {_DICT_BASE + k: first_dict + rank for rank, k in enumerate(used)})
        # no finalize_chunks(): the v6 writer records chunk k of a file at k * chunk size whatever
        # the shared record says, and the tree is not handed out
        table = table + own_slot + [dict_blobs[k] for k in used]
        prefetch = resolve_paths(root, opts.prefetch) if opts.prefetch else []
        writer = V6Writer(
            root, table, chunk_size=cs, compressor=recorded_id(compressor, "compressor"),
            digester=recorded_id(digester, "digester"),
            explicit_uid_gid=not opts.repeatable, prefetch=prefetch,
        )

        def with_own(info: BlobInfo) -> list[BlobInfo]:
            return [*table[:own_index], info, *table[own_index + 1:]] if has_data else table

        info: BlobInfo | None = None
        written: Path | None = None
        if has_data or opts.inline_meta:
            inline = (lambda prov: writer.dump(with_own(prov))) if opts.inline_meta else None
            info = bw.finish(bootstrap=inline)
            if opts.blob_id:
                info.blob_id = opts.blob_id
            info.blob_index = own_index
            if blob_path is not None:
                written = out.commit(None)
            else:
                assert blob_dir is not None  # one of blob and blob_dir is given (checked above)
                written = out.commit(Path(blob_dir) / info.blob_id)
        else:
            bw.abort()
            out.discard()
        final_table = with_own(info) if info is not None else table
        data = writer.dump(final_table)
        self_check(data, str(bootstrap) if bootstrap is not None else "inline bootstrap", workers=workers)
    except OSError as exc:  # the blob could not be written (disk full, broken pipe...)
        bw.abort()
        out.discard()
        where = exc.filename or blob_path or blob_dir
        raise BuildError(f"{where}: cannot write the blob: {exc.strerror or exc}") from None
    except BaseException:
        bw.abort()
        out.discard()
        raise
    boot_path = write_file(Path(bootstrap), data, "bootstrap") if bootstrap is not None else None
    return BuildResult(
        bootstrap_path=boot_path,
        blob_path=written,
        blob_info=info,
        blobs=final_table,
        inode_count=writer.inode_count,
        bootstrap_size=len(data),
        stats=stats,
        implicit_dirs=implicit_paths,
    )
