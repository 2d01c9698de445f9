"""Image references where a bootstrap path is accepted (``nydus ls/cat/mount REF``): the converter
side of the lookup. An argument naming an existing file is a bootstrap; otherwise it is parsed as
``host[:port]/repo[:tag|@sha256:...]``, its bootstrap fetched (digest checked) into a cache
directory, and a nydusd config for the registry backend returned with it.

The core calls :func:`resolve_image_reference` through a hook (proposed:
``nydus_resolve_image(reference, work_dir) -> (bootstrap_path, config_dict) | None``).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nydus_backend_registry.reference import parse_reference

from . import remote


@dataclass
class ResolvedImage:
    """A bootstrap on local disk and the nydusd (v1) config that reads its blobs."""

    reference: str
    bootstrap: Path
    config: dict[str, Any]
    manifest_digest: str


def default_work_dir() -> Path:
    """``$XDG_CACHE_HOME/nydus/images`` (``~/.cache/nydus/images``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nydus" / "images"


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 or host.startswith("[") else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def looks_like_reference(arg: str) -> bool:
    """Whether ``arg`` should be treated as an image reference (it is not an existing file)."""
    return not os.path.exists(arg)


def resolve_image_reference(reference: str, *, work_dir: str | os.PathLike[str] | None = None,
                            platform: str = "linux/amd64", insecure: bool | None = None,
                            plain_http: bool = False) -> ResolvedImage:
    """Fetch the bootstrap of the Nydus image ``reference``; return it with a registry config.

    ``insecure`` defaults to true for loopback registries (as Docker treats 127.0.0.0/8).
    """
    ref = parse_reference(reference)
    if insecure is None:
        insecure = _loopback(ref.api_host)
    client, ref = remote.open_registry(reference, insecure=insecure, plain_http=plain_http)
    with client:
        image = remote.resolve(client, ref, platform, nydus=True)
        root = Path(work_dir) if work_dir is not None else default_work_dir()
        name = image.manifest.digest.replace(":", "-")
        boot = root / name
        if not boot.is_file():
            image.fetch_bootstrap(boot)
        backend = remote.registry_backend_config(client, ref, insecure=insecure, plain_http=plain_http)
    config = {"device": {"backend": {"type": "registry", "config": backend}}, "mode": "direct",
              "digest_validate": True, "enable_xattr": True}
    return ResolvedImage(reference, boot, config, image.manifest.digest)
