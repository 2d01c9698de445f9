"""Turn botocore/boto3 exceptions into the core's BackendError kinds, with no secret in the text."""

from __future__ import annotations

from collections.abc import Iterable

from nydus_core.errors import (
    AuthError,
    BackendError,
    BlobNotFoundError,
    PermissionDeniedError,
    TransientBackendError,
)
from nydus_core.remote_backend import exception_chain, redact

NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket", "NoSuchUpload"})
AUTH = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
    "AuthorizationHeaderMalformed", "InvalidSecurity", "MissingSecurityHeader", "CredentialsNotSupported",
    "401", "Unauthorized",
})
PERMISSION = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"})
TRANSIENT = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "InternalError", "ServiceUnavailable", "503", "500", "502", "504", "RequestLimitExceeded",
    "TooManyRequests", "429", "BadDigest", "IncompleteBody",
})


def map_error(
    exc: BaseException, what: str, *, endpoint: str = "", secrets: Iterable[str] = ()
) -> BackendError:
    """Return the BackendError for ``exc`` raised while doing ``what`` (e.g. ``GET s3://b/k``).

    ``endpoint`` names the server in connection errors; the server's own error code and message are
    kept (redacted) so users see what it said.
    """
    from botocore import exceptions as be

    secrets = tuple(secrets)
    prefix = f"s3 backend: {what}"
    server = f" at {redact(endpoint, secrets)}" if endpoint else ""
    for cause in exception_chain(exc):
        if isinstance(cause, be.ClientError):
            return _client_error(cause, prefix, secrets)
        if isinstance(cause, be.NoCredentialsError | be.PartialCredentialsError):
            return AuthError(f"{prefix}: no usable credentials (set access_key_id and access_key_secret)")
        if isinstance(cause, be.SSLError):
            return BackendError(
                f"{prefix}: TLS failure{server}: {redact(str(cause), secrets)} "
                "(check ca_cert_files, or skip_verify for testing)"
            )
        if isinstance(cause, be.ProxyConnectionError):
            return TransientBackendError(f"{prefix}: the proxy is unreachable ({type(cause).__name__})")
        if isinstance(cause, be.ConnectTimeoutError):
            return TransientBackendError(f"{prefix}: timed out connecting to the server{server}")
        if isinstance(cause, be.ReadTimeoutError):
            return TransientBackendError(f"{prefix}: timed out waiting for the server{server}")
        if isinstance(cause, be.EndpointConnectionError | be.ConnectionError | be.HTTPClientError):
            kind = type(cause).__name__
            return TransientBackendError(f"{prefix}: cannot reach the server{server} ({kind})")
        if isinstance(cause, be.IncompleteReadError | be.ChecksumError):
            return TransientBackendError(f"{prefix}: {redact(str(cause), secrets)}")
    if isinstance(exc, BackendError):
        return exc
    return BackendError(f"{prefix}: {type(exc).__name__}: {redact(str(exc), secrets)}")


def _client_error(exc: BaseException, prefix: str, secrets: tuple[str, ...]) -> BackendError:
    response = getattr(exc, "response", {}) or {}
    error = response.get("Error", {}) or {}
    code = str(error.get("Code") or "")
    status = int((response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode") or 0)
    message = redact(str(error.get("Message") or ""), secrets)
    detail = f"{code or status}" + (f": {message}" if message and message != code else "")
    if code == "NoSuchBucket":
        return BlobNotFoundError(f"{prefix}: the bucket does not exist ({detail})")
    if code in NOT_FOUND or (not code and status == 404):
        return BlobNotFoundError(f"{prefix}: not found ({detail})")
    if code in AUTH or status == 401:
        return AuthError(f"{prefix}: credentials rejected ({detail})")
    if code in PERMISSION or status == 403:
        return PermissionDeniedError(f"{prefix}: permission denied ({detail})")
    if code in TRANSIENT or status >= 500 or status == 429:
        return TransientBackendError(f"{prefix}: server error ({detail})")
    return BackendError(f"{prefix}: {detail}")
