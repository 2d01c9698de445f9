"""``merge``: flatten per-layer bootstraps into one image (``nydus-image merge``).

Layers are applied bottom to top (optionally on a parent bootstrap) with the whiteout rules of
:mod:`.whiteout`; every layer's blobs stay in the blob table (deduplicated by id) and chunk records
are re-pointed at the merged table.

Each layer has at most one blob of its own (others come from a parent or a chunk dict). Upstream's
per-layer lists apply to that blob: ``blob_digests`` (its id, ``sha256:`` prefix optional),
``original_blob_ids``, ``blob_sizes``, ``blob_toc_digests``, ``blob_toc_sizes``. An inline-meta
placeholder id ``"x" * 64`` is replaced by the original id, else the digest, else the sha256 the
layer bootstrap's file name carries (upstream's convention); with none of these it is an error.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import BuildError, UsageError
from ..rafs.constants import BLOB_ID_INLINE_PLACEHOLDER, BlobFeatures
from ..rafs.model import BlobInfo, TreeInode
from ..rafs.toc import blob_id_from_path
from ..rafs.v6_writer import V6Writer
from ..tools.check import self_check
from .build import resolve_paths
from .chunker import finalize_chunks, unique_inodes
from .inputs import load_image, strip_chunk_dict_prefix
from .limits import check_tree
from .options import WHITEOUT_SPECS, MergeResult, ProgressCallback
from .outputs import write_file
from .whiteout import apply_layer, strip_markers

log = logging.getLogger("nydus.builder")

StrList = Sequence[str] | None
IntList = Sequence[int] | None


def _hex_digest(value: str, what: str) -> str:
    text = value.strip()
    if text.startswith("sha256:"):
        text = text[len("sha256:"):]
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise UsageError(f"invalid {what} '{value}': expected a sha256 digest")
    return raw.hex()


def _check_len(values: Sequence[object] | None, n: int, what: str) -> None:
    if values is not None and len(values) != n:
        raise UsageError(f"{what} has {len(values)} entries but there are {n} source bootstraps")


def _own_blob(layer_blobs: list[BlobInfo], known: set[str]) -> int | None:
    """Index (in the layer's table) of the layer's own blob, or None."""
    new = [i for i, b in enumerate(layer_blobs) if b.blob_id not in known]
    if not new:
        return None
    if len(new) == 1:
        return new[0]
    for i in new:
        b = layer_blobs[i]
        if b.blob_id == BLOB_ID_INLINE_PLACEHOLDER or b.features & BlobFeatures.INLINED_FS_META:
            return i
    return None


def merge(
    sources: Sequence[str | os.PathLike[str]],
    *,
    bootstrap: str | os.PathLike[str],
    parent_bootstrap: str | os.PathLike[str] | None = None,
    chunk_dict: str | os.PathLike[str] | None = None,
    blob_digests: StrList = None,
    original_blob_ids: StrList = None,
    blob_sizes: IntList = None,
    blob_toc_digests: StrList = None,
    blob_toc_sizes: IntList = None,
    prefetch: Sequence[str | bytes] | None = None,
    whiteout_spec: str = "oci",
    progress: ProgressCallback | None = None,
    implicit_dirs: Sequence[Sequence[bytes]] | None = None,
) -> MergeResult:
    """Merge per-layer bootstraps (lowest first) into ``bootstrap``.

    ``prefetch``: paths for the prefetch table; ``None`` keeps the union of the layers' tables
    (entries still present after merging). ``implicit_dirs`` (one list per source, as
    :attr:`BuildResult.implicit_dirs` gives them) names each layer's directories its tar did not
    list: where a lower layer has the directory, it keeps the lower layer's attributes (an OCI
    layer changes only what it lists).
    """
    if not sources:
        raise UsageError("merge needs at least one source bootstrap")
    if whiteout_spec not in WHITEOUT_SPECS:
        raise UsageError(
            f"invalid whiteout spec '{whiteout_spec}': choose one of {', '.join(WHITEOUT_SPECS)}"
        )
    n = len(sources)
    if implicit_dirs is not None and len(implicit_dirs) != n:
        raise UsageError(f"implicit_dirs has {len(implicit_dirs)} entries for {n} layers")
    for values, what in ((blob_digests, "blob digests"), (original_blob_ids, "original blob ids"),
                         (blob_sizes, "blob sizes"), (blob_toc_digests, "blob ToC digests"),
                         (blob_toc_sizes, "blob ToC sizes")):
        _check_len(values, n, what)

    table: list[BlobInfo] = []
    index_of: dict[str, int] = {}
    known_ids: set[str] = set()

    def add_blob(b: BlobInfo, key: str) -> int:
        if key in index_of:
            return index_of[key]
        if b.blob_id in index_of:  # the same blob reached under another original id
            index_of[key] = index_of[b.blob_id]
            return index_of[key]
        idx = len(table)
        table.append(dataclasses.replace(b, blob_index=idx))
        index_of[key] = index_of[b.blob_id] = idx
        return idx

    if chunk_dict is not None:
        dict_img = load_image(strip_chunk_dict_prefix(chunk_dict), "chunk dict")
        known_ids.update(b.blob_id for b in dict_img.blobs)

    overrides = any(v is not None for v in (blob_digests, original_blob_ids, blob_sizes, blob_toc_digests,
                                            blob_toc_sizes))
    root = TreeInode(mode=0o40755)
    chunk_size: int | None = None
    digester: int | None = None
    compressor: int | None = None
    explicit = False
    prefetch_paths: list[bytes] = []

    layers: list[tuple[Path | None, int]] = [(Path(parent_bootstrap), -1)] if parent_bootstrap else []
    layers += [(Path(s), i) for i, s in enumerate(sources)]
    for step, (path, layer_idx) in enumerate(layers):
        is_parent = layer_idx < 0
        assert path is not None
        img = load_image(path, "parent bootstrap" if is_parent else "layer bootstrap", fix_placeholder=False)
        if chunk_size is None:
            chunk_size, digester, compressor = img.chunk_size, img.digester, img.compressor
        elif img.chunk_size != chunk_size:
            raise BuildError(f"{path}: chunk size {img.chunk_size:#x} differs from the other layers' "
                             f"{chunk_size:#x}")
        elif img.digester != digester:
            raise BuildError(f"{path}: uses another chunk digester than the other layers")
        explicit = explicit or img.explicit_uid_gid
        seen = known_ids | set(index_of)
        new_blobs = [b for b in img.blobs if b.blob_id not in seen]
        own = None if is_parent else _own_blob(img.blobs, seen)
        if own is None and len(new_blobs) > 1 and not is_parent and overrides:
            raise BuildError(f"{path}: the layer references several new blobs; pass the chunk dict so "
                             "its blobs can be told apart")
        mapping: dict[int, int] = {}
        for i, b in enumerate(img.blobs):
            key = b.blob_id
            b = dataclasses.replace(b)
            if i == own:
                if original_blob_ids is not None:
                    b.blob_id = original_blob_ids[layer_idx]
                elif blob_digests is not None and not b.features & BlobFeatures.SEPARATE:
                    b.blob_id = _hex_digest(blob_digests[layer_idx], "blob digest")
                if blob_digests is not None and b.features & BlobFeatures.SEPARATE:
                    b.blob_meta_digest = bytes.fromhex(_hex_digest(blob_digests[layer_idx], "blob digest"))
                if blob_sizes is not None:
                    if b.features & BlobFeatures.SEPARATE:
                        b.blob_meta_size = int(blob_sizes[layer_idx])
                    else:
                        b.compressed_size = int(blob_sizes[layer_idx])
                if blob_toc_digests is not None:
                    toc_digest = _hex_digest(blob_toc_digests[layer_idx], "blob ToC digest")
                    b.blob_toc_digest = bytes.fromhex(toc_digest)
                if blob_toc_sizes is not None:
                    b.blob_toc_size = int(blob_toc_sizes[layer_idx])
            if b.blob_id == BLOB_ID_INLINE_PLACEHOLDER:
                real = blob_id_from_path(path)
                if real is None:
                    raise BuildError(
                        f"{path}: blob {i} has the inline-meta placeholder id; pass its real id "
                        "(blob digests / original blob ids) or name the bootstrap after it"
                    )
                b.blob_id = real
            # a placeholder is not an identity: key it by the layer so layers never collide
            mapping[i] = add_blob(b, f"{key}@{step}" if key == BLOB_ID_INLINE_PLACEHOLDER else key)
        for node in unique_inodes(img.tree):
            if node.chunks:
                node.chunks = [dataclasses.replace(c, blob_index=mapping[c.blob_index]) for c in node.chunks]
        prefetch_paths.extend(img.prefetch_paths)
        if step == 0:
            root = img.tree
            strip_markers(root, whiteout_spec)  # nothing below the lowest layer to hide
        else:
            keep = None
            if implicit_dirs is not None and not is_parent:
                keep = {id(node) for node in resolve_paths(img.tree, implicit_dirs[layer_idx], "implicit dir")
                        if node.is_dir}
            apply_layer(root, img.tree, whiteout_spec, keep_lower_attrs=keep)
        if progress is not None:
            progress(step + 1, len(layers))

    assert chunk_size is not None and digester is not None and compressor is not None
    check_tree(root, "merged image")  # what the format cannot hold is refused, naming the entry
    finalize_chunks(root, chunk_size)
    wanted = prefetch if prefetch is not None else list(dict.fromkeys(prefetch_paths))
    nodes = resolve_paths(root, wanted) if wanted else []
    writer = V6Writer(root, table, chunk_size=chunk_size, compressor=compressor, digester=digester,
                      explicit_uid_gid=explicit, prefetch=nodes)
    data = writer.dump()
    self_check(data, str(bootstrap))
    out = write_file(Path(bootstrap), data, "bootstrap")
    return MergeResult(bootstrap_path=out, blobs=table, inode_count=writer.inode_count,
                       bootstrap_size=len(data))

