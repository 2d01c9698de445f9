"""OCI / Docker media types and the Nydus-specific ones (rafs-format.md §8)."""

from __future__ import annotations

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER_FOREIGN_GZIP",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "GZIP_LAYERS",
    "INDEXES",
    "MANIFESTS",
    "NYDUS_ARTIFACT_TYPE",
    "NYDUS_BLOB",
    "NYDUS_CONFIG",
    "NYDUS_OS_FEATURE",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_NONDIST_GZIP",
    "OCI_LAYER_TAR",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "TAR_LAYERS",
    "config_media_type",
    "index_media_type",
    "is_docker",
    "layer_media_type",
    "manifest_media_type",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

#: A Nydus data blob stored as an image layer.
NYDUS_BLOB = "application/vnd.oci.image.layer.nydus.blob.v1"
#: ``artifactType`` of the Nydus manifest inside a merged (``--merge-platform``) index.
NYDUS_ARTIFACT_TYPE = "application/vnd.nydus.image.manifest.v1+json"
#: Config media type of the Nydus manifest when merged with the OCI one.
NYDUS_CONFIG = "application/vnd.nydus.image.config.v1+json"
#: ``platform.os.features`` marker used by nydus < 2.3.5 tooling in merged indexes.
NYDUS_OS_FEATURE = "nydus.remoteimage.v1"

MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
#: Layer media types whose content is a gzip-compressed tar.
GZIP_LAYERS = (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP, OCI_LAYER_NONDIST_GZIP, DOCKER_LAYER_FOREIGN_GZIP)
#: Layer media types whose content is a plain tar.
TAR_LAYERS = (OCI_LAYER_TAR, "application/vnd.oci.image.layer.nondistributable.v1.tar")


def is_docker(media_type: str) -> bool:
    """Whether ``media_type`` is one of Docker's (schema 2) types."""
    return media_type.startswith("application/vnd.docker.")


def layer_media_type(docker: bool) -> str:
    """The tar+gzip layer media type of a Docker or an OCI manifest."""
    return DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP


def config_media_type(docker: bool) -> str:
    """The image config media type of a Docker or an OCI manifest."""
    return DOCKER_CONFIG if docker else OCI_CONFIG


def manifest_media_type(docker: bool) -> str:
    """The manifest media type, Docker or OCI."""
    return DOCKER_MANIFEST if docker else OCI_MANIFEST


def index_media_type(docker: bool) -> str:
    """The index media type, Docker (manifest list) or OCI."""
    return DOCKER_MANIFEST_LIST if docker else OCI_INDEX
