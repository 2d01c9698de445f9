"""Manifest and index media types (Docker v2 schema 2 and OCI image spec, from
:mod:`nydus_core.oci.mediatypes`) and the Accept header for manifest requests."""

from nydus_core.oci.mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEXES,
    MANIFESTS,
    OCI_INDEX,
    OCI_MANIFEST,
)

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEXES",
    "MANIFESTS",
    "MANIFEST_ACCEPT",
    "OCI_INDEX",
    "OCI_MANIFEST",
]

#: What we accept when fetching a manifest by tag or digest: indexes and manifests, OCI first.
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
