"""The one redaction rule for what users and other processes see: errors, logs, API answers.

What is masked (replaced by ``***``):

* the user-info of every URL-like value: ``https://user:pass@host`` -> ``https://***@host``, and the
  scheme-less ``user:pass@host`` (a registry ``host``) -> ``***@host``;
* the value of every query parameter of a URL: ``?X-Amz-Signature=abc&x=1`` -> ``?X-Amz-Signature=***&x=***``
  (pre-signed URLs carry credentials there; names stay, for diagnosis);
* ``Authorization`` header values;
* secrets the caller knows (passwords, tokens, keys it holds): wherever they appear;
* in config structures (:func:`masked`): the values of the options named in :data:`SECRET_KEYS`, and
  every string value by the rules above (a ``proxy.url`` with a password).

:func:`redact` scrubs text, :class:`Redactor` remembers secrets learnt at run time (tokens),
:func:`masked` scrubs a config (``GET /api/v1/daemon``, ``GET /api/v1/config``), and
:class:`RedactingFilter` scrubs every log record (installed by ``logsetup.setup_logging``). The CLI
scrubs every error message it prints.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ["MASK", "SECRET_KEYS", "RedactingFilter", "Redactor", "masked", "redact", "redact_url"]

#: what a secret is replaced by
MASK: Final = "***"

#: Option names whose values are secrets, wherever they appear in a config.
SECRET_KEYS: Final = frozenset(
    {"auth", "registry_token", "access_key_id", "access_key_secret", "encryption_key", "password", "token",
     "secret_access_key", "session_token"}
)

_SCHEME = r"[a-zA-Z][a-zA-Z0-9+.-]*://"
# scheme://userinfo@ : userinfo without '/', or user:password where the password may hold '/'
_URL_USERINFO = re.compile(rf"(?P<scheme>{_SCHEME})(?:[^\s/@'\"<>]*:[^\s@'\"<>]*|[^\s/:@'\"<>]+)@")
# user:password@host at the start of a token (no scheme): a registry "host" value
_BARE_USERINFO = re.compile(r"(?<![^\s'\"(\[{=,;])[^\s/:@'\"<>(\[{=,;]+:[^\s/@'\"<>]*@(?=[\w\[])")
_URL_QUERY = re.compile(rf"(?P<base>{_SCHEME}[^\s?#'\"<>]*\?)(?P<query>[^\s#'\"<>)]*)")
_QUERY_PARAM = re.compile(r"(?P<name>[^&=;]*)=[^&;]*")
_AUTH_HEADER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?:(basic|bearer)\s+)?[^\s'\",}]+")
_MIN_SECRET = 4


def _mask_query(match: re.Match[str]) -> str:
    query = _QUERY_PARAM.sub(lambda m: f"{m['name']}={MASK}", match["query"])
    return match["base"] + query


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with ``secrets`` (those of at least 4 characters), URL user-info, URL query
    values and ``Authorization`` values masked."""
    for secret in sorted({s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    if "@" in text:
        text = _URL_USERINFO.sub(rf"\g<scheme>{MASK}@", text)
        text = _BARE_USERINFO.sub(f"{MASK}@", text)
    if "?" in text:
        text = _URL_QUERY.sub(_mask_query, text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTH_HEADER.sub(lambda m: m[1] + (f"{m[2]} " if m[2] else "") + MASK, text)
    return text


def redact_url(value: str) -> str:
    """Return one URL-like config value (``endpoint``, ``host``, ``proxy.url``) with its user-info
    and query values masked; everything before the last ``@`` ahead of the query counts as
    user-info, whatever characters the password holds (``/`` and ``+`` included)."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    head, q, query = rest.partition("?")
    if "@" in head:
        head = MASK + head[head.rindex("@"):]
    return redact(scheme + sep + head + q + query)


def masked(value: Any, secrets: Iterable[str | None] = ()) -> Any:
    """Return a copy of a config structure with every secret option (:data:`SECRET_KEYS`) replaced by
    ``***`` and every string scrubbed (:func:`redact_url`, then the known ``secrets``)."""
    known = tuple(secrets)
    if isinstance(value, Mapping):
        return {k: MASK if k in SECRET_KEYS and v not in (None, "") else masked(v, known)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v, known) for v in value]
    if isinstance(value, str):
        return redact(redact_url(value), known)
    return value


class Redactor:
    """Scrubs text as :func:`redact` does, with the secrets it was told about.

    Thread-safe; remembers every fixed secret and the last ``keep`` transient ones (tokens)."""

    def __init__(self, *secrets: str | None, keep: int = 64) -> None:
        self._lock = threading.Lock()
        self._fixed: set[str] = set()
        self._recent: deque[str] = deque(maxlen=keep)
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None, *, transient: bool = False) -> None:
        """Remember ``secret`` (ignored when shorter than 4 characters)."""
        if not secret or len(secret) < _MIN_SECRET:
            return
        with self._lock:
            if transient:
                self._recent.append(secret)
            else:
                self._fixed.add(secret)

    def __call__(self, text: object) -> str:
        """Return ``text`` as a string with every secret, user-info, URL query value and credential masked."""
        with self._lock:
            secrets = {*self._fixed, *self._recent}
        return redact(str(text), secrets)


class RedactingFilter(logging.Filter):
    """A log filter that applies :func:`redact` to each record's message (and its exception text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message by its redacted form; keep every record."""
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True
