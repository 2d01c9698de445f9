"""The ``s3`` backend: blobs as objects ``<object_prefix><blob_id>`` in one S3 (or S3-compatible) bucket.

boto3 is imported here, on first use, never by ``hooks.py``. One boto3 client per route (direct, and
through the Dragonfly proxy when one is configured) is shared by all threads: boto3 clients are
thread-safe, sessions are not, so each client is made from a private session under a lock. What s3
shares with oss (config, proxy fallback, CA bundle, range checks, upload size check) is in
:class:`nydus_core.object_store.ObjectStoreBackend`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nydus_core.errors import BackendError, PermissionDeniedError
from nydus_core.object_store import ObjectStoreBackend
from nydus_core.remote_backend import ExactSizeReader

from .errors import map_error
from .settings import S3Settings

if TYPE_CHECKING:  # the stubs (types-boto3[s3]) are a dev dependency only
    from types_boto3_s3.client import S3Client

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


class S3Backend(ObjectStoreBackend["S3Client"]):
    """Blobs in an S3 bucket: ranged GET, HEAD for the size, multipart upload for large blobs."""

    name = "s3"

    #: Blobs at least this big are uploaded in parts of ``multipart_chunksize`` bytes.
    multipart_threshold = 8 * MiB
    multipart_chunksize = 8 * MiB
    upload_concurrency = 4

    settings_class = S3Settings
    settings: S3Settings
    default_verify = None
    default_endpoint = "aws"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self._clients: dict[bool, S3Client] = {}

    # -- clients -------------------------------------------------------------------------------

    def _handle(self, proxied: bool) -> S3Client:
        client = self._clients.get(proxied)
        if client is not None:
            return client
        with self.handles_lock:
            client = self._clients.get(proxied)
            if client is None:
                client = self._clients[proxied] = self._make_client(proxied)
        return client

    def _make_client(self, proxied: bool) -> S3Client:
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
            "s3", endpoint_url=endpoint_url, use_ssl=use_ssl, verify=self.tls_verify(),
            config=Config(**options),
        )

    def _is_proxy_failure(self, exc: BaseException) -> bool:
        return _is_proxy_failure(exc)

    def _map_error(self, exc: BaseException, what: str) -> BackendError:
        endpoint = self.settings.endpoint_url or f"AWS S3 ({self.settings.region})"
        return map_error(exc, what, endpoint=endpoint, secrets=self.secrets())

    # -- Backend API -------------------------------------------------------------------------

    def size(self, blob_id: str) -> int:
        """Return the blob's size from a HEAD request.

        A HEAD answer has no body, so a 403 does not say whether the credentials were rejected or
        lack permission; then a 1-byte GET asks again, and its answer (or error) decides.
        """
        try:
            return super().size(blob_id)
        except PermissionDeniedError:
            return self._size_from_get(self.key_of(blob_id))

    def _head_size(self, client: S3Client, key: str) -> int:
        return int(client.head_object(Bucket=self.settings.bucket_name, Key=key)["ContentLength"])

    def _size_from_get(self, key: str) -> int:
        bucket = self.settings.bucket_name

        def op(client: S3Client) -> int:
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

        return self.call(f"GET {self.settings.location(key)} (bytes=0-0)", op)

    def _get_range(self, client: S3Client, key: str, offset: int, end: int) -> bytes:
        from botocore.exceptions import ClientError

        try:
            resp = client.get_object(Bucket=self.settings.bucket_name, Key=key, Range=f"bytes={offset}-{end}")
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
            data = data[offset:end + 1]
        return data

    def _upload(self, key: str, source: ExactSizeReader, size: int | None, what: str) -> None:
        """Blobs of ``multipart_threshold`` bytes or more go up in parts (aborted on failure)."""
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=self.upload_concurrency,
            use_threads=self.upload_concurrency > 1,
        )
        self.log.debug("PUT %s (size %s)", self.settings.location(key), size)
        bucket = self.settings.bucket_name

        def op(client: S3Client) -> None:
            client.upload_fileobj(
                source,  # type: ignore[arg-type]  # s3transfer only calls read(); the stubs ask for IO
                bucket, key, Config=transfer,
            )

        self.call(what, op, via_proxy=False)

    def _close_handles(self) -> None:
        """Close the clients' connection pools."""
        with self.handles_lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                client.close()
            except Exception:  # closing is best effort
                self.log.debug("closing an s3 client failed", exc_info=True)
