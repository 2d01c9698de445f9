"""Turning requests/urllib3 exceptions and HTTP statuses into nydus-core errors, without secrets.

Every message says which kind of failure it was (connection refused, timeout, reset, TLS, HTTP
status with the registry's error code) and what was being done. :class:`Redactor` scrubs known
secrets, URL user-info and query strings (pre-signed redirect URLs carry signatures) from any text
that reaches a message or a log line (it lives in :mod:`nydus_core.remote_backend`, shared with the
other remote backends, and is re-exported here).
"""

from __future__ import annotations

import json

import requests

from nydus_core.errors import (
    AuthError,
    BackendError,
    BlobNotFoundError,
    IntegrityError,
    NydusError,
    PermissionDeniedError,
    TransientBackendError,
)
from nydus_core.remote_backend import RETRY_STATUSES, Redactor

__all__ = [
    "RETRY_STATUSES",
    "IncompleteBodyError",
    "Redactor",
    "describe_exception",
    "map_exception",
    "registry_error_code",
    "status_error",
]


class IncompleteBodyError(TransientBackendError):
    """The response headers arrived but the body was cut short (reset, truncation): retryable."""


def _innermost(exc: BaseException) -> BaseException:
    seen = set()
    cur: BaseException = exc
    while id(cur) not in seen:
        seen.add(id(cur))
        nxt = getattr(cur, "reason", None) or cur.__cause__ or cur.__context__
        if nxt is None and cur.args and isinstance(cur.args[0], BaseException):
            nxt = cur.args[0]
        if not isinstance(nxt, BaseException):
            break
        cur = nxt
    return cur


def describe_exception(exc: BaseException) -> tuple[str, type[BackendError]]:
    """Classify a requests/urllib3/OS exception: ``(what happened, error class)``."""
    inner = _innermost(exc)
    text = f"{exc} {inner}"
    if isinstance(exc, requests.exceptions.SSLError) or "SSL" in type(inner).__name__:
        detail = "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in text else "handshake failed"
        return f"TLS error ({detail})", BackendError
    if isinstance(exc, requests.exceptions.ProxyError):
        return "proxy connection failed", TransientBackendError
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timeout", TransientBackendError
    if isinstance(exc, requests.exceptions.ReadTimeout) or isinstance(inner, TimeoutError):
        return "read timeout", TransientBackendError
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return "response body cut short (connection reset or truncated)", IncompleteBodyError
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return "too many redirects", BackendError
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema
                  | requests.exceptions.InvalidSchema):
        return "invalid URL", BackendError
    if isinstance(inner, ConnectionRefusedError) or "Connection refused" in text:
        return "connection refused", TransientBackendError
    if isinstance(inner, ConnectionResetError) or "reset by peer" in text:
        return "connection reset", TransientBackendError
    if "RemoteDisconnected" in text or "closed connection without response" in text:
        return "connection closed without a response", TransientBackendError
    if "Name or service not known" in text or "NameResolutionError" in text or "getaddrinfo" in text:
        return "host name not resolved", TransientBackendError
    if isinstance(exc, requests.exceptions.RetryError):
        return "too many retries", TransientBackendError
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError | OSError):
        return "connection failed", TransientBackendError
    return type(exc).__name__, BackendError


def map_exception(exc: BaseException, what: str, redact: Redactor, *, attempts: int = 1) -> BackendError:
    """Return the core error for a failed request; ``what`` names the operation and object."""
    reason, cls = describe_exception(exc)
    tries = f" after {attempts} attempts" if attempts > 1 and cls is not IncompleteBodyError else ""
    return cls(redact(f"{what}: {cls.kind}: {reason}{tries}"))


def registry_error_code(resp: requests.Response) -> str:
    """Return the distribution API error code(s) and message from a JSON error body, or ''."""
    try:
        if len(resp.content) > 65536:
            return ""
        body = json.loads(resp.content or b"{}")
        errors = body.get("errors") or []
        parts = []
        for e in errors[:3]:
            code, msg = e.get("code", ""), e.get("message", "")
            parts.append(f"{code} {msg}".strip())
        return "; ".join(p for p in parts if p)
    except Exception:
        return ""


def status_error(resp: requests.Response, what: str, redact: Redactor, *, hint: str = "") -> NydusError:
    """Return the core error for an unexpected HTTP status."""
    status = resp.status_code
    code = registry_error_code(resp)
    detail = f"HTTP {status}" + (f" {code}" if code else "")
    if status == 404:
        cls: type[BackendError] = BlobNotFoundError
    elif status == 401:
        cls = AuthError
    elif status == 403:
        cls = PermissionDeniedError
    elif status in RETRY_STATUSES or status == 429:
        cls = TransientBackendError
    else:
        cls = BackendError
    if status == 400 and "DIGEST_INVALID" in code:
        return IntegrityError(redact(f"{what}: digest mismatch ({detail})"))
    msg = f"{what}: {cls.kind}: {detail}"
    if hint:
        msg += f" ({hint})"
    return cls(redact(msg))
