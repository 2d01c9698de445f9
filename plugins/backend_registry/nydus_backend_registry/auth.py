"""Registry authentication: anonymous, Basic, static bearer, and the token flow of ``WWW-Authenticate``.

The flow (as upstream nydusd and the distribution token spec): a request gets ``401`` with a
challenge; for ``Basic`` we send the credentials; for ``Bearer`` we ask the ``realm`` for a token
(``service``, ``scope``, ``client_id=nydus-registry-client``; Basic credentials when we have them)
and retry. Tokens are cached per scope set and refreshed before ``expires_in`` runs out (with
jitter), and again when a request gets ``401`` in the middle of a long lazy read. Once a registry's
challenge is known, later requests authenticate up front instead of taking a ``401`` each time.
"""

from __future__ import annotations

import base64
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nydus_core.errors import AuthError, BackendError, PermissionDeniedError, TransientBackendError

from .config import Credentials
from .errormap import Redactor

log = logging.getLogger(__name__)

CLIENT_ID = "nydus-registry-client"
DEFAULT_EXPIRES_IN = 60  # seconds, when the token server does not say (distribution token spec)

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: its scheme (lower case) and parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes the server asked for (space-separated in the ``scope`` parameter)."""
        return tuple(s for s in self.params.get("scope", "").split(" ") if s)


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` header into its challenges (scheme + quoted/unquoted params)."""
    out: list[Challenge] = []
    pos, n = 0, len(header)
    while pos < n:
        m = re.compile(r"\s*,?\s*([A-Za-z][A-Za-z0-9_-]*)").match(header, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < n:
            pm = _PARAM.match(header, pos)
            if not pm:
                break
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = pm.end()
        out.append(Challenge(scheme, params))
    return out


def basic_header(creds: Credentials) -> str:
    """Return the ``Authorization`` value for Basic auth."""
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@dataclass
class Token:
    """A bearer token with its expiry and the time we refresh it (monotonic seconds)."""

    value: str = field(repr=False)
    expires_at: float
    refresh_at: float

    def usable(self, now: float) -> bool:
        """Whether the token is still valid (with a small safety margin)."""
        return now < self.expires_at - 0.05


def refresh_time(obtained: float, expires_in: float, rng: random.Random | None = None) -> float:
    """When to refresh a token valid for ``expires_in`` s: 20 % (at most 50 s) before it expires,
    plus up to 5 % (at most 10 s) of jitter so that many clients do not refresh together."""
    jitter = (rng or random).uniform(0.0, min(expires_in * 0.05, 10.0))
    early = min(expires_in * 0.2, 50.0) + jitter
    return obtained + max(expires_in - early, 0.0)


class TokenFetchError(Exception):
    """Raised by a token fetcher: ``status`` is the HTTP status (0 for a connection failure)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


#: ``fetch(realm, params, authorization_header_or_None) -> JSON dict`` (raises TokenFetchError).
TokenFetcher = Callable[[str, list[tuple[str, str]], str | None], dict[str, Any]]


class Authenticator:
    """Produces ``Authorization`` headers for registry requests; thread-safe.

    Errors it raises (token requests) carry only the detail; the transport prefixes the request.

    ``credentials`` (user/password) and ``static_token`` (upstream ``registry_token``) are optional.
    ``fetch`` performs the token request; the transport provides it so it shares TLS settings.
    ``what`` names the registry in error messages.
    """

    def __init__(self, *, credentials: Credentials | None, static_token: str = "",
                 fetch: TokenFetcher, redact: Redactor, what: str) -> None:
        self._lock = threading.RLock()
        self._fetch_lock = threading.Lock()
        self._credentials = credentials
        self._static_token = static_token
        self._fetch = fetch
        self._redact = redact
        self.what = what
        self._mode: str | None = None  # None (anonymous/static), "basic" or "bearer"
        self._bearer: dict[str, str] = {}  # realm, service
        self._tokens: dict[frozenset[str], Token] = {}
        self.tokens_fetched = 0
        self._redact_creds()

    def _redact_creds(self) -> None:
        self._redact.add(self._static_token)
        if self._credentials is not None:
            self._redact.add(self._credentials.password)
            self._redact.add(self._credentials.to_auth())
            self._redact.add(basic_header(self._credentials).split(" ", 1)[1])

    @property
    def has_credentials(self) -> bool:
        """Whether a user/password or a static token is configured."""
        return self._credentials is not None or bool(self._static_token)

    def set_credentials(self, credentials: Credentials | None) -> None:
        """Replace the credentials (hot reload of ``registry_auth``); cached tokens are dropped."""
        with self._lock:
            self._credentials = credentials
            self._tokens.clear()
            self._redact_creds()

    # -- headers ------------------------------------------------------------------------------

    def authorization(self, scopes: Iterable[str]) -> str | None:
        """Return the ``Authorization`` value to send up front for ``scopes``, or ``None``."""
        with self._lock:
            mode = self._mode
            creds = self._credentials
        if mode == "basic" and creds is not None:
            return basic_header(creds)
        if mode == "bearer":
            return "Bearer " + self._token_for(frozenset(scopes), force=False)
        if self._static_token:
            return "Bearer " + self._static_token
        return None

    def _token_for(self, key: frozenset[str], *, force: bool) -> str:
        now = time.monotonic()
        with self._lock:
            tok = self._tokens.get(key)
        if tok is not None and not force and now < tok.refresh_at:
            return tok.value
        with self._fetch_lock:  # one fetch at a time; others reuse its result
            with self._lock:
                cur = self._tokens.get(key)
            if cur is not None and cur is not tok and time.monotonic() < cur.refresh_at:
                return cur.value
            try:
                new = self._request_token(key)
            except BackendError:
                if tok is not None and not force and tok.usable(time.monotonic()):
                    log.warning("%s: token refresh failed; using the current token until it expires",
                                self.what)
                    return tok.value
                raise
            with self._lock:
                self._tokens[key] = new
            return new.value

    def _request_token(self, key: frozenset[str]) -> Token:
        with self._lock:
            realm = self._bearer.get("realm", "")
            service = self._bearer.get("service", "")
            creds = self._credentials
        if not realm:
            raise AuthError("the registry's bearer challenge has no realm")
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", s) for s in sorted(key))
        params.append(("client_id", CLIENT_ID))
        header = basic_header(creds) if creds is not None else None
        started = time.monotonic()
        try:
            body = self._fetch(realm, params, header)
        except TokenFetchError as exc:
            who = "with the configured credentials" if creds else "anonymously (no credentials configured)"
            msg = f"token request to {realm} {who} failed: {exc.detail}"
            if exc.status == 401 and creds is not None:
                msg = f"token server {realm} rejected the credentials (HTTP 401)"
            if exc.status == 403:
                raise PermissionDeniedError(self._redact(msg)) from None
            cls = TransientBackendError if exc.status == 0 or exc.status >= 500 else AuthError
            raise cls(self._redact(msg)) from None
        value = body.get("token") or body.get("access_token")
        if not isinstance(value, str) or not value:
            raise AuthError(self._redact(f"token server {realm} returned no token"))
        self._redact.add(value, transient=True)
        try:
            expires_in = float(body.get("expires_in") or DEFAULT_EXPIRES_IN)
        except (TypeError, ValueError):
            expires_in = DEFAULT_EXPIRES_IN
        expires_in = max(expires_in, 1.0)
        self.tokens_fetched += 1
        log.debug("%s: got a token for %s valid %.0fs", self.what, " ".join(sorted(key)), expires_in)
        return Token(value, started + expires_in, refresh_time(started, expires_in))

    # -- 401 handling -------------------------------------------------------------------------

    def on_unauthorized(self, header: str | None, scopes: Iterable[str], sent: str | None) -> str | None:
        """Handle a ``401``: learn the challenge and return a fresh ``Authorization`` to retry with.

        ``sent`` is the header the failed request carried. Returns ``None`` when retrying cannot
        help (no usable challenge, or no credentials for Basic).
        """
        challenges = parse_www_authenticate(header or "")
        scopes = set(scopes)
        for ch in challenges:
            if ch.scheme == "bearer":
                if (ch.params.get("error") == "insufficient_scope" and sent and sent.startswith("Bearer")
                        and set(ch.scopes) <= scopes):
                    with self._lock:
                        known = self._mode == "bearer"
                    if known:
                        return None  # a fresh token for the same scopes would carry the same grant
                scopes.update(ch.scopes)
                with self._lock:
                    self._mode = "bearer"
                    self._bearer = {"realm": ch.params.get("realm", ""),
                                    "service": ch.params.get("service", "")}
                    self._tokens.pop(frozenset(scopes), None)
                return "Bearer " + self._token_for(frozenset(scopes), force=True)
            if ch.scheme == "basic":
                with self._lock:
                    creds = self._credentials
                    self._mode = "basic"
                if creds is None:
                    return None
                value = basic_header(creds)
                return None if sent == value else value
        return None
