"""The ``registry`` backend: RAFS data blobs read by digest from an OCI distribution registry.

``HEAD /v2/<repo>/blobs/sha256:<id>`` gives the size; data comes from ranged ``GET`` (``206``; a
``200`` with the whole blob is sliced). A ``307``/``302`` to object storage is followed without
our credentials and cached per blob until it expires or fails, when the registry is asked again.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import parse_qs, urljoin, urlsplit, urlunsplit

from nydus_core.errors import (
    BackendError,
    BlobNotFoundError,
    IntegrityError,
    NydusError,
    TransientBackendError,
)
from nydus_core.interfaces import Backend

from .config import Credentials, RegistryConfig, validate_config

if TYPE_CHECKING:
    import requests

# requests (and the modules built on it: .transport, .errormap) is imported when a backend is made,
# not when the plugin registers this class: every command that loads the plugins (nydus-image,
# nydusd, nydus...) would otherwise pay ~0.15 s for it.

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
REDIRECT_TTL = 300.0  # seconds a redirect is reused when its URL carries no expiry of its own
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
WRITE_CHUNK = 8 << 20  # bytes per PATCH when pushing a large blob


class _CountingReader:
    """Replays ``head`` then reads the rest of ``stream`` (for chunked uploads)."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                out, self._head = self._head + self._stream.read(), b""
                return out
            out, self._head = self._head[:n], self._head[n:]
            if len(out) < n:
                out += self._stream.read(n - len(out))
            return out
        return self._stream.read(n)


def blob_digest(blob_id: str) -> str:
    """Return ``sha256:<hex>`` for a blob id given as 64 hex chars or already prefixed."""
    hexpart = blob_id[7:] if blob_id.startswith("sha256:") else blob_id
    if not _HEX64.match(hexpart):
        raise BlobNotFoundError(f"invalid blob id {blob_id!r}: expected 64 lower-case hex digits")
    return "sha256:" + hexpart


def redirect_expiry(url: str, now_wall: float, now_mono: float) -> float:
    """Monotonic time at which a redirect URL stops being reused (from S3/OSS signature params)."""
    q = {k.lower(): v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    ttl = REDIRECT_TTL
    try:
        if "expires" in q:  # OSS / S3 v2: absolute epoch seconds
            ttl = float(q["expires"]) - now_wall
        elif "x-amz-expires" in q and "x-amz-date" in q:
            signed = time.mktime(time.strptime(q["x-amz-date"], "%Y%m%dT%H%M%SZ")) - time.timezone
            ttl = signed + float(q["x-amz-expires"]) - now_wall
    except (ValueError, OverflowError):
        ttl = REDIRECT_TTL
    ttl = min(ttl, REDIRECT_TTL) - 5.0  # stop reusing a little before the signature dies
    return now_mono + max(ttl, 0.0)


class RegistryBackend(Backend):
    """Reads blobs from ``<scheme>://<host>/v2/<repo>/blobs/<digest>``; thread-safe."""

    name = "registry"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.cfg = RegistryConfig.from_mapping(config)
        cfg = self.cfg
        from .transport import Transport

        self.transport = Transport(
            cfg.host, scheme=cfg.scheme, credentials=cfg.credentials, registry_token=cfg.registry_token,
            skip_verify=cfg.skip_verify, ca_cert_files=cfg.ca_cert_files, timeout=cfg.timeout,
            connect_timeout=cfg.connect_timeout, retry_limit=cfg.retry_limit, proxy=cfg.proxy,
        )
        self.scopes = (f"repository:{cfg.repo}:pull",)
        self._sizes: dict[str, int] = {}
        self._redirects: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.redirect_hits = 0

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check the config (upstream keys and defaults); ConfigError names the bad key."""
        return validate_config(config)

    # -- helpers ------------------------------------------------------------------------------

    def _what(self, digest: str) -> str:
        return f"registry {self.cfg.host}: blob {digest} in {self.cfg.repo}"

    def _blob_path(self, digest: str) -> str:
        return f"/v2/{self.cfg.repo}/blobs/{digest}"

    def _rewrite(self, location: str, base: str) -> str:
        url = urljoin(base, location)
        parts = urlsplit(url)
        scheme = self.cfg.blob_url_scheme or parts.scheme
        netloc = self.cfg.blob_redirected_host or parts.netloc
        return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))

    def _cached_redirect(self, digest: str) -> str | None:
        with self._lock:
            entry = self._redirects.get(digest)
            if entry is None:
                return None
            if time.monotonic() >= entry[1]:
                del self._redirects[digest]
                log.debug("redirect for %s expired", digest)
                return None
            return entry[0]

    def _drop_redirect(self, digest: str) -> None:
        with self._lock:
            self._redirects.pop(digest, None)

    def update_auth(self, auth: str | None) -> None:
        """Replace the credentials (``PUT /api/v1/config {"registry_auth": ...}``): base64 user:pass."""
        creds = Credentials.from_auth(auth, key="registry_auth") if auth else None
        self.transport.auth.set_credentials(creds)

    # -- size / exists ------------------------------------------------------------------------

    def size(self, blob_id: str) -> int:
        """Return the blob's size from ``HEAD`` (cached: blobs are immutable)."""
        digest = blob_digest(blob_id)
        with self._lock:
            if digest in self._sizes:
                return self._sizes[digest]
        what = self._what(digest)
        resp = self.transport.request("HEAD", self._blob_path(digest), what=what, scopes=self.scopes)
        if resp.status_code != 200:
            raise self.transport.error_for(resp, what)
        length = resp.headers.get("Content-Length")
        resp.close()
        if length is None or not length.isdigit():
            raise BackendError(f"{what}: {BackendError.kind}: HEAD answer has no Content-Length")
        size = int(length)
        with self._lock:
            self._sizes[digest] = size
        return size

    # -- reads --------------------------------------------------------------------------------

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset`` (fewer at the blob's end, ``b""`` past it)."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be non-negative")
        digest = blob_digest(blob_id)
        if length == 0:
            return b""
        with self._lock:
            known = self._sizes.get(digest)
        if known is not None:
            if offset >= known:
                return b""
            length = min(length, known - offset)
        return self.transport.retrying(lambda: self._read_once(digest, offset, length))

    def _read_once(self, digest: str, offset: int, length: int) -> bytes:
        from .errormap import IncompleteBodyError

        what = self._what(digest)
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        location = self._cached_redirect(digest)
        if location is not None:
            try:
                data = self._get_range(location, digest, headers, offset, length, what, auth=False)
            except IncompleteBodyError:
                raise
            except NydusError as exc:
                log.info("cached redirect for %s failed (%s); asking the registry again", digest, exc)
                self._drop_redirect(digest)
            else:
                if data is not None:
                    self.redirect_hits += 1
                    return data
                self._drop_redirect(digest)
        resp = self.transport.request("GET", self._blob_path(digest), what=what, scopes=self.scopes,
                                      headers=headers, allow_redirects=False, stream=True)
        if resp.status_code in _REDIRECT_STATUSES and resp.headers.get("Location"):
            target = self._rewrite(resp.headers["Location"], resp.url)
            resp.close()
            with self._lock:
                self._redirects[digest] = (target, redirect_expiry(target, time.time(), time.monotonic()))
            try:
                data = self._get_range(target, digest, headers, offset, length, what, auth=False)
            except NydusError:
                self._drop_redirect(digest)
                raise
            if data is None:
                self._drop_redirect(digest)
                raise BackendError(f"{what}: {BackendError.kind}: redirected URL refused the range request")
            return data
        return self._take(resp, digest, offset, length, what)

    def _get_range(self, url: str, digest: str, headers: dict[str, str], offset: int, length: int,
                   what: str, *, auth: bool) -> bytes | None:
        resp = self.transport.request("GET", url, what=what + " (redirected)", headers=headers, auth=auth,
                                      stream=True)
        if resp.status_code in (200, 206, 416):
            return self._take(resp, digest, offset, length, what)
        err = self.transport.error_for(resp, what + " (redirected)")
        if isinstance(err, TransientBackendError | BlobNotFoundError) or resp.status_code in (401, 403):
            raise err
        return None

    def _take(self, resp: requests.Response, digest: str, offset: int, length: int, what: str) -> bytes:
        import requests

        from .errormap import IncompleteBodyError, map_exception

        status = resp.status_code
        if status == 416:  # at or past the end (distribution sends a bogus Content-Length: don't read)
            resp.close()
            return b""
        if status not in (200, 206):
            raise self.transport.error_for(resp, what)
        try:
            body = resp.content
        except (requests.RequestException, OSError) as exc:
            raise map_exception(exc, what, self.transport.redact) from None
        if status == 200:  # the whole blob: remember its size, slice the range
            with self._lock:
                self._sizes.setdefault(digest, len(body))
            return body[offset:offset + length]
        expected = length
        crange = resp.headers.get("Content-Range", "")
        m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", crange)
        if m:
            start, end = int(m.group(1)), int(m.group(2))
            if start != offset:
                raise BackendError(f"{what}: {BackendError.kind}: asked for offset {offset}, "
                                   f"got Content-Range {crange}")
            expected = min(length, end - start + 1)
        if len(body) < expected:
            raise IncompleteBodyError(f"{what}: {TransientBackendError.kind}: short read "
                                      f"({len(body)} of {expected} bytes)")
        return body[:length]

    def readv(self, blob_id: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Read several ranges, merging adjacent/overlapping ones into single requests."""
        if not ranges:
            return []
        order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
        out: list[bytes] = [b""] * len(ranges)
        group: list[int] = []
        g_start = g_end = 0

        def flush() -> None:
            if not group:
                return
            data = self.read(blob_id, g_start, g_end - g_start)
            for i in group:
                off, ln = ranges[i]
                out[i] = data[off - g_start: off - g_start + ln]

        for i in order:
            off, ln = ranges[i]
            if group and off <= g_end:
                g_end = max(g_end, off + ln)
                group.append(i)
            else:
                flush()
                group, g_start, g_end = [i], off, off + ln
        flush()
        return out

    # -- write --------------------------------------------------------------------------------

    def write(self, blob_id: str, stream: BinaryIO, size: int | None = None) -> None:
        """Push a blob. Its id must be the sha256 of its bytes (the registry checks it too).

        A blob up to :data:`WRITE_CHUNK` bytes goes in one ``PUT``; a larger one in ``PATCH`` chunks
        of that size. A stream shorter or longer than ``size`` raises IntegrityError and nothing is
        committed.
        """
        from .client import RegistryClient

        digest = blob_digest(blob_id)
        what = self._what(digest)
        client = RegistryClient(self.cfg.host, transport=self.transport)
        head = stream.read(WRITE_CHUNK + 1)
        if len(head) <= WRITE_CHUNK:
            if size is not None and len(head) != size:
                raise IntegrityError(f"{what}: the stream gave {len(head)} bytes, expected {size}")
            got = "sha256:" + hashlib.sha256(head).hexdigest()
            if got != digest:
                raise IntegrityError(f"{what}: the data has digest {got}")
            client.push_blob(self.cfg.repo, head, digest=digest, skip_existing=False)
        else:
            counted = _CountingReader(head, stream)
            client.push_blob(
                self.cfg.repo,
                counted,  # type: ignore[arg-type]  # chunked, digest given: push_blob only reads it
                digest=digest, chunk_size=WRITE_CHUNK, skip_existing=False, expected_size=size)
        with self._lock:
            self._sizes.pop(digest, None)

    def close(self) -> None:
        """Close connections and stop the proxy health checker."""
        self.transport.close()

    def __repr__(self) -> str:
        return f"RegistryBackend({self.cfg!r})"

