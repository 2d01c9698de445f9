"""Credentials from Docker's ``config.json`` (``$DOCKER_CONFIG`` or ``~/.docker``).

Order, as the docker CLI: ``credHelpers[host]``, then ``credsStore``, then ``auths[host]`` (``auth``
= base64 ``user:pass``, or ``username``/``password``). A helper is the program
``docker-credential-<name>``, asked with ``get`` and the server on stdin; a helper that is not
installed or fails is skipped (logged at debug level, without secrets).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nydus_core.errors import ConfigError

from .config import Credentials
from .reference import _HUB_ALIASES

log = logging.getLogger(__name__)

HUB_AUTH_KEY = "https://index.docker.io/v1/"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where Docker keeps ``config.json``."""
    env = os.environ if environ is None else environ
    base = env.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _normalize(key: str) -> str:
    host = key
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix):]
    host = host.split("/", 1)[0]
    return "docker.io" if host in _HUB_ALIASES else host


def _helper(name: str, server: str, timeout: float = 10.0) -> Credentials | None:
    program = shutil.which(f"docker-credential-{name}")
    if program is None:
        log.debug("docker credential helper docker-credential-%s is not installed", name)
        return None
    try:
        out = subprocess.run([program, "get"], input=server.encode(), capture_output=True,
                             timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("docker-credential-%s failed to run: %s", name, type(exc).__name__)
        return None
    if out.returncode != 0:
        log.debug("docker-credential-%s get %s: no credentials (exit %d)", name, server, out.returncode)
        return None
    try:
        data = json.loads(out.stdout)
        user, secret = data.get("Username", ""), data.get("Secret", "")
    except (ValueError, AttributeError):
        log.debug("docker-credential-%s printed something that is not JSON", name)
        return None
    if not secret:
        return None
    return Credentials(user, secret)


def lookup(host: str, *, path: Path | None = None, environ: Mapping[str, str] | None = None
           ) -> Credentials | None:
    """Return the credentials Docker would use for registry ``host`` (``host[:port]``), or ``None``."""
    path = path or config_path(environ)
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.debug("cannot read %s: %s", path, exc.strerror)
        return None
    try:
        cfg: dict[str, Any] = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON ({exc.msg} at line {exc.lineno})", file=str(path)) from None
    want = _normalize(host)
    server = HUB_AUTH_KEY if want == "docker.io" else want
    helpers = cfg.get("credHelpers") or {}
    for key, name in helpers.items():
        if _normalize(key) == want and isinstance(name, str):
            found = _helper(name, server)
            if found is not None:
                return found
    store = cfg.get("credsStore")
    if isinstance(store, str) and store:
        found = _helper(store, server)
        if found is not None:
            return found
    for key, entry in (cfg.get("auths") or {}).items():
        if _normalize(key) != want or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            return Credentials.from_auth(entry["auth"], key=f"auths.{key}.auth", source=str(path))
        if entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"])
    return None
