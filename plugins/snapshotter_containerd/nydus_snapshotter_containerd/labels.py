"""Label names shared with containerd and upstream Nydus (rafs-format.md §8)."""

from __future__ import annotations

#: containerd: the name the client will commit this snapshot under (remote snapshotters answer
#: AlreadyExists for Prepare when they already have it).
TARGET_REF = "containerd.io/snapshot.ref"
#: A Nydus data blob layer (nothing to download: it is read lazily through the bootstrap).
NYDUS_BLOB = "containerd.io/snapshot/nydus-blob"
#: The Nydus bootstrap layer (last layer of a Nydus image).
NYDUS_BOOTSTRAP = "containerd.io/snapshot/nydus-bootstrap"
NYDUS_FS_VERSION = "containerd.io/snapshot/nydus-fs-version"
#: What the CRI plugin (and our ``nydus containerd pull``) passes so a remote snapshotter can fetch.
IMAGE_REF = "containerd.io/snapshot/cri.image-ref"
LAYER_DIGEST = "containerd.io/snapshot/cri.layer-digest"
MANIFEST_DIGEST = "containerd.io/snapshot/cri.manifest-digest"
#: Set by this snapshotter on the snapshots it made remotely.
REMOTE = "containerd.io/snapshot/remote"
#: Set by this snapshotter on a committed bootstrap snapshot: the image reference it was fetched for.
NYDUS_IMAGE = "containerd.io/snapshot/nydus-image"
#: Client label: add ``volatile`` to this snapshot's writable overlay mount (upstream's label).
OVERLAY_VOLATILE = "containerd.io/snapshot/overlay.volatile"
