"""HTTP transport shared by the backend and the client: sessions, TLS, retries, auth, proxy.

- One retry policy, urllib3's ``Retry`` from :func:`make_retry`: ``retry_limit`` retries with
  exponential backoff on connection failures, resets and 500/502/503/504, never on other 4xx. The
  ``HTTPAdapter`` of each ``requests.Session`` (one per thread: sessions are not documented as
  thread-safe) applies it to requests; :meth:`Transport.retrying` applies the same policy to a
  body that arrives cut short after the headers (which requests reads after urllib3 has returned).
- TLS is verified by default; ``ca_cert_files`` are added to the system trust store;
  ``skip_verify`` turns verification off and, like upstream, allows falling back from HTTPS to
  HTTP when the TLS handshake fails. ``scheme=""`` means "try HTTPS, fall back to HTTP".
- ``401`` answers go through :class:`~.auth.Authenticator` and the request is retried once.
- GET/HEAD go through the Dragonfly proxy while it is healthy (the health policy all remote backends
  share: :class:`nydus_core.remote_backend.ProxyHealth`); with ``fallback`` off they always do, and
  fail when it is down.
- The environment's ``HTTP(S)_PROXY``/``NO_PROXY`` apply to direct requests; ``~/.netrc`` never does.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from nydus_core.errors import (
    BackendError,
    ConfigError,
    NydusError,
    PermissionDeniedError,
    TransientBackendError,
)
from nydus_core.remote_backend import ProxyHealth

from .auth import Authenticator, TokenFetchError
from .config import Credentials, ProxyConfig
from .errormap import (
    RETRY_STATUSES,
    IncompleteBodyError,
    Redactor,
    describe_exception,
    map_exception,
    registry_error_code,
    status_error,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

USER_AGENT = "nydus-py-registry/0.1"
_RETRY_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"})
_PROXY_FAILURE_STATUSES = frozenset({502, 504})


class _Adapter(HTTPAdapter):
    """An HTTPAdapter that uses our SSL context (extra CA files) for direct and proxied pools."""

    def __init__(self, ssl_context: ssl.SSLContext | None, **kwargs: Any) -> None:
        self._ssl_context = ssl_context
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._ssl_context is not None:
            kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        if self._ssl_context is not None:
            kwargs["ssl_context"] = self._ssl_context
        return super().proxy_manager_for(proxy, **kwargs)


def make_retry(retry_limit: int) -> Retry:
    """The urllib3 retry policy: connection failures, resets and 5xx; bounded backoff."""
    return Retry(
        total=retry_limit, connect=retry_limit, read=retry_limit, status=retry_limit, other=retry_limit,
        allowed_methods=_RETRY_METHODS, status_forcelist=RETRY_STATUSES,
        backoff_factor=0.1, backoff_max=2.0, backoff_jitter=0.05,
        raise_on_status=False, raise_on_redirect=False, respect_retry_after_header=False,
    )


class Transport:
    """Talks to one registry host. Thread-safe; call :meth:`close` when done."""

    def __init__(
        self,
        host: str,
        *,
        scheme: str = "https",
        credentials: Credentials | None = None,
        registry_token: str = "",
        skip_verify: bool = False,
        ca_cert_files: Iterable[str] = (),
        timeout: float = 5,
        connect_timeout: float = 5,
        retry_limit: int = 0,
        proxy: ProxyConfig | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.host = host
        self.scheme = scheme or "https"
        self._auto_scheme = not scheme
        self.skip_verify = skip_verify
        self.timeout = (connect_timeout, timeout)
        self.retry_limit = retry_limit
        self.user_agent = user_agent
        self.redact = Redactor()
        self.what = f"registry {host}"
        self._ssl_context: ssl.SSLContext | None = None
        if ca_cert_files and not skip_verify:
            ctx = ssl.create_default_context()
            for f in ca_cert_files:
                try:
                    ctx.load_verify_locations(cafile=f)
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigError(f"cannot load CA certificate file {f}: {exc}",
                                      key="ca_cert_files") from None
            self._ssl_context = ctx
        if skip_verify:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.auth = Authenticator(credentials=credentials, static_token=registry_token,
                                  fetch=self._fetch_token, redact=self.redact, what=self.what)
        self.proxy = proxy if proxy is not None and proxy.enabled else None
        if self.proxy is not None:
            self.redact.add(urlsplit(self.proxy.url).password)
        self.proxy_health = (ProxyHealth(self.proxy, timeout=min(connect_timeout, 2.0), redact=self.redact,
                                         origin="the registry")
                             if self.proxy is not None else None)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self.requests_sent = 0
        self.proxied_requests = 0

    # -- sessions -----------------------------------------------------------------------------

    def _session(self, kind: str) -> requests.Session:
        sessions = getattr(self._local, "sessions", None)
        if sessions is None:
            sessions = self._local.sessions = {}
        s = sessions.get(kind)
        if s is None:
            s = requests.Session()
            s.trust_env = False
            s.headers["User-Agent"] = self.user_agent
            retries = (make_retry(self.retry_limit) if kind == "retry"
                       else Retry(0, read=False, redirect=False))
            adapter = _Adapter(self._ssl_context, max_retries=retries, pool_connections=4, pool_maxsize=8)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            if kind == "proxy" and self.proxy is not None:
                s.proxies = {"http": self.proxy.url, "https": self.proxy.url}
            sessions[kind] = s
            with self._lock:
                self._sessions.append(s)
        return s

    @property
    def _verify(self) -> bool:
        return not self.skip_verify

    @property
    def base_url(self) -> str:
        """``scheme://host``."""
        return f"{self.scheme}://{self.host}"

    def url(self, path_or_url: str) -> str:
        """Resolve a path (``/v2/...``) or a registry-relative ``Location`` to an absolute URL."""
        return urljoin(self.base_url + "/", path_or_url)

    def close(self) -> None:
        """Close every session and stop the proxy checker."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for s in sessions:
            s.close()
        if self.proxy_health is not None:
            self.proxy_health.close()

    # -- token requests -----------------------------------------------------------------------

    def _fetch_token(self, realm: str, params: list[tuple[str, str]], header: str | None) -> dict[str, Any]:
        headers = {"Authorization": header} if header else {}
        try:
            resp = self._session("retry").get(realm, params=params, headers=headers, timeout=self.timeout,
                                              verify=self._verify, proxies=self._env_proxies(realm))
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise TokenFetchError(0, describe_exception(exc)[0]) from None
        if resp.status_code != 200:
            code = registry_error_code(resp)
            raise TokenFetchError(resp.status_code, f"HTTP {resp.status_code}" + (f" {code}" if code else ""))
        try:
            body = resp.json()
        except ValueError:
            raise TokenFetchError(resp.status_code, "the answer is not JSON") from None
        if not isinstance(body, dict):
            raise TokenFetchError(resp.status_code, "the answer is not a JSON object")
        return body

    # -- requests -----------------------------------------------------------------------------

    def retrying(self, fn: Callable[[], T]) -> T:
        """Return ``fn()``, called again while it raises IncompleteBodyError (the body of its answer
        came cut short), under the policy of :func:`make_retry` (``retry_limit``, its backoff).

        Past the limit the error becomes TransientBackendError naming the attempts."""
        retry = make_retry(self.retry_limit)
        attempt = 1
        while True:
            try:
                return fn()
            except IncompleteBodyError as exc:
                try:
                    retry = retry.increment(method="GET", error=urllib3.exceptions.ProtocolError(str(exc)))
                except urllib3.exceptions.MaxRetryError:
                    raise TransientBackendError(f"{exc} after {attempt} attempts") from None
                log.info("%s; retrying (%d/%d)", exc, attempt, self.retry_limit)
                attempt += 1
                retry.sleep()

    @staticmethod
    def _env_proxies(url: str) -> dict[str, str]:
        proxies = urllib.request.getproxies()
        if not proxies or urllib.request.proxy_bypass(urlsplit(url).netloc):
            return {}
        return {k: v for k, v in proxies.items() if k in ("http", "https", "all")}

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        what: str,
        scopes: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        stream: bool = False,
        allow_redirects: bool = True,
        retry: bool = True,
        auth: bool = True,
    ) -> requests.Response:
        """Send one request (auth, retries, proxy, TLS fallback) and return the response.

        Responses of any status are returned, except that exceptions become core errors naming
        ``what``. A ``401`` is retried once with fresh credentials; use :meth:`error_for` on an
        unexpected status.
        """
        url = self.url(path_or_url)
        scopes = tuple(scopes)
        hdrs = dict(headers or {})
        sent = self._auth_call(what, self.auth.authorization, scopes) if auth else None
        if sent:
            hdrs["Authorization"] = sent
        resp = self._send(method, url, hdrs, data, stream, allow_redirects, retry, what)
        if resp.status_code == 401 and auth:
            challenge = resp.headers.get("WWW-Authenticate")
            resp.close()
            if data is not None and not isinstance(data, bytes | bytearray | memoryview | str):
                if not (hasattr(data, "seek") and data.seekable()):
                    return resp
                data.seek(0)
            fresh = self._auth_call(what, self.auth.on_unauthorized, challenge, scopes, sent)
            if fresh is not None:
                hdrs["Authorization"] = fresh
                resp = self._send(method, self.url(path_or_url), hdrs, data, stream, allow_redirects, retry,
                                  what)
        return resp

    @staticmethod
    def _auth_call(what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except BackendError as exc:
            raise type(exc)(f"{what}: {exc.kind}: {exc}") from None

    def _send(self, method: str, url: str, headers: dict[str, str], data: Any, stream: bool,
              allow_redirects: bool, retry: bool, what: str) -> requests.Response:
        proxy = self.proxy
        if (proxy is not None and self.proxy_health is not None and method in ("GET", "HEAD")
                and self.proxy_health.use_proxy()):
            purl = "http://" + url[len("https://"):] if proxy.use_http and url.startswith("https://") else url
            started = time.monotonic()
            try:
                resp = self._session("proxy").request(method, purl, headers=headers, data=data, stream=stream,
                                                      allow_redirects=allow_redirects, timeout=self.timeout,
                                                      verify=self._verify)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                reason, _ = describe_exception(exc)
                self.proxy_health.mark_failed(reason)
                if not proxy.fallback:
                    raise TransientBackendError(self.redact(
                        f"{what}: {TransientBackendError.kind}: Dragonfly proxy {proxy.url}: {reason} "
                        f"(fallback disabled)")) from None
                log.info("%s via proxy failed (%s); falling back to the registry", what, reason)
            else:
                self.proxied_requests += 1
                self._log(method, purl, resp, started, via="proxy")
                if resp.status_code not in _PROXY_FAILURE_STATUSES or not proxy.fallback:
                    return resp
                resp.close()
                log.info("%s via proxy got HTTP %d; falling back to the registry", what, resp.status_code)
        return self._send_direct(method, url, headers, data, stream, allow_redirects, retry, what)

    def _send_direct(self, method: str, url: str, headers: dict[str, str], data: Any, stream: bool,
                     allow_redirects: bool, retry: bool, what: str) -> requests.Response:
        started = time.monotonic()
        try:
            self.requests_sent += 1
            resp = self._session("retry" if retry else "once").request(
                method, url, headers=headers, data=data, stream=stream, allow_redirects=allow_redirects,
                timeout=self.timeout, verify=self._verify, proxies=self._env_proxies(url))
        except requests.exceptions.SSLError as exc:
            if url.startswith("https://") and (self._auto_scheme or self.skip_verify) \
                    and "CERTIFICATE_VERIFY_FAILED" not in str(exc) and url.startswith(self.base_url):
                log.warning("%s: TLS handshake failed; falling back to plain HTTP", self.what)
                self.scheme = "http"
                return self._send_direct(method, "http://" + url[len("https://"):], headers, data, stream,
                                         allow_redirects, retry, what)
            raise map_exception(exc, what, self.redact) from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            attempts = self.retry_limit + 1 if retry else 1
            raise map_exception(exc, what, self.redact, attempts=attempts) from None
        self._log(method, url, resp, started)
        return resp

    def _log(self, method: str, url: str, resp: requests.Response, started: float, via: str = "") -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %d (%.3fs)%s", method, self.redact(url), resp.status_code,
                      time.monotonic() - started, f" via {via}" if via else "")

    def error_for(self, resp: requests.Response, what: str, *, hint: str = "") -> NydusError:
        """Return the core error for an unexpected response status (and close the response)."""
        if resp.status_code == 401:
            challenge = resp.headers.get("WWW-Authenticate", "")
            if "insufficient_scope" in challenge and self.auth.has_credentials:
                resp.close()
                return PermissionDeniedError(self.redact(
                    f"{what}: {PermissionDeniedError.kind}: the credentials are not allowed to do this "
                    f"(HTTP 401 insufficient_scope)"))
            if not hint:
                hint = ("credentials rejected" if self.auth.has_credentials
                        else "authentication required and no credentials are configured")
        if resp.status_code in RETRY_STATUSES and self.retry_limit and not hint:
            hint = f"after {self.retry_limit} retries"
        err = status_error(resp, what, self.redact, hint=hint)
        resp.close()
        return err
