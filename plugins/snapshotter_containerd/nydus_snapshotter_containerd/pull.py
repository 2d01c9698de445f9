"""``nydus containerd pull REF``: a lazy pull of a Nydus image into containerd (our ``rpull``).

Over containerd's gRPC API, inside a lease (so nothing is collected half-way):

1. the manifest (a Nydus one picked from an index) and the image config are fetched from the
   registry and written into containerd's content store, with the garbage-collection labels
   containerd's own unpacker sets (manifest -> config, config -> top snapshot);
2. for each layer, the snapshot under its chain ID (from the config's ``diff_ids``) is prepared
   through containerd's snapshots service with the layer's annotations and the image reference as
   ``containerd.io/snapshot/...`` labels and ``containerd.io/snapshot.ref`` = the chain ID; the
   Nydus snapshotter answers AlreadyExists after committing it itself (data blobs: nothing fetched;
   bootstrap: only it is downloaded), so containerd records each chain ID as committed;
3. the image record is created (or updated) pointing at the manifest.

From an index (``nydusify --merge-platform``) the Nydus manifest is picked (``artifactType`` or the
older ``nydus.remoteimage.v1`` os feature). Its config there says
``application/vnd.nydus.image.config.v1+json``, which containerd's ``ctr run`` refuses; containerd
then gets a local copy of the manifest naming the OCI config type (same config and layers).

``ctr run --snapshotter nydus REF`` then finds the image unpacked and never downloads a data blob.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from nydus_core.errors import NydusError, UsageError

from . import labels as L

if TYPE_CHECKING:
    import grpc
    from google.protobuf.message import Message
    from nydus_backend_registry.client import Manifest, RegistryClient

T = TypeVar("T")

log = logging.getLogger("containerd-nydus")

NYDUS_ARTIFACT = "application/vnd.nydus.image.manifest.v1+json"
NYDUS_OS_FEATURE = "nydus.remoteimage.v1"
NYDUS_CONFIG = "application/vnd.nydus.image.config.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
WRITE_CHUNK = 1 << 20


class PullError(NydusError):
    """The pull could not be completed."""


def chain_ids(diff_ids: list[str]) -> list[str]:
    """containerd's chain IDs: ``C0 = D0``, ``Cn = sha256(C(n-1) + " " + Dn)``."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


@dataclass
class PullResult:
    """What the pull did."""

    ref: str
    manifest_digest: str
    chain_ids: list[str]
    prepared: list[str] = field(default_factory=list)  # chain ids the snapshotter made now
    existing: list[str] = field(default_factory=list)  # chain ids already there


def _pick_manifest(client: RegistryClient, repo: str, index: dict[str, Any], what: str) -> Manifest:
    manifests = index.get("manifests") or []

    def platform_ok(m: dict[str, Any]) -> bool:
        p: dict[str, Any] = m.get("platform") or {}
        return bool(p.get("os", "linux") == "linux" and p.get("architecture", "amd64") == "amd64")

    nydus = [m for m in manifests if platform_ok(m) and (
        m.get("artifactType") == NYDUS_ARTIFACT
        or NYDUS_OS_FEATURE in ((m.get("platform") or {}).get("os.features") or []))]
    choice = nydus or [m for m in manifests if platform_ok(m)]
    if not choice:
        raise PullError(f"{what}: the index has no linux/amd64 manifest")
    return client.get_manifest(repo, choice[0]["digest"])


class Containerd:
    """A small client of containerd's gRPC services on ``address`` in ``namespace``."""

    def __init__(self, address: str, namespace: str = "default", timeout: float = 300.0) -> None:
        import grpc

        from .api import content_grpc, images_grpc, leases_grpc, snapshots_grpc

        self.grpc = grpc
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{address}")
        self.content = content_grpc.ContentStub(self.channel)
        self.images = images_grpc.ImagesStub(self.channel)
        self.leases = leases_grpc.LeasesStub(self.channel)
        self.snapshots = snapshots_grpc.SnapshotsStub(self.channel)
        self.lease: str | None = None

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def md(self) -> list[tuple[str, str]]:
        """Request metadata: namespace, and the lease while one is held."""
        out = [("containerd-namespace", self.namespace)]
        if self.lease:
            out.append(("containerd-lease", self.lease))
        return out

    def call(self, fn: Callable[..., T], request: Message, what: str, *,
             ok: tuple[grpc.StatusCode, ...] = ()) -> T | None:
        """Call one unary RPC; return None for a status code in ``ok``, PullError otherwise."""
        try:
            return fn(request, metadata=self.md(), timeout=self.timeout)
        except self.grpc.RpcError as exc:
            code = exc.code()
            if code in ok:
                return None
            if code == self.grpc.StatusCode.UNAVAILABLE:
                raise PullError(f"{self.address}: containerd is not reachable ({exc.details()})") from None
            raise PullError(f"{what}: {code.name}: {exc.details()}") from None

    def begin_lease(self) -> None:
        """Create a lease that expires by itself in an hour if we die."""
        from .api import leases_pb2

        lid = f"nydus-pull-{time.time_ns()}-{secrets.token_hex(4)}"
        self.call(self.leases.Create, leases_pb2.CreateRequest(
            id=lid, labels={"containerd.io/gc.expire": _rfc3339(time.time() + 3600)}), "create lease")
        self.lease = lid

    def end_lease(self) -> None:
        """Delete the lease (what it protected is now referenced by the image)."""
        from .api import leases_pb2

        if self.lease:
            lid, self.lease = self.lease, None
            self.call(self.leases.Delete, leases_pb2.DeleteRequest(id=lid), "delete lease",
                      ok=(self.grpc.StatusCode.NOT_FOUND,))

    def put_content(self, data: bytes, digest: str, labels: dict[str, str]) -> None:
        """Write ``data`` into the content store (or set the labels if it is there already)."""
        from google.protobuf import field_mask_pb2

        from .api import content_pb2

        info = self.call(self.content.Info, content_pb2.InfoRequest(digest=digest), f"content {digest}",
                         ok=(self.grpc.StatusCode.NOT_FOUND,))
        if info is not None:
            merged = {**dict(info.info.labels), **labels}
            mask = field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels])
            self.call(self.content.Update, content_pb2.UpdateRequest(
                info=content_pb2.Info(digest=digest, labels=merged), update_mask=mask), f"content {digest}")
            return
        ref = f"nydus-pull-{digest}"

        def requests() -> Iterator[content_pb2.WriteContentRequest]:
            for off in range(0, max(len(data), 1), WRITE_CHUNK):
                yield content_pb2.WriteContentRequest(action=content_pb2.WRITE, ref=ref, total=len(data),
                                                      expected=digest, offset=off,
                                                      data=data[off:off + WRITE_CHUNK])
            yield content_pb2.WriteContentRequest(action=content_pb2.COMMIT, ref=ref, total=len(data),
                                                  expected=digest, offset=len(data), labels=labels)

        try:
            for _ in self.content.Write(requests(), metadata=self.md(), timeout=self.timeout):
                pass
        except self.grpc.RpcError as exc:
            if exc.code() == self.grpc.StatusCode.ALREADY_EXISTS:
                return
            raise PullError(f"writing content {digest}: {exc.code().name}: {exc.details()}") from None

    def snapshot_exists(self, snapshotter: str, key: str) -> bool:
        """Whether containerd has the snapshot ``key``."""
        from .api import snapshots_pb2

        req = snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key)
        r = self.call(self.snapshots.Stat, req, f"stat snapshot {key}", ok=(self.grpc.StatusCode.NOT_FOUND,))
        return r is not None

    def prepare_remote(self, snapshotter: str, key: str, parent: str, labels: dict[str, str]) -> bool:
        """Prepare ``key``; True when the snapshotter answered AlreadyExists (a remote layer)."""
        from .api import snapshots_pb2

        try:
            self.snapshots.Prepare(snapshots_pb2.PrepareSnapshotRequest(
                snapshotter=snapshotter, key=key, parent=parent, labels=labels),
                metadata=self.md(), timeout=self.timeout)
        except self.grpc.RpcError as exc:
            if exc.code() == self.grpc.StatusCode.ALREADY_EXISTS:
                return True
            raise PullError(f"preparing snapshot {labels.get(L.TARGET_REF, key)}: {exc.code().name}: "
                            f"{exc.details()}") from None
        req = snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key)
        self.call(self.snapshots.Remove, req, f"remove snapshot {key}", ok=(self.grpc.StatusCode.NOT_FOUND,))
        return False

    def put_image(self, name: str, media_type: str, digest: str, size: int) -> None:
        """Create or update the image record ``name``."""
        from google.protobuf import field_mask_pb2

        from .api import descriptor_pb2, images_pb2

        img = images_pb2.Image(name=name, target=descriptor_pb2.Descriptor(
            media_type=media_type, digest=digest, size=size))
        created = self.call(self.images.Create, images_pb2.CreateImageRequest(image=img), f"image {name}",
                            ok=(self.grpc.StatusCode.ALREADY_EXISTS,))
        if created is None:
            self.call(self.images.Update, images_pb2.UpdateImageRequest(
                image=img, update_mask=field_mask_pb2.FieldMask(paths=["target"])), f"image {name}")


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def pull(ref: str, *, address: str, namespace: str = "default", snapshotter: str = "nydus",
         plain_http: bool = False, insecure: bool = False, docker_config: str | None = None) -> PullResult:
    """Lazily pull the Nydus image ``ref`` into containerd (see the module doc)."""
    from nydus_backend_registry.client import RegistryClient

    kwargs: dict[str, Any] = {"plain_http": plain_http, "insecure": insecure}
    if docker_config:
        kwargs["docker_config"] = docker_config
    client, parsed = RegistryClient.for_reference(ref, **kwargs)
    name = ref
    with client:
        manifest = client.get_manifest(parsed.repository, parsed.reference)
        if manifest.is_index or manifest.json().get("manifests") is not None:
            manifest = _pick_manifest(client, parsed.repository, manifest.json(), ref)
        mjson = manifest.json()
        layers = mjson.get("layers") or []
        if not layers or (layers[-1].get("annotations") or {}).get(L.NYDUS_BOOTSTRAP) != "true":
            raise UsageError(f"{ref}: not a Nydus image (its last layer has no {L.NYDUS_BOOTSTRAP} "
                             "annotation); pull it with 'ctr images pull --snapshotter nydus'")
        cfg_desc = mjson["config"]
        config_bytes = client.fetch_blob(parsed.repository, cfg_desc["digest"])
    config = json.loads(config_bytes)
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(layers):
        raise PullError(f"{ref}: the config has {len(diff_ids)} diff_ids for {len(layers)} layers")
    chains = chain_ids(diff_ids)
    manifest_bytes, manifest_digest = manifest.content, manifest.digest
    if cfg_desc.get("mediaType") == NYDUS_CONFIG:
        # A Nydus manifest from a merged index marks its config so that Docker skips it; containerd's
        # ctr/oci spec code accepts only the OCI/Docker config types, so keep a local copy that says
        # OCI (the layers, and so every digest the snapshotter fetches, are the same).
        local = dict(mjson, config=dict(cfg_desc, mediaType=OCI_CONFIG))
        manifest_bytes = json.dumps(local, separators=(",", ":")).encode()
        manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    result = PullResult(name, manifest_digest, chains)

    cd = Containerd(address, namespace)
    try:
        cd.begin_lease()
        try:
            cd.put_content(config_bytes, cfg_desc["digest"],
                           {f"containerd.io/gc.ref.snapshot.{snapshotter}": chains[-1]})
            cd.put_content(manifest_bytes, manifest_digest,
                           {"containerd.io/gc.ref.content.config": cfg_desc["digest"]})
            parent = ""
            for layer, chain in zip(layers, chains):
                if cd.snapshot_exists(snapshotter, chain):
                    result.existing.append(chain)
                    parent = chain
                    continue
                lbl = {k: v for k, v in (layer.get("annotations") or {}).items()
                       if k.startswith("containerd.io/snapshot/")}
                lbl.update({L.TARGET_REF: chain, L.IMAGE_REF: name, L.LAYER_DIGEST: layer["digest"],
                            L.MANIFEST_DIGEST: manifest.digest})  # the registry's digest
                key = f"extract-{time.time_ns()}-{secrets.token_hex(3)} {chain}"
                if not cd.prepare_remote(snapshotter, key, parent, lbl):
                    raise PullError(f"{ref}: layer {layer['digest']} is not a remote (Nydus) layer for "
                                    f"snapshotter '{snapshotter}'")
                result.prepared.append(chain)
                parent = chain
            cd.put_image(name, manifest.media_type or OCI_MANIFEST, manifest_digest, len(manifest_bytes))
        finally:
            cd.end_lease()
    finally:
        cd.close()
    return result
