"""The ``s3`` backend: blobs as objects ``<object_prefix><blob_id>`` in one S3 (or S3-compatible) bucket.

boto3 is imported here, on first use, never by ``hooks.py``. One boto3 client per route (direct, and
through the Dragonfly proxy when one is configured) is shared by all threads: boto3 clients are
thread-safe, sessions are not, so each client is made from a private session under a lock.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, TypeVar

from nydus_core.errors import NydusError, PermissionDeniedError
from nydus_core.interfaces import Backend
from nydus_core.remote_backend import ExactSizeReader, ProxyRoute, ca_bundle, object_key, redact

from .errors import map_error
from .settings import S3Settings, parse_settings

log = logging.getLogger("nydus.backend.s3")

T = TypeVar("T")

MiB = 1024 * 1024


def _is_proxy_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the proxy (not the object store) failed: unreachable, timed out or 5xx."""
    from botocore import exceptions as be

    if isinstance(exc, be.ConnectionError | be.ReadTimeoutError | be.ConnectionClosedError):
        return True
    if isinstance(exc, be.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return int(status) >= 500
    return False


class S3Backend(Backend):
    """Blobs in an S3 bucket: ranged GET, HEAD for the size, multipart upload for large blobs."""

    name = "s3"

    #: Blobs at least this big are uploaded in parts of ``multipart_chunksize`` bytes.
    multipart_threshold = 8 * MiB
    multipart_chunksize = 8 * MiB
    upload_concurrency = 4

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.settings: S3Settings = parse_settings(config)
        super().__init__(self.settings.as_dict())
        self._lock = threading.Lock()
        self._clients: dict[bool, Any] = {}
        self._ca_bundle: str | None = None
        self._route = ProxyRoute(self.settings.proxy, timeout=self.settings.connect_timeout)

    def __repr__(self) -> str:
        s = self.settings
        return f"<S3Backend {s.location(s.object_prefix)} endpoint={s.endpoint_url or 'aws'}>"

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check an ``s3`` config (ConfigError naming the key) and return it with defaults filled in."""
        return parse_settings(config).as_dict()

    # -- clients -------------------------------------------------------------------------------

    def _secrets(self) -> tuple[str, ...]:
        return (self.settings.access_key_secret,)

    def _verify(self) -> bool | str | None:
        s = self.settings
        if s.skip_verify:
            return False
        if not s.ca_cert_files:
            return None
        if len(s.ca_cert_files) == 1:
            return s.ca_cert_files[0]
        if self._ca_bundle is None:
            self._ca_bundle = ca_bundle(s.ca_cert_files)
        return self._ca_bundle

    def _client(self, proxied: bool) -> Any:
        client = self._clients.get(proxied)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(proxied)
            if client is None:
                client = self._clients[proxied] = self._make_client(proxied)
        return client

    def _make_client(self, proxied: bool) -> Any:
        import boto3.session
        from botocore import UNSIGNED
        from botocore.config import Config

        s = self.settings
        anonymous = not s.access_key_id
        attempts = 1 if proxied and s.proxy.fallback else s.retry_limit + 1
        options: dict[str, Any] = {
            "region_name": s.region,
            "connect_timeout": s.connect_timeout,
            "read_timeout": s.timeout,
            "retries": {"total_max_attempts": attempts, "mode": "standard"},
            "s3": {"addressing_style": "path" if s.path_style else "virtual"},
            "max_pool_connections": 32,
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
            "user_agent_extra": "nydus-py",
        }
        if anonymous:
            options["signature_version"] = UNSIGNED
        endpoint_url = s.endpoint_url
        use_ssl = s.scheme == "https"
        if proxied:
            options["proxies"] = {"http": s.proxy.url, "https": s.proxy.url}
            if s.proxy.use_http:
                use_ssl = False
                if endpoint_url:
                    endpoint_url = "http://" + endpoint_url.split("://", 1)[1]
        session = boto3.session.Session(
            aws_access_key_id=s.access_key_id or None,
            aws_secret_access_key=s.access_key_secret or None,
            region_name=s.region,
        )
        return session.client(
            "s3", endpoint_url=endpoint_url, use_ssl=use_ssl, verify=self._verify(), config=Config(**options)
        )

    def _call(self, what: str, op: Callable[[Any], T], *, via_proxy: bool = True) -> T:
        """Run ``op(client)`` through the proxy when it is healthy, else directly; map SDK errors."""
        try:
            if via_proxy and self._route.use_proxy():
                try:
                    return op(self._client(True))
                except Exception as exc:
                    if not self.settings.proxy.fallback or not _is_proxy_failure(exc):
                        raise
                    self._route.mark_down(redact(f"{type(exc).__name__}: {exc}", self._secrets()))
            return op(self._client(False))
        except NydusError:
            raise
        except Exception as exc:
            raise map_error(exc, what, endpoint=self._endpoint_text(), secrets=self._secrets()) from exc

    def _endpoint_text(self) -> str:
        return self.settings.endpoint_url or f"AWS S3 ({self.settings.region})"

    def _key(self, blob_id: str) -> str:
        return object_key(self.settings.object_prefix, blob_id, "s3")

    # -- Backend API -------------------------------------------------------------------------

    def size(self, blob_id: str) -> int:
        """Return the blob's size from a HEAD request.

        A HEAD answer has no body, so a 403 does not say whether the credentials were rejected or
        lack permission; then a 1-byte GET asks again, and its answer (or error) decides.
        """
        key = self._key(blob_id)
        bucket = self.settings.bucket_name
        where = self.settings.location(key)
        log.debug("HEAD %s", where)
        try:
            head = self._call(f"HEAD {where}", lambda c: c.head_object(Bucket=bucket, Key=key))
        except PermissionDeniedError:
            return self._size_from_get(key)
        return int(head["ContentLength"])

    def _size_from_get(self, key: str) -> int:
        bucket = self.settings.bucket_name

        def op(client: Any) -> int:
            from botocore.exceptions import ClientError

            try:
                resp = client.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                    return 0  # an empty object
                raise
            resp["Body"].close()
            content_range = resp.get("ContentRange") or ""
            total = content_range.rpartition("/")[2]
            return int(total) if total.isdigit() else int(resp["ContentLength"])

        return self._call(f"GET {self.settings.location(key)} (bytes=0-0)", op)

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset`` with one ranged GET (fewer at the end, none past it)."""
        if offset < 0 or length < 0:
            raise ValueError(f"negative offset or length ({offset}, {length})")
        if length == 0:
            return b""
        key = self._key(blob_id)
        bucket = self.settings.bucket_name
        byte_range = f"bytes={offset}-{offset + length - 1}"
        log.debug("GET %s %s", self.settings.location(key), byte_range)

        def op(client: Any) -> bytes:
            from botocore.exceptions import ClientError

            try:
                resp = client.get_object(Bucket=bucket, Key=key, Range=byte_range)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code == "InvalidRange" or status == 416:
                    return b""  # the range starts at or past the end of the object
                raise
            body = resp["Body"]
            try:
                data = body.read()
            finally:
                body.close()
            if not resp.get("ContentRange"):  # the server ignored Range and sent the whole object
                data = data[offset:offset + length]
            return data

        return self._call(f"GET {self.settings.location(key)} ({byte_range})", op)

    def write(self, blob_id: str, stream: BinaryIO, size: int | None = None) -> None:
        """Upload ``stream`` as the blob; blobs of ``multipart_threshold`` bytes or more go in parts.

        With ``size``, a stream that holds a different number of bytes fails the upload (a multipart
        upload is aborted) and nothing is stored.
        """
        from boto3.s3.transfer import TransferConfig

        key = self._key(blob_id)
        bucket = self.settings.bucket_name
        if isinstance(stream, bytes | bytearray | memoryview):
            stream = io.BytesIO(bytes(stream))
        source = ExactSizeReader(stream, size, f"s3 backend: PUT {self.settings.location(key)}")
        transfer = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=self.upload_concurrency,
            use_threads=self.upload_concurrency > 1,
        )
        log.debug("PUT %s (size %s)", self.settings.location(key), size)
        self._call(
            f"PUT {self.settings.location(key)}",
            lambda c: c.upload_fileobj(source, bucket, key, Config=transfer),
            via_proxy=False,
        )

    def close(self) -> None:
        """Close the clients' connection pools and remove the temporary CA bundle."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
            bundle, self._ca_bundle = self._ca_bundle, None
        for client in clients:
            try:
                client.close()
            except Exception:  # closing is best effort
                log.debug("closing an s3 client failed", exc_info=True)
        if bundle:
            try:
                os.unlink(bundle)
            except OSError:
                pass
