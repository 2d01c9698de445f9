"""``GET|PUT /api/v1/config``: the running config of a mounted instance, and upstream's run-time change.

``GET /api/v1/config[?id=MOUNTPOINT]`` answers the instance's config as a JSON v1 object with every
secret masked by :func:`nydus_core.redact.masked` (``auth``, ``registry_token``, keys, passwords,
URL user-info and query values). ``PUT /api/v1/config[?id=MOUNTPOINT]`` with ``{"registry_auth":
"<base64 user:pass>"}`` replaces the registry backend's credentials in place (upstream's only
run-time-changeable key); any other key is refused. Without ``?id`` the only instance is meant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nydus_core.errors import NydusError
from nydus_core.redact import masked

from .httpserver import Handler, HttpError, Request

log = logging.getLogger("nydusd")

#: Keys ``PUT /api/v1/config`` accepts (upstream's runtime-changeable config).
RUNTIME_KEYS = ("registry_auth",)


def config_routes(instance: Callable[[Request], Any]) -> dict[tuple[str, str], Handler]:
    """The two routes, given how the API finds the instance a request names."""

    async def get_config(req: Request) -> tuple[int, Any]:
        inst = instance(req)
        return 200, masked(inst.config.to_v1_dict())

    async def put_config(req: Request) -> tuple[int, Any]:
        inst = instance(req)
        body = req.json()
        if not isinstance(body, dict) or not body:
            raise HttpError(400, "body must be a JSON object such as {\"registry_auth\": \"<base64>\"}")
        unknown = sorted(set(body) - set(RUNTIME_KEYS))
        if unknown:
            raise HttpError(400, f"'{unknown[0]}' cannot be changed at run time (only "
                                 f"{', '.join(RUNTIME_KEYS)})")
        auth = body["registry_auth"]
        if auth is not None and not isinstance(auth, str):
            raise HttpError(400, "'registry_auth' must be a base64 string (user:password) or null")
        backend = getattr(inst.fs, "backend", None)
        update = getattr(backend, "update_auth", None)
        if update is None:
            kind = inst.config.to_v1_dict().get("device", {}).get("backend", {}).get("type", "?")
            raise HttpError(400, f"the {kind} backend of {inst.mountpoint or '/'} has no registry "
                                 "credentials")
        try:
            update(auth or None)
        except NydusError as exc:
            raise HttpError(400, str(exc)) from None
        log.info("registry credentials of %s replaced through the API", inst.mountpoint or "/")
        return 204, None

    return {("GET", "/api/v1/config"): get_config, ("PUT", "/api/v1/config"): put_config}
