"""Annotation keys Nydus images carry (rafs-format.md §8)."""

from __future__ import annotations

__all__ = [
    "BOOTSTRAP_DIR",
    "BOOTSTRAP_HISTORY",
    "BOOTSTRAP_PATH",
    "LEGACY_BOOTSTRAP_PATH",
    "NYDUS_BLOB",
    "NYDUS_BLOB_DIGEST",
    "NYDUS_BLOB_SIZE",
    "NYDUS_BOOTSTRAP",
    "NYDUS_FS_VERSION",
    "NYDUS_REF",
    "NYDUS_REFERENCE_BLOB_IDS",
    "NYDUS_SOURCE_CHAINID",
    "NYDUS_SOURCE_DIGEST",
    "NYDUS_TARGET_DIGEST",
    "PREFIX",
    "UNCOMPRESSED",
]

PREFIX = "containerd.io/snapshot/"
NYDUS_BLOB = PREFIX + "nydus-blob"
NYDUS_BOOTSTRAP = PREFIX + "nydus-bootstrap"
NYDUS_FS_VERSION = PREFIX + "nydus-fs-version"
NYDUS_REFERENCE_BLOB_IDS = PREFIX + "nydus-reference-blob-ids"
NYDUS_SOURCE_CHAINID = PREFIX + "nydus-source-chainid"
NYDUS_REF = PREFIX + "nydus-ref"
NYDUS_BLOB_DIGEST = PREFIX + "nydus-blob-digest"
NYDUS_BLOB_SIZE = PREFIX + "nydus-blob-size"
NYDUS_SOURCE_DIGEST = PREFIX + "nydus-source-digest"
NYDUS_TARGET_DIGEST = PREFIX + "nydus-target-digest"
#: Used while converting (containerd), never in a final manifest.
UNCOMPRESSED = "containerd.io/uncompressed"

#: History entry appended to the config for the bootstrap layer.
BOOTSTRAP_HISTORY = {"created_by": "Nydus Converter", "comment": "Nydus Bootstrap Layer"}

#: Paths of the bootstrap inside the bootstrap layer (current, then legacy).
BOOTSTRAP_DIR = "image"
BOOTSTRAP_PATH = "image/image.boot"
LEGACY_BOOTSTRAP_PATH = "image.boot"
