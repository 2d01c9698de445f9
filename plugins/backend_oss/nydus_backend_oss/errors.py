"""Turn oss2 (and requests) exceptions into the core's BackendError kinds, with no secret in the text."""

from __future__ import annotations

from collections.abc import Iterable

from nydus_core.errors import BackendError, TransientBackendError
from nydus_core.object_store import ErrorCodes, unmapped_error
from nydus_core.remote_backend import exception_chain, redact

NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchUpload", "SymlinkTargetNotExist"})
AUTH = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "SecurityTokenExpired", "InvalidSecurityToken",
    "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed",
})
PERMISSION = frozenset({"AccessDenied", "AccessForbidden", "AllAccessDisabled"})
TRANSIENT = frozenset({
    "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed", "SlowDown",
    "TooManyRequests", "QpsLimitExceeded", "Throttling",
})
CODES = ErrorCodes(NOT_FOUND, AUTH, PERMISSION, TRANSIENT)


def map_error(
    exc: BaseException, what: str, *, endpoint: str = "", secrets: Iterable[str] = ()
) -> BackendError:
    """Return the BackendError for ``exc`` raised while doing ``what`` (e.g. ``GET oss://b/k``)."""
    import requests

    from .sdk import import_oss2

    oe = import_oss2().exceptions
    secrets = tuple(secrets)
    prefix = f"oss backend: {what}"
    server = f" at {redact(endpoint, secrets)}" if endpoint else ""
    for cause in exception_chain(exc):
        if isinstance(cause, oe.RequestError):
            return _request_error(cause.exception, prefix, server)
        if isinstance(cause, oe.ClientError):
            return BackendError(f"{prefix}: {redact(str(cause.body), secrets)}")
        if isinstance(cause, oe.OssError):
            return _server_error(cause, prefix, secrets)
        if isinstance(cause, requests.exceptions.RequestException):
            return _request_error(cause, prefix, server)
    return unmapped_error(exc, prefix, secrets)


def _request_error(exc: BaseException, prefix: str, server: str) -> BackendError:
    """Describe a failure to talk to the server (after urllib3's retries), by its root cause."""
    import requests
    from urllib3 import exceptions as ue

    reason: BaseException = exc
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, ue.MaxRetryError) and inner.reason is not None:
        reason = inner.reason
    if isinstance(reason, requests.exceptions.SSLError | ue.SSLError):
        hint = "check ca_cert_files, or skip_verify for testing"
        return BackendError(f"{prefix}: TLS failure{server} ({hint})")
    if isinstance(reason, requests.exceptions.ProxyError | ue.ProxyError):
        return TransientBackendError(f"{prefix}: the proxy is unreachable")
    if isinstance(reason, ue.NewConnectionError):  # before ConnectTimeoutError, its base
        why = str(reason).rsplit(": ", 1)[-1]  # e.g. "[Errno 111] Connection refused"
        return TransientBackendError(f"{prefix}: cannot reach the server{server} ({redact(why)})")
    if isinstance(reason, requests.exceptions.ConnectTimeout | ue.ConnectTimeoutError):
        return TransientBackendError(f"{prefix}: timed out connecting to the server{server}")
    if isinstance(reason, requests.exceptions.ReadTimeout | ue.ReadTimeoutError):
        return TransientBackendError(f"{prefix}: timed out waiting for the server{server}")
    if isinstance(reason, ue.ProtocolError | requests.exceptions.ChunkedEncodingError):
        return TransientBackendError(f"{prefix}: the connection to the server{server} broke")
    return TransientBackendError(f"{prefix}: cannot reach the server{server} ({type(reason).__name__})")


def _server_error(exc: BaseException, prefix: str, secrets: tuple[str, ...]) -> BackendError:
    status = int(getattr(exc, "status", 0) or 0)
    code = str(getattr(exc, "code", "") or "")
    return CODES.error(prefix, code, status, str(getattr(exc, "message", "") or ""), secrets)
