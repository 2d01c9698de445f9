"""Registry side of a Nydus image: fetch its bootstrap layer, and describe its registry backend.

The bootstrap layer is a gzip'd tar with ``image/image.boot`` (legacy: ``image.boot`` at the root);
it is downloaded with its digest checked and only the bootstrap file is kept.
"""

from __future__ import annotations

import base64
import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nydus_core.errors import IntegrityError, NydusError
from nydus_core.gzipstream import decompress, is_gzip

from .config import SnapshotterConfig

if TYPE_CHECKING:
    from nydus_backend_registry.client import RegistryClient

BOOTSTRAP_NAMES = ("image/image.boot", "image.boot")


@dataclass(frozen=True)
class ImageSource:
    """Where an image's blobs live: registry API host, scheme, repository, credentials (base64)."""

    scheme: str
    host: str
    repo: str
    auth: str | None
    skip_verify: bool = False


def image_source(ref: str, config: SnapshotterConfig) -> ImageSource:
    """Resolve ``ref`` against the config (plain-HTTP hosts, Docker config credentials)."""
    from nydus_backend_registry import dockerconfig
    from nydus_backend_registry.reference import parse_reference

    parsed = parse_reference(ref)
    host = parsed.api_host
    scheme = "http" if parsed.registry in config.plain_http or host in config.plain_http else "https"
    path = Path(config.docker_config) if config.docker_config else None
    creds = dockerconfig.lookup(parsed.registry, path=path)
    auth = None
    if creds is not None:
        auth = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    return ImageSource(scheme, host, parsed.repository, auth, config.skip_ssl_verify)


def _client(src: ImageSource) -> RegistryClient:
    from nydus_backend_registry.client import RegistryClient
    from nydus_backend_registry.config import Credentials
    from nydus_backend_registry.transport import Transport

    creds = Credentials.from_auth(src.auth) if src.auth else None
    transport = Transport(src.host, scheme=src.scheme, credentials=creds, skip_verify=src.skip_verify)
    return RegistryClient(src.host, transport=transport)


def extract_bootstrap(layer: bytes | Path, dest: Path, what: str) -> int:
    """Write the bootstrap inside a bootstrap layer (gzip'd tar) to ``dest``; return its size."""
    try:
        raw = layer.read_bytes() if isinstance(layer, Path) else layer
        data = decompress(raw, name=f"{what}: bootstrap layer") if is_gzip(raw) else raw
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = {m.name.lstrip("./").lstrip("/"): m for m in tar.getmembers()}
            for name in BOOTSTRAP_NAMES:
                m = members.get(name)
                if m is not None and m.isfile():
                    f = tar.extractfile(m)
                    assert f is not None
                    content = f.read()
                    break
            else:
                raise NydusError(f"{what}: no image/image.boot in the bootstrap layer")
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise NydusError(f"{what}: bad bootstrap layer: {exc}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".boot-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, dest)
    return len(content)


def fetch_bootstrap(src: ImageSource, digest: str, dest: Path) -> int:
    """Download the bootstrap layer ``digest`` (verified) and keep its bootstrap at ``dest``."""
    what = f"{src.host}/{src.repo}@{digest}"
    client = _client(src)
    try:
        with tempfile.TemporaryFile() as tmp:
            client.download_blob(src.repo, digest, tmp)
            tmp.seek(0)
            layer = tmp.read()
    finally:
        client.transport.close()
    if not layer:
        raise IntegrityError(f"{what}: empty bootstrap layer")
    return extract_bootstrap(layer, dest, what)
