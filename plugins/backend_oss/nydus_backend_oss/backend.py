"""The ``oss`` backend: blobs as objects ``<object_prefix><blob_id>`` in an Alibaba Cloud OSS bucket.

oss2 is imported here, on first use, never by ``hooks.py``. Requests are signed with OSS signature V1
(``Authorization: OSS <id>:<signature>``), as upstream nydusd does. Each thread gets its own
``oss2.Bucket`` over its own HTTP session (connection pool); retries on resets, timeouts and 5xx
answers come from urllib3's ``Retry`` with ``retry_limit`` attempts and a short backoff. What oss shares
with s3 (config, proxy fallback, CA bundle, range checks, upload size check) is in
:class:`nydus_core.object_store.ObjectStoreBackend`.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from typing import Any

from nydus_core.errors import BackendError
from nydus_core.object_store import ObjectStoreBackend
from nydus_core.remote_backend import RETRY_STATUSES, ExactSizeReader

from .errors import map_error
from .sdk import import_oss2
from .settings import OSSSettings

MiB = 1024 * 1024


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


class OSSBackend(ObjectStoreBackend[Any]):  # the handle is an oss2.Bucket (oss2 has no types)
    """Blobs in an OSS bucket: ranged GET, HEAD for the size, multipart upload for large blobs."""

    name = "oss"

    #: Blobs at least this big are uploaded in parts of ``multipart_chunksize`` bytes.
    multipart_threshold = 8 * MiB
    multipart_chunksize = 8 * MiB

    settings_class = OSSSettings
    settings: OSSSettings
    default_verify = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self._local = threading.local()
        self._sessions: list[Any] = []
        self._closed = False

    # -- oss2 objects --------------------------------------------------------------------------

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
        session.session.verify = self.tls_verify()
        session.session.trust_env = False
        with self.handles_lock:
            self._sessions.append(session)
        return session

    def _handle(self, proxied: bool) -> Any:
        return self.bucket(proxied=proxied)

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

    def _is_proxy_failure(self, exc: BaseException) -> bool:
        return _is_proxy_failure(exc)

    def _proxy_failure_reason(self, exc: BaseException) -> str:
        return type(exc).__name__

    def _map_error(self, exc: BaseException, what: str) -> BackendError:
        return map_error(exc, what, endpoint=self.settings.endpoint_url, secrets=self.secrets())

    # -- requests ----------------------------------------------------------------------------

    def _head_size(self, bucket: Any, key: str) -> int:
        return int(bucket.head_object(key).content_length)

    def _get_range(self, bucket: Any, key: str, offset: int, end: int) -> bytes:
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
            data: bytes = result.read()
        finally:
            result.close()
        if result.status == 200:  # the server ignored Range and sent the whole object
            data = data[offset:end + 1]
        return data

    def _upload(self, key: str, source: ExactSizeReader, size: int | None, what: str) -> None:
        """Blobs of ``multipart_threshold`` bytes or more go up in parts; each carries ``Content-MD5``."""
        first = source.read(self.multipart_threshold)  # short only at the end of the stream
        if len(first) < self.multipart_threshold:
            self.log.debug("PUT %s (%d bytes)", self.settings.location(key), len(first))
            self.call(
                what,
                lambda b: b.put_object(key, first, headers={"Content-MD5": content_md5(first)}),
                via_proxy=False,
            )
            return
        self.call(what, lambda b: self._multipart(b, key, first, source), via_proxy=False)

    def _multipart(self, bucket: Any, key: str, first: bytes, stream: ExactSizeReader) -> None:
        oss2 = import_oss2()
        # private-api: oss2's init_multipart_upload parses the answer with a parser that rejects
        # the S3 namespace S3-compatible gateways use (see _find_upload_id)
        resp = bucket._do("POST", bucket.bucket_name, key, params={"uploads": ""})
        upload_id = _find_upload_id(resp.read())
        self.log.debug("multipart upload %s of %s started", upload_id, self.settings.location(key))
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
                self.log.debug("aborting multipart upload %s failed", upload_id, exc_info=True)
            raise

    def _close_handles(self) -> None:
        """Close every thread's HTTP session."""
        with self.handles_lock:
            self._closed = True
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.session.close()


def _chunks(first: bytes, stream: ExactSizeReader, size: int) -> Iterator[bytes]:
    """Yield ``first`` and then the rest of ``stream`` in pieces of ``size`` bytes (the last shorter).

    :meth:`ExactSizeReader.read` joins the stream's short reads: fewer bytes only at its end.
    """
    buf = first
    while True:
        while len(buf) >= size:
            yield buf[:size]
            buf = buf[size:]
        more = stream.read(size - len(buf))
        if not more:
            if buf:
                yield buf
            return
        buf += more

