"""Turn botocore/boto3 exceptions into the core's BackendError kinds, with no secret in the text."""

from __future__ import annotations

from collections.abc import Iterable

from nydus_core.errors import AuthError, BackendError, TransientBackendError
from nydus_core.object_store import ErrorCodes, unmapped_error
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
CODES = ErrorCodes(NOT_FOUND, AUTH, PERMISSION, TRANSIENT)


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
    return unmapped_error(exc, prefix, secrets)


def _client_error(exc: BaseException, prefix: str, secrets: tuple[str, ...]) -> BackendError:
    response = getattr(exc, "response", {}) or {}
    error = response.get("Error", {}) or {}
    code = str(error.get("Code") or "")
    status = int((response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode") or 0)
    return CODES.error(prefix, code, status, str(error.get("Message") or ""), secrets)
