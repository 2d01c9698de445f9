"""A registry client for the converter and the snapshotter (OCI distribution API v2).

Manifests and indexes (Docker v2 and OCI media types), tags, blobs (HEAD, streamed and
digest-verified GET, ranged GET), blob upload (monolithic ``PUT`` or chunked ``PATCH``+``PUT``),
cross-repository mount and manifest ``PUT``. It shares the backend's auth, retry, TLS and proxy
machinery (:class:`~.transport.Transport`). Credentials come from the arguments, else Docker's
``config.json`` (``auths``, ``credHelpers``, ``credsStore``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests

from nydus_core.errors import BackendError, IntegrityError, NydusError, UsageError

from . import dockerconfig, mediatypes
from .config import Credentials, ProxyConfig
from .errormap import map_exception
from .reference import Reference, check_digest, parse_reference
from .transport import Transport

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 1 << 20
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    """Return ``algo:hex`` of ``data``."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def _hasher(digest: str) -> Any:
    algo = digest.split(":", 1)[0]
    try:
        return hashlib.new(algo)
    except ValueError:
        raise UsageError(f"unsupported digest algorithm in {digest}") from None


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as the registry served it (bytes kept exactly, for digests)."""

    media_type: str
    digest: str
    content: bytes

    def json(self) -> dict[str, Any]:
        """The parsed JSON document."""
        doc: dict[str, Any] = json.loads(self.content)
        return doc

    @property
    def is_index(self) -> bool:
        """Whether this is an OCI index or a Docker manifest list."""
        return self.media_type in mediatypes.INDEXES

    @property
    def size(self) -> int:
        """Size in bytes (for descriptors)."""
        return len(self.content)


class BlobReader:
    """A streamed blob: iterate over chunks; the digest and size are checked at the end.

    Use as a context manager (closes the connection). Iterating to the end raises
    :class:`~nydus_core.errors.IntegrityError` if the bytes do not match the digest.
    """

    def __init__(self, resp: requests.Response, digest: str, what: str, transport: Transport,
                 chunk_size: int = DEFAULT_CHUNK, verify: bool = True) -> None:
        self._resp = resp
        self.digest = digest
        self.what = what
        self._transport = transport
        self.chunk_size = chunk_size
        self.verify = verify
        length = resp.headers.get("Content-Length")
        self.size: int | None = int(length) if length and length.isdigit() else None
        self.bytes_read = 0

    def __iter__(self) -> Iterator[bytes]:
        h = _hasher(self.digest) if self.verify else None
        try:
            for chunk in self._resp.iter_content(self.chunk_size):
                if h is not None:
                    h.update(chunk)
                self.bytes_read += len(chunk)
                yield chunk
        except (requests.RequestException, OSError) as exc:
            raise map_exception(exc, self.what, self._transport.redact) from None
        finally:
            self._resp.close()
        if self.size is not None and self.bytes_read != self.size:
            raise IntegrityError(f"{self.what}: got {self.bytes_read} bytes, expected {self.size}")
        if h is not None:
            got = f"{self.digest.split(':', 1)[0]}:{h.hexdigest()}"
            if got != self.digest:
                raise IntegrityError(f"{self.what}: content digest is {got}")

    def read_all(self) -> bytes:
        """Read the whole blob into memory (verified)."""
        return b"".join(self)

    def close(self) -> None:
        """Close the connection."""
        self._resp.close()

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RegistryClient:
    """Talks to one registry host (``host[:port]``). Thread-safe.

    ``plain_http`` uses HTTP; ``insecure`` skips TLS verification and allows falling back to HTTP
    (nydusify's ``--*-insecure``). Credentials: ``credentials``, or ``auth`` (base64 user:pass), or
    ``registry_token``, else Docker's config file unless ``docker_config=False`` (a path selects a
    file). ``transport`` shares an existing connection setup (the backend's).
    """

    def __init__(
        self,
        host: str,
        *,
        plain_http: bool = False,
        insecure: bool = False,
        credentials: Credentials | None = None,
        auth: str | None = None,
        registry_token: str = "",
        docker_config: bool | str | os.PathLike[str] = True,
        ca_cert_files: Iterable[str] = (),
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        retry_limit: int = 3,
        proxy: ProxyConfig | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.host = host
        if transport is not None:
            self.transport = transport
            self._owns_transport = False
            return
        if credentials is None and auth:
            credentials = Credentials.from_auth(auth)
        if credentials is None and not registry_token and docker_config is not False:
            path = None if docker_config is True else Path(docker_config)
            credentials = dockerconfig.lookup(host, path=path)
        self.transport = Transport(
            host, scheme="http" if plain_http else ("" if insecure else "https"), credentials=credentials,
            registry_token=registry_token, skip_verify=insecure, ca_cert_files=ca_cert_files,
            timeout=timeout, connect_timeout=connect_timeout, retry_limit=retry_limit, proxy=proxy,
        )
        self._owns_transport = True

    @classmethod
    def for_reference(cls, ref: str | Reference, **kwargs: Any) -> tuple[RegistryClient, Reference]:
        """Return a client for the reference's registry and the parsed reference."""
        parsed = parse_reference(ref) if isinstance(ref, str) else ref
        if "docker_config" not in kwargs and parsed.api_host != parsed.registry:
            creds = dockerconfig.lookup(parsed.registry)
            if creds is not None and "credentials" not in kwargs and "auth" not in kwargs:
                kwargs["credentials"] = creds
        return cls(parsed.api_host, **kwargs), parsed

    def close(self) -> None:
        """Close connections (unless the transport is shared)."""
        if self._owns_transport:
            self.transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _pull(repo: str) -> tuple[str, ...]:
        return (f"repository:{repo}:pull",)

    @staticmethod
    def _push(repo: str) -> tuple[str, ...]:
        return (f"repository:{repo}:pull,push",)

    def _what(self, repo: str, thing: str) -> str:
        return f"registry {self.host}: {thing} in {repo}"

    def _req(self, method: str, path: str, *, what: str, scopes: Iterable[str],
             **kw: Any) -> requests.Response:
        return self.transport.request(method, path, what=what, scopes=scopes, **kw)

    # -- API ----------------------------------------------------------------------------------

    def ping(self) -> None:
        """Check that ``/v2/`` answers (and that authentication works, if asked)."""
        what = f"registry {self.host}: API check"
        resp = self._req("GET", "/v2/", what=what, scopes=())
        if resp.status_code != 200:
            raise self.transport.error_for(resp, what)
        resp.close()

    def get_manifest(self, repo: str, reference: str, *,
                     accept: str = mediatypes.MANIFEST_ACCEPT) -> Manifest:
        """Fetch a manifest or index by tag or digest; the digest is checked when known."""
        what = self._what(repo, f"manifest {reference}")
        resp = self._req("GET", f"/v2/{repo}/manifests/{reference}", what=what, scopes=self._pull(repo),
                         headers={"Accept": accept})
        if resp.status_code != 200:
            raise self.transport.error_for(resp, what)
        try:
            content = resp.content
        except (requests.RequestException, OSError) as exc:
            raise map_exception(exc, what, self.transport.redact) from None
        media_type = resp.headers.get("Content-Type", "").split(";", 1)[0].strip()
        if not media_type or media_type in ("application/json", "text/plain"):
            try:
                media_type = json.loads(content).get("mediaType") or media_type
            except (ValueError, AttributeError):
                pass
        expected = reference if ":" in reference and "@" not in reference and _is_digest(reference) else None
        expected = expected or resp.headers.get("Docker-Content-Digest")
        algo = expected.split(":", 1)[0] if expected else "sha256"
        digest = compute_digest(content, algo if algo in hashlib.algorithms_available else "sha256")
        if expected and digest != expected:
            raise IntegrityError(f"{what}: content digest is {digest}, expected {expected}")
        return Manifest(media_type, digest, content)

    def head_manifest(self, repo: str, reference: str, *, accept: str = mediatypes.MANIFEST_ACCEPT
                      ) -> tuple[str, str, int] | None:
        """Return ``(digest, media_type, size)`` of a manifest, or ``None`` if it does not exist."""
        what = self._what(repo, f"manifest {reference}")
        resp = self._req("HEAD", f"/v2/{repo}/manifests/{reference}", what=what, scopes=self._pull(repo),
                         headers={"Accept": accept})
        if resp.status_code == 404:
            resp.close()
            return None
        if resp.status_code != 200:
            raise self.transport.error_for(resp, what)
        resp.close()
        return (resp.headers.get("Docker-Content-Digest", ""),
                resp.headers.get("Content-Type", "").split(";", 1)[0].strip(),
                int(resp.headers.get("Content-Length", "0") or 0))

    def put_manifest(self, repo: str, reference: str, content: bytes, media_type: str) -> str:
        """Upload a manifest or index under a tag (or its digest); return its digest."""
        what = self._what(repo, f"manifest {reference}")
        resp = self._req("PUT", f"/v2/{repo}/manifests/{reference}", what=what, scopes=self._push(repo),
                         headers={"Content-Type": media_type}, data=content)
        if resp.status_code not in (200, 201, 202):
            raise self.transport.error_for(resp, what)
        resp.close()
        digest = compute_digest(content)
        served = resp.headers.get("Docker-Content-Digest")
        if served and served.startswith("sha256:") and served != digest:
            raise IntegrityError(f"{what}: registry stored digest {served}, we computed {digest}")
        return digest

    def list_tags(self, repo: str, *, page_size: int | None = None) -> list[str]:
        """Return every tag of ``repo`` (following ``Link`` pagination)."""
        what = self._what(repo, "tag list")
        path = f"/v2/{repo}/tags/list" + (f"?n={page_size}" if page_size else "")
        tags: list[str] = []
        for _ in range(10000):
            resp = self._req("GET", path, what=what, scopes=self._pull(repo))
            if resp.status_code != 200:
                raise self.transport.error_for(resp, what)
            try:
                tags.extend(resp.json().get("tags") or [])
            except ValueError:
                raise BackendError(f"{what}: {BackendError.kind}: the answer is not JSON") from None
            m = _LINK_NEXT.search(resp.headers.get("Link", ""))
            if not m:
                break
            path = m.group(1)
        return tags

    # -- blobs: read --------------------------------------------------------------------------

    def blob_size(self, repo: str, digest: str) -> int | None:
        """Return the blob's size, or ``None`` if the repository has no such blob."""
        what = self._what(repo, f"blob {digest}")
        resp = self._req("HEAD", f"/v2/{repo}/blobs/{digest}", what=what, scopes=self._pull(repo))
        resp.close()
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self.transport.error_for(resp, what)
        return int(resp.headers.get("Content-Length", "0") or 0)

    def blob_exists(self, repo: str, digest: str) -> bool:
        """Whether the repository has the blob."""
        return self.blob_size(repo, digest) is not None

    def open_blob(self, repo: str, digest: str, *, chunk_size: int = DEFAULT_CHUNK) -> BlobReader:
        """Start a streamed, digest-verified download of a whole blob."""
        check_digest(digest)
        what = self._what(repo, f"blob {digest}")
        resp = self._req("GET", f"/v2/{repo}/blobs/{digest}", what=what, scopes=self._pull(repo), stream=True)
        if resp.status_code != 200:
            raise self.transport.error_for(resp, what)
        return BlobReader(resp, digest, what, self.transport, chunk_size)

    def fetch_blob(self, repo: str, digest: str) -> bytes:
        """Download a whole blob into memory (verified)."""
        with self.open_blob(repo, digest) as reader:
            return reader.read_all()

    def download_blob(self, repo: str, digest: str, dest: BinaryIO) -> int:
        """Stream a blob into ``dest`` (verified at the end); return the byte count."""
        with self.open_blob(repo, digest) as reader:
            for chunk in reader:
                dest.write(chunk)
            return reader.bytes_read

    def read_blob_range(self, repo: str, digest: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes of a blob at ``offset`` (not verified: a part of the blob)."""
        if length <= 0:
            return b""
        what = self._what(repo, f"blob {digest}")
        resp = self._req("GET", f"/v2/{repo}/blobs/{digest}", what=what, scopes=self._pull(repo),
                         headers={"Range": f"bytes={offset}-{offset + length - 1}"}, stream=True)
        if resp.status_code == 416:
            resp.close()
            return b""
        if resp.status_code not in (200, 206):
            raise self.transport.error_for(resp, what)
        try:
            body = resp.content
        except (requests.RequestException, OSError) as exc:
            raise map_exception(exc, what, self.transport.redact) from None
        return body[offset:offset + length] if resp.status_code == 200 else body[:length]

    # -- blobs: write -------------------------------------------------------------------------

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; return ``True`` if mounted, ``False`` if it must be uploaded."""
        what = self._what(repo, f"blob {digest} mounted from {from_repo}")
        query = urlencode({"mount": digest, "from": from_repo})
        scopes = (*self._push(repo), f"repository:{from_repo}:pull")
        resp = self._req("POST", f"/v2/{repo}/blobs/uploads/?{query}", what=what, scopes=scopes)
        if resp.status_code == 201:
            resp.close()
            return True
        if resp.status_code == 202:  # the registry started an ordinary upload instead: cancel it
            location = resp.headers.get("Location")
            resp.close()
            if location:
                try:
                    self._req("DELETE", location, what=what, scopes=scopes).close()
                except NydusError:
                    pass
            return False
        raise self.transport.error_for(resp, what)

    def _start_upload(self, repo: str, what: str) -> str:
        resp = self._req("POST", f"/v2/{repo}/blobs/uploads/", what=what, scopes=self._push(repo))
        if resp.status_code != 202 or not resp.headers.get("Location"):
            raise self.transport.error_for(resp, what)
        resp.close()
        return urljoin(resp.url, resp.headers["Location"])

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        parts = urlsplit(location)
        query = parts.query + ("&" if parts.query else "") + urlencode({"digest": digest})
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))

    def push_blob(
        self,
        repo: str,
        data: bytes | BinaryIO | str | os.PathLike[str],
        *,
        digest: str | None = None,
        size: int | None = None,
        chunk_size: int | None = None,
        mount_from: Iterable[str] = (),
        skip_existing: bool = True,
        expected_size: int | None = None,
    ) -> str:
        """Upload a blob; return its digest.

        ``data`` is bytes, a binary file object or a file path. Without ``chunk_size`` the upload is
        one monolithic ``PUT``; with it, ``PATCH`` requests of that size and a closing ``PUT``.
        An existing blob is skipped; ``mount_from`` repositories are tried first. With
        ``expected_size``, a chunked upload whose stream length differs is not committed.
        """
        own: BinaryIO | None = None
        if isinstance(data, str | os.PathLike):
            own = open(data, "rb")  # noqa: SIM115 - closed below
            stream: BinaryIO = own
            size = os.fstat(own.fileno()).st_size if size is None else size
        elif isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            digest = digest or compute_digest(raw)
            size = len(raw)
            stream = io.BytesIO(raw)
        else:
            stream = data
        try:
            if digest is None:
                digest = self._digest_stream(stream)
            check_digest(digest)
            what = self._what(repo, f"blob {digest}")
            if skip_existing and self.blob_exists(repo, digest):
                log.debug("%s already exists", what)
                return digest
            for src in mount_from:
                if src != repo and self.mount_blob(repo, digest, src):
                    return digest
            location = self._start_upload(repo, what + " upload")
            if chunk_size:
                self._upload_chunked(location, stream, digest, chunk_size, repo, what, expected_size)
            else:
                self._upload_monolithic(location, stream, digest, size, repo, what)
            return digest
        finally:
            if own is not None:
                own.close()

    def _digest_stream(self, stream: BinaryIO) -> str:
        if not (hasattr(stream, "seekable") and stream.seekable()):
            raise UsageError("push_blob needs the digest for a stream that cannot be rewound")
        start = stream.tell()
        h = hashlib.sha256()
        for chunk in iter(lambda: stream.read(DEFAULT_CHUNK), b""):
            h.update(chunk)
        stream.seek(start)
        return "sha256:" + h.hexdigest()

    def _upload_monolithic(self, location: str, stream: BinaryIO, digest: str, size: int | None, repo: str,
                           what: str) -> None:
        headers = {"Content-Type": "application/octet-stream"}
        if isinstance(stream, io.BytesIO):
            body: Any = stream.getvalue()
        else:
            body = stream
            if size is not None:
                headers["Content-Length"] = str(size)
        rewindable = isinstance(body, bytes)
        resp = self._req("PUT", self._with_digest(location, digest), what=what + " upload",
                         scopes=self._push(repo), headers=headers, data=body, retry=rewindable)
        if resp.status_code not in (201, 204):
            raise self.transport.error_for(resp, what + " upload")
        resp.close()

    def _upload_chunked(self, location: str, stream: BinaryIO, digest: str, chunk_size: int, repo: str,
                        what: str, expected_size: int | None = None) -> None:
        h = _hasher(digest)
        offset = 0
        while True:
            chunk = stream.read(chunk_size)
            if not chunk:
                break
            h.update(chunk)
            end = offset + len(chunk) - 1
            resp = self._req("PATCH", location, what=what + " chunked upload", scopes=self._push(repo),
                             headers={"Content-Type": "application/octet-stream",
                                      "Content-Range": f"{offset}-{end}"}, data=chunk)
            if resp.status_code != 202:
                raise self.transport.error_for(resp, what + f" chunked upload at {offset}")
            resp.close()
            if resp.headers.get("Location"):
                location = urljoin(resp.url, resp.headers["Location"])
            offset = end + 1
        if expected_size is not None and offset != expected_size:
            self._cancel(location, repo, what)
            raise IntegrityError(f"{what}: the stream gave {offset} bytes, expected {expected_size}")
        got = f"{digest.split(':', 1)[0]}:{h.hexdigest()}"
        if got != digest:
            self._cancel(location, repo, what)
            raise IntegrityError(f"{what}: the uploaded data has digest {got}")
        resp = self._req("PUT", self._with_digest(location, digest), what=what + " upload commit",
                         scopes=self._push(repo), headers={"Content-Length": "0"}, data=b"")
        if resp.status_code not in (201, 204):
            raise self.transport.error_for(resp, what + " upload commit")
        resp.close()


    def _cancel(self, location: str, repo: str, what: str) -> None:
        try:
            self._req("DELETE", location, what=what + " upload cancel", scopes=self._push(repo)).close()
        except NydusError:
            pass


def _is_digest(text: str) -> bool:
    try:
        check_digest(text)
    except UsageError:
        return False
    return True
