"""A read-only backend: blob ``<id>`` is ``<url>/<id>``; HEAD gives its size, GET + Range its bytes."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from nydus_core.config.fields import REQUIRED, Section
from nydus_core.errors import (
    AuthError,
    BackendError,
    BlobNotFoundError,
    PermissionDeniedError,
    TransientBackendError,
)
from nydus_core.interfaces import Backend

__all__ = ["HttpDirBackend"]


class HttpDirBackend(Backend):
    """Blobs served by any HTTP server that honours ``Range`` (nginx, a CDN, a bucket website).

    Config keys: ``url`` (required) and ``timeout`` (whole seconds, default 10). Thread-safe: every
    request uses its own connection. Read-only, so :meth:`write` keeps the base class's
    UnsupportedOperationError.
    """

    name = "httpdir"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(self.validate_config(config))
        self.url = self.config["url"].rstrip("/")
        self.timeout = self.config["timeout"]

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Require an http(s) ``url``; ``timeout`` is 1..3600 seconds (default 10).

        :class:`~nydus_core.config.fields.Section` reads typed values and raises ConfigError naming
        the key (``timeout: expected an integer, got "10"``); :meth:`~Section.finish` logs a warning
        for each key nobody read, with a "did you mean" for typos (``timout``).
        """
        section = Section(config)
        url = section.str("url", REQUIRED)
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise section.error("url", "must be an http:// or https:// URL")
        timeout = section.int("timeout", 10, minimum=1, maximum=3600)
        section.finish()
        return {"url": url, "timeout": timeout}

    def _blob_url(self, blob_id: str) -> str:
        return f"{self.url}/{urllib.parse.quote(blob_id.removeprefix('sha256:'), safe='')}"

    def _request(
        self, blob_id: str, method: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; map every failure to a BackendError subclass naming the blob URL."""
        url = self._blob_url(blob_id)
        request = urllib.request.Request(url, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # range starts past the end
                return 416, dict(exc.headers), b""
            error = {404: BlobNotFoundError, 401: AuthError, 403: PermissionDeniedError}.get(
                exc.code, TransientBackendError if exc.code >= 500 else BackendError
            )
            raise error(f"httpdir: blob {blob_id}: {method} {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransientBackendError(f"httpdir: blob {blob_id}: {method} {url}: {reason}") from None

    def size(self, blob_id: str) -> int:
        """Return the blob's ``Content-Length`` (from a HEAD request)."""
        _, headers, _ = self._request(blob_id, "HEAD", {})
        try:
            return int(headers["Content-Length"])
        except (KeyError, ValueError):
            raise BackendError(f"httpdir: blob {blob_id}: the server sent no Content-Length") from None

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset`` with one ranged GET (fewer at the end, none past it)."""
        if length <= 0:
            return b""
        status, _, body = self._request(blob_id, "GET", {"Range": f"bytes={offset}-{offset + length - 1}"})
        if status == 206:
            return body[:length]
        if status == 200:  # the server ignored Range and sent the whole blob
            return body[offset:offset + length]
        return b""  # 416: nothing at or after offset
