"""Images in a registry: open a client for a reference, resolve a manifest for a platform, fetch
its config and (for Nydus images) its bootstrap."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nydus_backend_registry import dockerconfig
from nydus_backend_registry.client import Manifest, RegistryClient
from nydus_backend_registry.reference import Reference

from nydus_core.errors import FormatError, UsageError
from nydus_core.oci import image as oci
from nydus_core.oci import mediatypes as mt
from nydus_core.oci.platform import Platform, select_manifest, select_nydus_manifest


def open_registry(ref: str, *, insecure: bool = False, plain_http: bool = False) -> tuple[RegistryClient,
                                                                                           Reference]:
    """A client for the registry of ``ref`` (credentials from ``~/.docker/config.json``)."""
    return RegistryClient.for_reference(ref, insecure=insecure, plain_http=plain_http)


@dataclass
class RemoteImage:
    """One platform's manifest of an image in a registry, with its config."""

    client: RegistryClient
    ref: Reference
    manifest: Manifest
    index: Manifest | None
    config_bytes: bytes

    @property
    def doc(self) -> dict[str, Any]:
        """The parsed manifest."""
        return self.manifest.json()

    @property
    def config(self) -> dict[str, Any]:
        """The parsed image config."""
        config: dict[str, Any] = json.loads(self.config_bytes)
        return config

    @property
    def docker(self) -> bool:
        """Whether the manifest uses Docker schema 2 media types."""
        return mt.is_docker(self.manifest.media_type)

    @property
    def layers(self) -> list[dict[str, Any]]:
        """The manifest's layer descriptors."""
        return list(self.doc.get("layers") or [])

    @property
    def descriptor(self) -> dict[str, Any]:
        """A descriptor of the manifest (for ``subject`` or an index)."""
        return oci.descriptor(self.manifest.media_type, self.manifest.digest, self.manifest.size)

    @property
    def platform(self) -> Platform | None:
        """The platform in the config (``os``/``architecture``/``variant``)."""
        return Platform.from_json(self.config)

    @property
    def repo(self) -> str:
        """The repository name."""
        return self.ref.repository

    @property
    def is_nydus(self) -> bool:
        """Whether this is a Nydus manifest."""
        return oci.is_nydus_manifest(self.doc)

    def fetch_bootstrap_layer(self) -> bytes:
        """The bootstrap layer's bytes (digest checked against the manifest)."""
        layer = oci.bootstrap_layer_of(self.doc, where=str(self.ref))
        return self.client.fetch_blob(self.repo, layer["digest"])

    def fetch_bootstrap(self, dest: Path, layer: bytes | None = None) -> Path:
        """Unpack the bootstrap (from ``layer``, else downloaded) into ``dest``."""
        data = self.fetch_bootstrap_layer() if layer is None else layer
        where = f"{self.ref}: bootstrap layer {self.layers[-1]['digest']}"
        boot = oci.unpack_bootstrap_layer(data, where=where)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_bytes(boot)
        tmp.replace(dest)
        return dest


def resolve(client: RegistryClient, ref: Reference, platform: str | Platform = "linux/amd64", *,
            nydus: bool | None = None) -> RemoteImage:
    """Fetch ``ref``'s manifest; from an index pick ``platform`` (the Nydus entry when ``nydus`` is
    true, a non-Nydus one when false). Fetches the config too."""
    wanted = platform if isinstance(platform, Platform) else Platform.parse(platform)
    where = str(ref)
    man = client.get_manifest(ref.repository, ref.reference)
    index: Manifest | None = None
    if man.is_index:
        index = man
        idx = man.json()
        if nydus:
            desc = select_nydus_manifest(idx, wanted, where=where)
        else:
            desc = select_manifest(idx, wanted, where=where, skip_nydus=nydus is False)
        man = client.get_manifest(ref.repository, desc["digest"])
    if man.media_type not in mt.MANIFESTS:
        raise FormatError(f"{where}: unsupported manifest media type {man.media_type!r}")
    doc = man.json()
    cfg = doc.get("config") or {}
    if "digest" not in cfg:
        raise FormatError(f"{where}: the manifest has no config")
    config_bytes = client.fetch_blob(ref.repository, cfg["digest"])
    img = RemoteImage(client, ref, man, index, config_bytes)
    if nydus is True and not img.is_nydus:
        raise FormatError(f"{where}: not a Nydus image (no bootstrap layer)")
    if nydus is False and img.is_nydus:
        raise UsageError(f"{where}: already a Nydus image")
    return img


def registry_backend_config(client: RegistryClient, ref: Reference, *, insecure: bool = False,
                            plain_http: bool = False) -> dict[str, Any]:
    """A ``registry`` backend config (nydusd's ``device.backend.config``) for ``ref``'s repository."""
    scheme = "http" if plain_http else client.transport.scheme
    cfg: dict[str, Any] = {"scheme": scheme, "host": ref.api_host, "repo": ref.repository,
                           "skip_verify": bool(insecure), "timeout": 30, "connect_timeout": 10,
                           "retry_limit": 2}
    creds = dockerconfig.lookup(ref.registry)
    if creds is not None:
        cfg["auth"] = creds.to_auth()
    return cfg
