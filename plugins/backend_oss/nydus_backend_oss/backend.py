"""The ``oss`` backend: blobs as objects ``<object_prefix><blob_id>`` in an Alibaba Cloud OSS bucket.

oss2 is imported here, on first use, never by ``hooks.py``. Requests are signed with OSS signature V1
(``Authorization: OSS <id>:<signature>``), as upstream nydusd does. Each thread gets its own
``oss2.Bucket`` over its own HTTP session (connection pool); retries on resets, timeouts and 5xx
answers come from urllib3's ``Retry`` with ``retry_limit`` attempts and a short backoff.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO, TypeVar

from nydus_core.errors import BackendError, NydusError
from nydus_core.interfaces import Backend
from nydus_core.remote_backend import ExactSizeReader, ProxyRoute, ca_bundle, object_key, redact

from .errors import map_error
from .sdk import import_oss2
from .settings import OSSSettings, parse_settings

log = logging.getLogger("nydus.backend.oss")

T = TypeVar("T")
MiB = 1024 * 1024
RETRY_STATUSES = frozenset({500, 502, 503, 504})


def content_md5(data: bytes) -> str:
    """Return the base64 MD5 of ``data`` for the ``Content-MD5`` header (the server checks it)."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _is_proxy_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the proxy failed: unreachable, timed out or a 5xx answer."""
    oe = import_oss2().exceptions
    if isinstance(exc, oe.RequestError):
        return True
    return isinstance(exc, oe.OssError) and int(getattr(exc, "status", 0) or 0) >= 500


def _find_upload_id(body: bytes) -> str:
    """Return ``UploadId`` from an InitiateMultipartUploadResult, with or without an XML namespace.

    OSS answers without a namespace; S3-compatible gateways (and moto) use S3's, which oss2's own
    parser rejects.
    """
    root = ElementTree.fromstring(body)
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "UploadId" and element.text:
            return element.text
    raise BackendError("oss backend: the server's InitiateMultipartUpload answer has no UploadId")


class OSSBackend(Backend):
    """Blobs in an OSS bucket: ranged GET, HEAD for the size, multipart upload for large blobs."""

    name = "oss"

    #: Blobs at least this big are uploaded in parts of ``multipart_chunksize`` bytes.
    multipart_threshold = 8 * MiB
    multipart_chunksize = 8 * MiB

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.settings: OSSSettings = parse_settings(config)
        super().__init__(self.settings.as_dict())
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[Any] = []
        self._ca_bundle: str | None = None
        self._closed = False
        self._route = ProxyRoute(self.settings.proxy, timeout=self.settings.connect_timeout)

    def __repr__(self) -> str:
        s = self.settings
        return f"<OSSBackend {s.location(s.object_prefix)} endpoint={s.endpoint_url}>"

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check an ``oss`` config (ConfigError naming the key) and return it with defaults filled in."""
        return parse_settings(config).as_dict()

    # -- oss2 objects --------------------------------------------------------------------------

    def _secrets(self) -> tuple[str, ...]:
        return (self.settings.access_key_secret,)

    def _verify(self) -> bool | str:
        s = self.settings
        if s.skip_verify:
            return False
        if not s.ca_cert_files:
            return True
        if len(s.ca_cert_files) == 1:
            return s.ca_cert_files[0]
        with self._lock:
            if self._ca_bundle is None:
                self._ca_bundle = ca_bundle(s.ca_cert_files)
            return self._ca_bundle

    def make_auth(self) -> Any:
        """Return the oss2 signer for this config: V1 ``oss2.Auth``, or anonymous without keys."""
        oss2 = import_oss2()
        s = self.settings
        if not s.access_key_id:
            return oss2.AnonymousAuth()
        return oss2.Auth(s.access_key_id, s.access_key_secret)

    def _session(self, retries: int) -> Any:
        import requests.adapters
        from urllib3.util.retry import Retry

        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            other=retries,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "HEAD", "PUT", "DELETE"}),
            backoff_factor=0.1,
            backoff_max=2.0,
            respect_retry_after_header=False,
            raise_on_status=False,
        )
        session = import_oss2().Session(adapter=requests.adapters.HTTPAdapter(max_retries=retry))
        session.session.verify = self._verify()
        session.session.trust_env = False
        with self._lock:
            self._sessions.append(session)
        return session

    def bucket(self, *, proxied: bool = False) -> Any:
        """Return this thread's ``oss2.Bucket`` (direct, or through the Dragonfly proxy)."""
        if self._closed:
            raise BackendError("oss backend: used after close()")
        attr = "proxied" if proxied else "direct"
        bucket = getattr(self._local, attr, None)
        if bucket is None:
            oss2 = import_oss2()
            s = self.settings
            endpoint = s.endpoint_url
            retries = s.retry_limit
            proxies = None
            if proxied:
                proxies = {"http": s.proxy.url, "https": s.proxy.url}
                if s.proxy.use_http:
                    endpoint = "http://" + s.endpoint
                if s.proxy.fallback:
                    retries = 0  # a failing proxy falls back at once
            bucket = oss2.Bucket(
                self.make_auth(),
                endpoint,
                s.bucket_name,
                session=self._session(retries),
                connect_timeout=(s.connect_timeout, s.timeout),
                enable_crc=False,  # Content-MD5 is sent instead: the server checks it
                proxies=proxies,
                app_name="nydus-py",
            )
            setattr(self._local, attr, bucket)
        return bucket

    def _call(self, what: str, op: Callable[[Any], T], *, via_proxy: bool = True) -> T:
        """Run ``op(bucket)`` through the proxy when it is healthy, else directly; map SDK errors."""
        try:
            if via_proxy and self._route.use_proxy():
                try:
                    return op(self.bucket(proxied=True))
                except Exception as exc:
                    if not self.settings.proxy.fallback or not _is_proxy_failure(exc):
                        raise
                    self._route.mark_down(redact(type(exc).__name__, self._secrets()))
            return op(self.bucket())
        except NydusError:
            raise
        except Exception as exc:
            raise map_error(
                exc, what, endpoint=self.settings.endpoint_url, secrets=self._secrets()
            ) from exc

    def _key(self, blob_id: str) -> str:
        return object_key(self.settings.object_prefix, blob_id, "oss")

    # -- Backend API -------------------------------------------------------------------------

    def size(self, blob_id: str) -> int:
        """Return the blob's size from a HEAD request."""
        key = self._key(blob_id)
        log.debug("HEAD %s", self.settings.location(key))
        head = self._call(f"HEAD {self.settings.location(key)}", lambda b: b.head_object(key))
        return int(head.content_length)

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset`` with one ranged GET (fewer at the end, none past it)."""
        if offset < 0 or length < 0:
            raise ValueError(f"negative offset or length ({offset}, {length})")
        if length == 0:
            return b""
        key = self._key(blob_id)
        end = offset + length - 1
        log.debug("GET %s bytes=%d-%d", self.settings.location(key), offset, end)

        def op(bucket: Any) -> bytes:
            oe = import_oss2().exceptions
            try:
                # "standard" makes OSS answer 416 for a range past the end, not the whole object.
                result = bucket.get_object(
                    key, byte_range=(offset, end), headers={"x-oss-range-behavior": "standard"}
                )
            except oe.OssError as exc:
                if getattr(exc, "status", 0) == 416 or getattr(exc, "code", "") == "InvalidRange":
                    return b""
                raise
            try:
                data = result.read()
            finally:
                result.close()
            if result.status == 200:  # the server ignored Range and sent the whole object
                data = data[offset:end + 1]
            return data

        return self._call(f"GET {self.settings.location(key)} (bytes={offset}-{end})", op)

    def write(self, blob_id: str, stream: BinaryIO, size: int | None = None) -> None:
        """Upload ``stream`` as the blob; blobs of ``multipart_threshold`` bytes or more go in parts.

        With ``size``, a stream that holds a different number of bytes fails the upload (a multipart
        upload is aborted) and nothing is stored. Every request carries ``Content-MD5``.
        """
        key = self._key(blob_id)
        if isinstance(stream, bytes | bytearray | memoryview):
            stream = io.BytesIO(bytes(stream))
        where = f"PUT {self.settings.location(key)}"
        stream = ExactSizeReader(stream, size, f"oss backend: {where}")
        first = _read_full(stream, self.multipart_threshold)
        if len(first) < self.multipart_threshold:
            log.debug("PUT %s (%d bytes)", self.settings.location(key), len(first))
            self._call(
                where,
                lambda b: b.put_object(key, first, headers={"Content-MD5": content_md5(first)}),
                via_proxy=False,
            )
            return
        self._call(where, lambda b: self._multipart(b, key, first, stream), via_proxy=False)

    def _multipart(self, bucket: Any, key: str, first: bytes, stream: BinaryIO) -> None:
        oss2 = import_oss2()
        resp = bucket._do("POST", bucket.bucket_name, key, params={"uploads": ""})
        upload_id = _find_upload_id(resp.read())
        log.debug("multipart upload %s of %s started", upload_id, self.settings.location(key))
        parts = []
        try:
            for number, part in enumerate(_chunks(first, stream, self.multipart_chunksize), start=1):
                headers = {"Content-MD5": content_md5(part)}
                result = bucket.upload_part(key, upload_id, number, part, headers=headers)
                parts.append(oss2.models.PartInfo(number, result.etag, size=len(part)))
            bucket.complete_multipart_upload(key, upload_id, parts)
        except BaseException:
            try:
                bucket.abort_multipart_upload(key, upload_id)
            except Exception:  # the original error matters more
                log.debug("aborting multipart upload %s failed", upload_id, exc_info=True)
            raise

    def close(self) -> None:
        """Close every thread's HTTP session and remove the temporary CA bundle."""
        with self._lock:
            self._closed = True
            sessions, self._sessions = self._sessions, []
            bundle, self._ca_bundle = self._ca_bundle, None
        for session in sessions:
            session.session.close()
        if bundle:
            try:
                os.unlink(bundle)
            except OSError:
                pass


def _chunks(first: bytes, stream: BinaryIO, size: int) -> Iterator[bytes]:
    """Yield ``first`` and then the rest of ``stream`` in pieces of ``size`` bytes (the last shorter)."""
    buf = first
    while True:
        while len(buf) >= size:
            yield buf[:size]
            buf = buf[size:]
        more = _read_full(stream, size - len(buf))
        if not more:
            if buf:
                yield buf
            return
        buf += more


def _read_full(stream: BinaryIO, size: int) -> bytes:
    """Read up to ``size`` bytes, looping over short reads; fewer only at the end of ``stream``."""
    chunks = []
    left = size
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
