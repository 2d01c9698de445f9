"""Building and reading the OCI documents of a Nydus image (rafs-format.md §8).

A Nydus image is an ordinary OCI (or Docker schema 2) manifest whose layers are the Nydus data
blobs (media type :data:`~.mediatypes.NYDUS_BLOB`) followed by one tar.gz layer holding the merged
bootstrap at ``image/image.boot``; the config's ``rootfs.diff_ids`` lists one entry per layer.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from typing import Any

from ..errors import FormatError
from ..gzipstream import open_maybe_gzip
from . import annotations as ann
from . import mediatypes as mt

__all__ = [
    "MAX_BOOTSTRAP_LAYER",
    "blob_layer",
    "bootstrap_layer_descriptor",
    "bootstrap_layer_of",
    "chain_id",
    "descriptor",
    "dumps",
    "image_manifest",
    "is_nydus_descriptor",
    "is_nydus_manifest",
    "merged_index",
    "nydus_config",
    "pack_bootstrap_layer",
    "ref_blob_layer",
    "sha256_digest",
    "unpack_bootstrap_layer",
]

#: Largest bootstrap accepted from a bootstrap layer (a sanity bound, not a format limit).
MAX_BOOTSTRAP_LAYER = 1 << 31
_MAX_LAYER_TAIL = 64 << 20


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dumps(doc: dict[str, Any]) -> bytes:
    """Serialise a manifest, index or config (compact, stable key order as built)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def descriptor(media_type: str, digest: str, size: int, *, annotations: dict[str, str] | None = None,
               platform: dict[str, str] | None = None, artifact_type: str | None = None) -> dict[str, Any]:
    """An OCI content descriptor."""
    d: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        d["annotations"] = dict(annotations)
    if platform:
        d["platform"] = dict(platform)
    if artifact_type:
        d["artifactType"] = artifact_type
    return d


def blob_layer(digest: str, size: int) -> dict[str, Any]:
    """The descriptor of a Nydus data blob layer."""
    return descriptor(mt.NYDUS_BLOB, digest, size, annotations={ann.NYDUS_BLOB: "true"})


def ref_blob_layer(digest: str, size: int, source_digest: str) -> dict[str, Any]:
    """The descriptor of an OCI-ref RAFS blob layer: its data is the source layer ``source_digest``."""
    return descriptor(mt.NYDUS_BLOB, digest, size,
                      annotations={ann.NYDUS_BLOB: "true", ann.NYDUS_REF: source_digest})


def bootstrap_layer_descriptor(digest: str, size: int, *, docker: bool = False, fs_version: int = 6,
                               reference_blob_ids: Sequence[str] = ()) -> dict[str, Any]:
    """The descriptor of the bootstrap layer (the last layer of a Nydus manifest)."""
    a = {ann.NYDUS_BOOTSTRAP: "true", ann.NYDUS_FS_VERSION: str(fs_version)}
    if reference_blob_ids:
        a[ann.NYDUS_REFERENCE_BLOB_IDS] = json.dumps(list(reference_blob_ids), separators=(",", ":"))
    return descriptor(mt.layer_media_type(docker), digest, size, annotations=a)


def pack_bootstrap_layer(bootstrap: bytes) -> tuple[bytes, str]:
    """Return ``(tar.gz bytes, diff_id)`` of the bootstrap layer: a directory ``image`` (0755) and
    ``image/image.boot`` (0444). Deterministic: zero mtimes, no gzip name or time."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo(ann.BOOTSTRAP_DIR)
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 0
        tar.addfile(d)
        f = tarfile.TarInfo(ann.BOOTSTRAP_PATH)
        f.mode, f.size, f.mtime = 0o444, len(bootstrap), 0
        tar.addfile(f, io.BytesIO(bootstrap))
    tar_bytes = raw.getvalue()
    gz = gzip.compress(tar_bytes, compresslevel=6, mtime=0)
    return gz, sha256_digest(tar_bytes)


def unpack_bootstrap_layer(data: bytes, *, where: str = "bootstrap layer") -> bytes:
    """Return the bootstrap held by a bootstrap layer (tar.gz or tar; ``image/image.boot`` or the
    legacy ``image.boot`` at the root)."""
    try:
        # streamed: nothing is inflated beyond the member we want, whose size is checked first
        stream, _ = open_maybe_gzip(io.BytesIO(data), name=where)
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]  # stream mode only reads
            for member in tar:
                name = member.name.lstrip("./").lstrip("/")
                if name in (ann.BOOTSTRAP_PATH, ann.LEGACY_BOOTSTRAP_PATH) and member.isfile():
                    if member.size > MAX_BOOTSTRAP_LAYER:
                        raise FormatError(f"{where}: bootstrap of {member.size} bytes is too large")
                    fh = tar.extractfile(member)
                    assert fh is not None
                    boot: bytes = fh.read()
                    # the rest is tar padding: read it (bounded) so every gzip member's CRC is checked
                    rest = 0
                    while chunk := stream.read(1 << 20):
                        rest += len(chunk)
                        if rest > _MAX_LAYER_TAIL:
                            raise FormatError(f"{where}: over {_MAX_LAYER_TAIL} bytes follow the bootstrap")
                    return boot
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise FormatError(f"{where}: not a readable tar(.gz): {exc}") from None
    raise FormatError(f"{where}: no {ann.BOOTSTRAP_PATH} in the layer")


def chain_id(diff_ids: Sequence[str]) -> str:
    """The OCI ChainID of a stack of layers (bottom first)."""
    if not diff_ids:
        raise ValueError("chain_id of no layers")
    chain = diff_ids[0]
    for d in diff_ids[1:]:
        chain = sha256_digest(f"{chain} {d}".encode())
    return chain


def nydus_config(source_config: dict[str, Any], diff_ids: Sequence[str]) -> dict[str, Any]:
    """The Nydus image's config: the source config with ``rootfs.diff_ids`` replaced by the Nydus
    layers' and the bootstrap history entry appended (as upstream)."""
    cfg = copy.deepcopy(source_config)
    cfg["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    history = list(cfg.get("history") or [])
    history.append(dict(ann.BOOTSTRAP_HISTORY))
    cfg["history"] = history
    return cfg


def image_manifest(config: dict[str, Any], layers: Sequence[dict[str, Any]], *, docker: bool = False,
                   subject: dict[str, Any] | None = None,
                   annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A manifest (OCI or Docker schema 2) over ``config`` (a descriptor) and ``layers``."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.manifest_media_type(docker),
                           "config": config, "layers": list(layers)}
    if subject is not None:
        doc["subject"] = subject
    if annotations:
        doc["annotations"] = dict(annotations)
    return doc


def is_nydus_manifest(manifest: dict[str, Any]) -> bool:
    """Whether the last layer is a Nydus bootstrap layer."""
    layers = manifest.get("layers") or []
    return bool(layers) and (layers[-1].get("annotations") or {}).get(ann.NYDUS_BOOTSTRAP) == "true"


def is_nydus_descriptor(desc: dict[str, Any]) -> bool:
    """Whether an index entry points at a Nydus manifest (``artifactType`` or the legacy os feature)."""
    if desc.get("artifactType") == mt.NYDUS_ARTIFACT_TYPE:
        return True
    features = (desc.get("platform") or {}).get("os.features") or []
    return mt.NYDUS_OS_FEATURE in features


def bootstrap_layer_of(manifest: dict[str, Any], *, where: str) -> dict[str, Any]:
    """Return the bootstrap layer descriptor of a Nydus manifest (FormatError if it is not one)."""
    if not is_nydus_manifest(manifest):
        raise FormatError(f"{where}: not a Nydus image (its last layer has no "
                          f"{ann.NYDUS_BOOTSTRAP} annotation)")
    layer: dict[str, Any] = manifest["layers"][-1]
    return layer


def merged_index(entries: Sequence[dict[str, Any]], *, docker: bool = False) -> dict[str, Any]:
    """An index (``--merge-platform``) over ``entries`` (descriptors with platforms)."""
    return {"schemaVersion": 2, "mediaType": mt.index_media_type(docker), "manifests": list(entries)}
