"""Real registry servers for tests (this package's, the converter's and the snapshotter's).

Needs the Debian ``docker-registry`` (distribution 2.8) and the ``testing`` extra (``bcrypt``,
``cryptography``). Everything listens on 127.0.0.1 and is stopped by the fixtures.

- :class:`RegistryServer`: ``docker-registry serve`` open, with htpasswd Basic auth, or with token
  auth against a :class:`TokenIssuer`; optionally TLS with a self-signed certificate.
- :class:`TokenIssuer`: a small token server issuing RS256 JWTs signed by a test key whose
  self-signed certificate is the registry's ``rootcertbundle``; lifetimes are short and adjustable.
- :class:`FaultProxy`: a reverse proxy in front of a registry that can answer 503 for a burst,
  reset connections, truncate bodies, and redirect blob GETs (307) to a fake object store.
- :class:`ForwardingProxy`: an HTTP forward proxy with ``/server/ping`` (a stand-in for a Dragonfly
  dfdaemon) that a test stops and starts: :class:`nydus_testsupport.objstore.ForwardProxy`, which the
  object-store backends' tests use too.

Pytest fixtures: ``registry_open``, ``registry_basic``, ``registry_token`` (session-scoped) and
``registry_factory`` (starts extra servers for one test). Import them into a ``conftest.py``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import http.client
import http.server
import json
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest
from nydus_testkit.servers import BackgroundHTTPServer, ServerProcess, free_port, reset_connection, serving

from nydus_testsupport.objstore import ForwardProxy

#: distribution 2.8 accepts a token up to 60 s after ``exp`` (clock-skew leeway); the issuer
#: subtracts it so that a token really stops working after ``lifetime`` seconds.
REGISTRY_TOKEN_LEEWAY = 60
REGISTRY_BINARY = "docker-registry"
_Started = TypeVar("_Started")
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
        "transfer-encoding", "upgrade", "proxy-connection"}


def registry_available() -> bool:
    """Whether the ``docker-registry`` binary is installed."""
    return shutil.which(REGISTRY_BINARY) is not None


def require_registry() -> None:
    """Skip the calling test when ``docker-registry`` is missing (Debian package docker-registry)."""
    if not registry_available():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")


# -- certificates ---------------------------------------------------------------------------------


@dataclass
class TestCert:
    """A self-signed certificate and its RSA key, written as PEM files."""

    cert_path: Path
    key_path: Path
    key: Any = field(repr=False)
    cert: Any = field(repr=False)

    @property
    def der_b64(self) -> str:
        """The certificate in base64 DER (for a JWT ``x5c`` header)."""
        from cryptography.hazmat.primitives import serialization

        return base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()


def make_cert(directory: Path, name: str = "test", *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
              ) -> TestCert:
    """Create a self-signed RSA-2048 certificate valid for ``hosts`` (IP or DNS names)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"nydus-py {name}")])
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + _dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return TestCert(cert_path, key_path, key, cert)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(claims: dict[str, Any], cert: TestCert) -> str:
    """Return an RS256 JWT of ``claims`` with the certificate in its ``x5c`` header."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header = {"typ": "JWT", "alg": "RS256", "x5c": [cert.der_b64]}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    sig = cert.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(sig)


def htpasswd_line(user: str, password: str) -> str:
    """An htpasswd line with a bcrypt hash (what docker-registry's htpasswd auth accepts)."""
    import bcrypt

    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}"


# -- token issuer ---------------------------------------------------------------------------------


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        issuer: TokenIssuer = serving(self).context
        parts = urlsplit(self.path)
        if parts.path != "/token":
            self._reply(404, {"errors": [{"code": "NOT_FOUND"}]})
            return
        query = parse_qs(parts.query)
        user = None
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except Exception:
                user, password = None, ""
            if user is None or issuer.users.get(user) != password:
                issuer.record(user, query, status=401)
                self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]},
                            {"WWW-Authenticate": 'Basic realm="token"'})
                return
        elif not issuer.allow_anonymous:
            issuer.record(None, query, status=401)
            self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "credentials required"}]},
                        {"WWW-Authenticate": 'Basic realm="token"'})
            return
        token, expires_in = issuer.issue(user, query.get("scope", []))
        issuer.record(user, query, status=200)
        self._reply(200, {"token": token, "access_token": token, "expires_in": expires_in,
                          "issued_at": _dt.datetime.now(_dt.UTC).isoformat()})


class TokenIssuer:
    """A distribution token server of our own.

    ``users`` maps user to password; ``readonly`` users get only ``pull``; anonymous callers (when
    ``allow_anonymous``) get ``pull``. ``lifetime`` is how long a token really works;
    ``reported_expires_in`` (default: ``lifetime``) is what the answer claims, so a test can make a
    token die before the client expects it (the mid-read ``401`` path).
    """

    def __init__(self, directory: Path, *, users: dict[str, str] | None = None, service: str = "nydus-test",
                 issuer: str = "nydus-test-issuer", lifetime: float = 300,
                 allow_anonymous: bool = False, readonly: tuple[str, ...] = ()) -> None:
        self.cert = make_cert(directory, "token-signer")
        self.users = dict(users or {})
        self.service = service
        self.issuer = issuer
        self.lifetime = lifetime
        self.reported_expires_in: float | None = None
        self.allow_anonymous = allow_anonymous
        self.readonly = set(readonly)
        self.requests: list[dict[str, Any]] = []
        self.issued = 0
        self._lock = threading.Lock()
        self.server = BackgroundHTTPServer(_TokenHandler, context=self)

    @property
    def realm(self) -> str:
        """The token endpoint URL."""
        return f"{self.server.url}/token"

    def start(self) -> TokenIssuer:
        """Start serving."""
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.stop()

    def record(self, user: str | None, query: dict[str, list[str]], status: int) -> None:
        """Remember a token request (for assertions)."""
        with self._lock:
            self.requests.append({"user": user, "status": status, "scope": query.get("scope", []),
                                  "service": query.get("service", [""])[0],
                                  "client_id": query.get("client_id", [""])[0]})

    def issue(self, user: str | None, scopes: list[str]) -> tuple[str, float]:
        """Return a signed token granting ``scopes`` (as policy allows) and its claimed lifetime."""
        access = []
        for scope_param in scopes:
            for scope in scope_param.split(" "):
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                wanted = [a for a in actions.split(",") if a]
                if user is None or user in self.readonly:
                    wanted = [a for a in wanted if a == "pull"]
                access.append({"type": kind, "name": name, "actions": wanted})
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": user or "", "aud": self.service,
            "exp": now + round(self.lifetime) - REGISTRY_TOKEN_LEEWAY,
            "nbf": now - 5 - REGISTRY_TOKEN_LEEWAY, "iat": now, "jti": uuid.uuid4().hex, "access": access,
        }
        with self._lock:
            self.issued += 1
        reported = self.reported_expires_in if self.reported_expires_in is not None else self.lifetime
        return sign_jwt(claims, self.cert), reported


# -- the registry ---------------------------------------------------------------------------------


class RegistryServer:
    """``docker-registry serve`` on 127.0.0.1 with a config of ours.

    ``auth`` is ``None`` (open), ``"htpasswd"`` (``users``) or ``"token"`` (``token_issuer``).
    ``tls`` serves HTTPS with a self-signed certificate (``self.cert``; trust it via ``ca_cert_files``).
    """

    def __init__(self, directory: Path, *, auth: str | None = None, users: dict[str, str] | None = None,
                 token_issuer: TokenIssuer | None = None, tls: bool = False) -> None:
        self.directory = Path(directory)
        self.auth = auth
        self.users = dict(users or {})
        self.token_issuer = token_issuer
        self.tls = tls
        self.cert: TestCert | None = None
        self.port = free_port()
        self.process: ServerProcess | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:port``."""
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        """``https`` with TLS, else ``http``."""
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        """Base URL."""
        return f"{self.scheme}://{self.host}"

    def _config(self) -> str:
        d = self.directory
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {d / 'data'}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            f"  secret: {secrets.token_hex(16)}",
        ]
        if self.tls:
            self.cert = make_cert(d, "registry-tls")
            lines += ["  tls:", f"    certificate: {self.cert.cert_path}", f"    key: {self.cert.key_path}"]
        if self.auth == "htpasswd":
            (d / "htpasswd").write_text("".join(htpasswd_line(u, p) + "\n" for u, p in self.users.items()))
            lines += ["auth:", "  htpasswd:", "    realm: nydus-test", f"    path: {d / 'htpasswd'}"]
        elif self.auth == "token":
            issuer = self.token_issuer
            if issuer is None:
                raise ValueError("token auth needs a token_issuer")
            lines += ["auth:", "  token:", f"    realm: {issuer.realm}", f"    service: {issuer.service}",
                      f"    issuer: {issuer.issuer}", f"    rootcertbundle: {issuer.cert.cert_path}"]
        elif self.auth is not None:
            raise ValueError(f"unknown auth {self.auth!r}")
        return "\n".join(lines) + "\n"

    def _ready(self) -> bool:
        conn_cls = http.client.HTTPSConnection if self.tls else http.client.HTTPConnection
        kwargs: dict[str, Any] = {"timeout": 0.5}
        if self.tls:
            import ssl

            # private-api: probing our own test server, whose certificate is self-signed
            kwargs["context"] = ssl._create_unverified_context()
        conn = conn_cls("127.0.0.1", self.port, **kwargs)
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().status in (200, 401)
        finally:
            conn.close()

    def start(self) -> RegistryServer:
        """Write the config and start the registry (waits until ``/v2/`` answers)."""
        require_registry()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "config.yml"
        config.write_text(self._config())
        self.process = ServerProcess([REGISTRY_BINARY, "serve", str(config)], log_path=self.directory / "log",
                                     ready=self._ready)
        self.process.start()
        return self

    def stop(self) -> None:
        """Stop the registry."""
        if self.process is not None:
            self.process.stop()

    def backend_config(self, repo: str, **extra: Any) -> dict[str, Any]:
        """A ``registry`` backend config for this server (short timeouts; add ``auth`` etc.)."""
        cfg: dict[str, Any] = {"scheme": self.scheme, "host": self.host, "repo": repo, "timeout": 5,
                               "connect_timeout": 2, "retry_limit": 1}
        if self.tls and self.cert is not None:
            cfg["ca_cert_files"] = [str(self.cert.cert_path)]
        cfg.update(extra)
        return cfg

    def client(self, **kwargs: Any) -> Any:
        """A :class:`~nydus_backend_registry.client.RegistryClient` for this server."""
        from nydus_backend_registry.client import RegistryClient

        if self.tls and self.cert is not None:
            kwargs.setdefault("ca_cert_files", [str(self.cert.cert_path)])
        kwargs.setdefault("docker_config", False)
        return RegistryClient(self.host, plain_http=not self.tls, **kwargs)

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def basic_auth(user: str, password: str) -> str:
    """Upstream's ``auth`` value: base64 of ``user:password``."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# -- proxies --------------------------------------------------------------------------------------


class _ForwardingHandler(http.server.BaseHTTPRequestHandler):
    """Shared forwarding code: send the request to ``target`` and copy the answer back."""

    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, *args: Any) -> None:
        pass

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self, url: str, body: bytes, *, extra: dict[str, str] | None = None,
                 drop: tuple[str, ...] = ()) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=30)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in _HOP and k.lower() not in drop and k.lower() != "host"}
        headers["Host"] = parts.netloc
        headers.update(extra or {})
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request(self.command, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP], data
        finally:
            conn.close()

    def _relay(self, status: int, headers: list[tuple[str, str]], data: bytes, *,
               truncate: bool = False) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() != "content-length":
                self.send_header(k, v)
        length = next((v for k, v in headers if k.lower() == "content-length"), str(len(data)))
        self.send_header("Content-Length", length if self.command == "HEAD" else str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if truncate and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            reset_connection(self)
            return
        self.wfile.write(data)


@dataclass
class Fault:
    """A planned fault: applies to the next ``count`` requests whose path matches ``match``."""

    kind: str  # "status", "reset", "truncate"
    count: int
    status: int = 503
    match: Callable[[str, str], bool] = field(default=lambda method, path: True)


class _FaultHandler(_ForwardingHandler):
    def _handle(self) -> None:
        fp: FaultProxy = serving(self).context
        body = self._body()
        path = self.path
        fault = fp._take_fault(self.command, path)
        fp._log(self.command, path, fault.kind if fault else "forward")
        if fault is not None:
            if fault.kind == "reset":
                reset_connection(self)
                return
            if fault.kind == "status":
                err = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "injected"}]}).encode()
                self._send(fault.status, err, {"Content-Type": "application/json"})
                return
        parts = urlsplit(path)
        if parts.path.startswith("/_storage/"):
            self._storage(parts, body)
            return
        if fp.redirect_blobs and self.command in ("GET", "HEAD") and "/blobs/sha256:" in parts.path:
            expires = int(time.time()) + fp.redirect_expires_in
            base = fp.redirect_base or fp.server.url
            location = f"{base}/_storage{parts.path}?Expires={expires}&Signature=s3cr3tsig"
            self._send(307, b"", {"Location": location})
            return
        status, headers, data = self._forward(fp.upstream + path, body)
        self._relay(status, headers, data, truncate=fault is not None and fault.kind == "truncate")

    def _storage(self, parts: Any, body: bytes) -> None:
        fp: FaultProxy = serving(self).context
        if "Authorization" in self.headers:
            fp.storage_saw_authorization = True
        if fp.storage_denied:
            self._send(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
            return
        extra = {"Authorization": fp.storage_auth} if fp.storage_auth else None
        status, headers, data = self._forward(fp.upstream + parts.path[len("/_storage"):], body,
                                              drop=("authorization",), extra=extra)
        self._relay(status, headers, data)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle


class FaultProxy:
    """A reverse proxy in front of ``upstream`` (``http://host:port``) that injects faults.

    - :meth:`fail_next` (``n`` answers with ``status``), :meth:`reset_next` (``n`` TCP resets before
      any answer), :meth:`truncate_next` (``n`` answers cut in half, then reset);
    - ``redirect_blobs``: blob GET/HEAD answer ``307`` to ``/_storage/...`` here (a fake object
      store serving the same bytes, with an ``Expires`` signature); ``storage_denied`` makes that
      store answer ``403`` (an expired URL); ``redirect_base`` changes the scheme/host the
    ``Location`` names (default: this proxy); the store fetches from ``upstream`` with
    ``storage_auth`` as its ``Authorization`` (the client's own header is never forwarded there).
    ``requests`` lists ``(method, path, action)`` of everything seen.
    """

    def __init__(self, upstream: str, *, storage_auth: str | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.storage_auth = storage_auth
        self.redirect_base = ""
        self.redirect_blobs = False
        self.redirect_expires_in = 3600
        self.storage_denied = False
        self.storage_saw_authorization = False
        self.requests: list[tuple[str, str, str]] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.server = BackgroundHTTPServer(_FaultHandler, context=self)

    @property
    def host(self) -> str:
        """``127.0.0.1:port`` (use as the backend's ``host`` with ``scheme: http``)."""
        return self.server.address

    def start(self) -> FaultProxy:
        """Start serving."""
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.stop()

    def _add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def fail_next(self, n: int, status: int = 503, match: Callable[[str, str], bool] | None = None) -> None:
        """Answer the next ``n`` matching requests with ``status``."""
        self._add(Fault("status", n, status, match or (lambda m, p: True)))

    def reset_next(self, n: int, match: Callable[[str, str], bool] | None = None) -> None:
        """Reset the connection of the next ``n`` matching requests before answering."""
        self._add(Fault("reset", n, match=match or (lambda m, p: True)))

    def truncate_next(self, n: int, match: Callable[[str, str], bool] | None = None) -> None:
        """Send half the body of the next ``n`` matching answers, then reset."""
        self._add(Fault("truncate", n, match=match or (lambda m, p: True)))

    def clear(self) -> None:
        """Forget planned faults, modes and the request log."""
        with self._lock:
            self._faults.clear()
            self.requests.clear()
        self.redirect_blobs = False
        self.storage_denied = False
        self.storage_saw_authorization = False

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.count > 0 and f.match(method, path):
                    f.count -= 1
                    return f
        return None

    def _log(self, method: str, path: str, action: str) -> None:
        with self._lock:
            self.requests.append((method, path, action))

    def count(self, action: str | None = None, path_contains: str = "") -> int:
        """How many requests were seen (with this action / path fragment)."""
        with self._lock:
            return sum(1 for _, p, a in self.requests
                       if (action is None or a == action) and path_contains in p)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: The forwarding proxy with a ``/server/ping`` health endpoint the object-store tests use too.
ForwardingProxy = ForwardProxy


# -- pytest fixtures ------------------------------------------------------------------------------

BASIC_USER = "alice"
TOKEN_USER = "bob"
READONLY_USER = "reader"


@dataclass
class RegistryFlavour:
    """A running registry and what a test needs to use it."""

    name: str
    server: RegistryServer
    auth: str = field(default="", repr=False)  # base64 user:pass ("" for an open registry)
    password: str = field(default="", repr=False)
    issuer: TokenIssuer | None = None

    def backend_config(self, repo: str, **extra: Any) -> dict[str, Any]:
        """A backend config with this flavour's credentials."""
        cfg = self.server.backend_config(repo, **extra)
        if self.auth and "auth" not in extra:
            cfg["auth"] = self.auth
        return cfg

    def client(self, **kwargs: Any) -> Any:
        """A client with this flavour's credentials."""
        if self.auth:
            kwargs.setdefault("auth", self.auth)
        return self.server.client(**kwargs)


def _start_flavour(name: str, tmp: Path) -> RegistryFlavour:
    require_registry()
    if name == "open":
        return RegistryFlavour(name, RegistryServer(tmp / "registry").start())
    password = secrets.token_urlsafe(12)
    if name == "basic":
        server = RegistryServer(tmp / "registry", auth="htpasswd", users={BASIC_USER: password}).start()
        return RegistryFlavour(name, server, basic_auth(BASIC_USER, password), password)
    if name == "token":
        issuer = TokenIssuer(tmp / "issuer", users={TOKEN_USER: password, READONLY_USER: password},
                             readonly=(READONLY_USER,), allow_anonymous=False).start()
        server = RegistryServer(tmp / "registry", auth="token", token_issuer=issuer).start()
        return RegistryFlavour(name, server, basic_auth(TOKEN_USER, password), password, issuer)
    raise ValueError(name)


def _stop_flavour(fl: RegistryFlavour) -> None:
    fl.server.stop()
    if fl.issuer is not None:
        fl.issuer.stop()


@pytest.fixture(scope="session")
def registry_open(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryFlavour]:
    """An open docker-registry (no auth)."""
    fl = _start_flavour("open", tmp_path_factory.mktemp("registry-open"))
    yield fl
    _stop_flavour(fl)


@pytest.fixture(scope="session")
def registry_basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryFlavour]:
    """A docker-registry with htpasswd Basic auth (user ``alice``)."""
    fl = _start_flavour("basic", tmp_path_factory.mktemp("registry-basic"))
    yield fl
    _stop_flavour(fl)


@pytest.fixture(scope="session")
def registry_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryFlavour]:
    """A docker-registry with token auth from our :class:`TokenIssuer` (user ``bob``; ``reader`` pulls)."""
    fl = _start_flavour("token", tmp_path_factory.mktemp("registry-token"))
    yield fl
    _stop_flavour(fl)


class RegistryFactory:
    """Starts servers for one test and stops them all afterwards."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._started: list[Any] = []

    def _track(self, obj: _Started) -> _Started:
        self._started.append(obj)
        return obj

    def registry(self, **kwargs: Any) -> RegistryServer:
        """Start a :class:`RegistryServer` (same keyword arguments)."""
        require_registry()
        return self._track(RegistryServer(self.tmp / f"registry-{len(self._started)}", **kwargs).start())

    def token_issuer(self, **kwargs: Any) -> TokenIssuer:
        """Start a :class:`TokenIssuer`."""
        return self._track(TokenIssuer(self.tmp / f"issuer-{len(self._started)}", **kwargs).start())

    def fault_proxy(self, upstream: str, **kwargs: Any) -> FaultProxy:
        """Start a :class:`FaultProxy` in front of ``upstream``."""
        return self._track(FaultProxy(upstream, **kwargs).start())

    def forwarding_proxy(self) -> ForwardingProxy:
        """Start a :class:`ForwardingProxy`."""
        return self._track(ForwardingProxy().start())

    def close(self) -> None:
        """Stop everything started here."""
        for obj in reversed(self._started):
            obj.stop()
        self._started.clear()


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[RegistryFactory]:
    """Start extra registries, issuers and proxies for one test (all stopped afterwards)."""
    factory = RegistryFactory(tmp_path)
    yield factory
    factory.close()
