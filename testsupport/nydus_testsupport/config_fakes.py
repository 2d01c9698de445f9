"""Small real backend and cache plugins for config tests, independent of the first-party plugins.

They register under upstream's names (``localfs``, ``registry``, ``blobcache`` with alias
``filecache``) with a subset of upstream's options, validated through
:class:`nydus_core.config.Section` the way real plugins can. Use :func:`fake_plugin_manager` or the
:func:`installed_config_fakes` context manager, which swaps the process-wide plugin manager.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from nydus_core import plugins
from nydus_core.config.fields import REQUIRED, Section
from nydus_core.errors import BlobNotFoundError, ConfigError, UnsupportedOperationError
from nydus_core.hookspecs import hookimpl
from nydus_core.interfaces import Backend, BlobCache, CachePolicy
from nydus_core.pluginapi import PLUGIN_API_VERSION

ENTRY_POINT_NAME = "config-fakes"


def _proxy(section: Section) -> dict[str, Any]:
    return {
        "url": section.str("url", ""),
        "ping_url": section.str("ping_url", ""),
        "fallback": section.bool("fallback", True),
        "check_interval": section.int("check_interval", 5),
        "use_http": section.bool("use_http", False),
    }


class FakeLocalfsBackend(Backend):
    """Blobs as files named by their id in ``dir`` (or one ``blob_file``), like upstream localfs."""

    name = "localfs"

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``dir``/``blob_file``/``alt_dirs``: one of the first two is required."""
        s = Section(config)
        out = {
            "dir": s.str("dir", ""),
            "blob_file": s.str("blob_file", ""),
            "alt_dirs": s.str_list("alt_dirs"),
        }
        if not out["dir"] and not out["blob_file"]:
            raise ConfigError("either 'dir' or 'blob_file' is required", key="dir")
        return out

    def _path(self, blob_id: str) -> str:
        blob_file: str = self.config["blob_file"]
        if blob_file:
            return blob_file
        for d in [self.config["dir"], *self.config["alt_dirs"]]:
            path = os.path.join(d, blob_id)
            if os.path.exists(path):
                return path
        raise BlobNotFoundError(f"blob {blob_id} not found in {self.config['dir']}")

    def size(self, blob_id: str) -> int:
        """Return the blob file's size."""
        return os.path.getsize(self._path(blob_id))

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """Read a range of the blob file."""
        with open(self._path(blob_id), "rb") as fh:
            fh.seek(offset)
            return fh.read(length)


class FakeRegistryBackend(Backend):
    """Validates a subset of upstream's registry options; cannot read (no network in config tests)."""

    name = "registry"

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check registry options: ``host`` and ``repo`` required, ``scheme`` http/https/""."""
        s = Section(config)
        out = {
            "scheme": s.str("scheme", "https", choices=("https", "http", "")),
            "host": s.str("host", REQUIRED),
            "repo": s.str("repo", REQUIRED),
            "auth": s.optional_str("auth"),
            "registry_token": s.optional_str("registry_token"),
            "skip_verify": s.bool("skip_verify", False),
            "ca_cert_files": s.str_list("ca_cert_files"),
            "timeout": s.int("timeout", 5),
            "connect_timeout": s.int("connect_timeout", 5),
            "retry_limit": s.int("retry_limit", 0, maximum=255),
            "blob_url_scheme": s.str("blob_url_scheme", ""),
            "blob_redirected_host": s.str("blob_redirected_host", ""),
            "proxy": _proxy(s.table("proxy")),
        }
        for key in ("host", "repo"):
            if not out[key]:
                raise s.error(key, "must not be empty")
        return out

    def size(self, blob_id: str) -> int:
        """Refuse: the fake talks to no registry."""
        raise UnsupportedOperationError("the fake registry backend cannot read blobs")

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """Refuse: the fake talks to no registry."""
        raise UnsupportedOperationError("the fake registry backend cannot read blobs")


class _MemoryBlobCache(BlobCache):
    def __init__(self) -> None:
        self._chunks: dict[Any, bytes] = {}
        self._lock = threading.Lock()

    def is_ready(self, chunk: Any) -> bool:
        with self._lock:
            return chunk in self._chunks

    def get(self, chunk: Any) -> bytes | None:
        with self._lock:
            return self._chunks.get(chunk)

    def put(self, chunk: Any, data: bytes) -> None:
        with self._lock:
            self._chunks[chunk] = bytes(data)


class FakeBlobCache(CachePolicy):
    """A memory cache registered as upstream's ``blobcache``/``filecache``, with upstream's keys."""

    name = "blobcache"
    aliases = ("filecache",)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``work_dir`` (default ``.``, not empty) and the boolean/str file-cache options."""
        s = Section(config)
        out = {
            "work_dir": s.str("work_dir", "."),
            "disable_indexed_map": s.bool("disable_indexed_map", False),
            "enable_encryption": s.bool("enable_encryption", False),
            "enable_convergent_encryption": s.bool("enable_convergent_encryption", False),
            "encryption_key": s.str("encryption_key", ""),
        }
        if not out["work_dir"]:
            raise s.error("work_dir", "must not be empty")
        return out

    def open_blob(self, blob: Any) -> BlobCache:
        """Return a fresh in-memory cache for one blob."""
        return _MemoryBlobCache()


#: This module is a plugin (see :func:`entry_point`): the plugin API it was written for.
NYDUS_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def nydus_register_backends() -> list[type[Backend]]:
    """Register the fake backends."""
    return [FakeLocalfsBackend, FakeRegistryBackend]


@hookimpl
def nydus_register_caches() -> list[type[CachePolicy]]:
    """Register the fake cache."""
    return [FakeBlobCache]


def entry_point() -> importlib.metadata.EntryPoint:
    """Return an entry point naming this module as a plugin."""
    return importlib.metadata.EntryPoint(name=ENTRY_POINT_NAME, value=__name__, group=plugins.GROUP)


def fake_plugin_manager() -> plugins.PluginManager:
    """Return a loaded manager with only the core and these fakes (strict: failures raise)."""
    return plugins.PluginManager(entry_points=[entry_point()], strict=True, disabled=()).load()


@contextmanager
def installed_config_fakes() -> Iterator[plugins.PluginManager]:
    """Make :func:`fake_plugin_manager` the process-wide manager for the duration of the block."""
    manager = fake_plugin_manager()
    plugins.set_manager(manager)
    try:
        yield manager
    finally:
        plugins.set_manager(None)
