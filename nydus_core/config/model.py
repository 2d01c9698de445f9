"""The validated nydusd config: frozen dataclasses, one model for v1 JSON and v2 JSON/TOML.

See ``docs/config.md`` for every key, its default, and where we differ from upstream.
"""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from .. import plugins
from ..errors import ConfigError
from ..redact import SECRET_KEYS, masked
from .fields import MAX_IO_SIZE
from .frozen import FrozenMap, freeze, thaw

if TYPE_CHECKING:
    from ..interfaces import Backend, CachePolicy

__all__ = [
    "DEFAULT_AMPLIFY_IO",
    "DEFAULT_MERGING_SIZE",
    "DEFAULT_PREFETCH_THREADS",
    "MAX_AMPLIFY_IO",
    "MAX_MERGING_SIZE",
    "MAX_PREFETCH_THREADS",
    "MODES",
    "SECRET_KEYS",
    "BackendConfig",
    "CacheConfig",
    "NydusConfig",
    "PrefetchConfig",
]

MODES: Final = ("direct", "cached")
DEFAULT_AMPLIFY_IO: Final = 1 << 20
MAX_AMPLIFY_IO: Final = MAX_IO_SIZE
DEFAULT_PREFETCH_THREADS: Final = 8
MAX_PREFETCH_THREADS: Final = 1024
DEFAULT_MERGING_SIZE: Final = 1 << 20
MAX_MERGING_SIZE: Final = MAX_IO_SIZE

def _masked(options: Mapping[str, Any]) -> dict[str, Any]:
    out = masked(thaw(options))
    assert isinstance(out, dict)
    return out


@dataclass(frozen=True, repr=False)
class BackendConfig:
    """Where blobs come from: the backend plugin's name and its options, validated by that plugin."""

    type: str
    config: FrozenMap = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        if not isinstance(self.config, FrozenMap):
            object.__setattr__(self, "config", freeze(self.config))

    def options(self) -> dict[str, Any]:
        """Return the options as a plain, mutable deep copy."""
        return thaw(self.config)

    def plugin_class(self) -> builtins.type[Backend]:
        """Return the installed backend class for :attr:`type`."""
        return plugins.registry("backend").get(self.type)

    def create(self) -> Backend:
        """Instantiate the backend plugin with these options."""
        return self.plugin_class()(self.options())

    def __repr__(self) -> str:
        return f"BackendConfig(type={self.type!r}, config={_masked(self.config)!r})"


@dataclass(frozen=True, repr=False)
class CacheConfig:
    """The local chunk cache: the cache plugin's name (aliases resolved) and its validated options."""

    type: str
    config: FrozenMap = field(default_factory=FrozenMap)
    compressed: bool = False
    validate: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.config, FrozenMap):
            object.__setattr__(self, "config", freeze(self.config))

    @property
    def work_dir(self) -> str | None:
        """Return the cache's ``work_dir`` option, if the plugin has one."""
        value = self.config.get("work_dir")
        return value if isinstance(value, str) else None

    def options(self) -> dict[str, Any]:
        """Return the options as a plain, mutable deep copy."""
        return thaw(self.config)

    def plugin_class(self) -> builtins.type[CachePolicy]:
        """Return the installed cache class for :attr:`type`."""
        return plugins.registry("cache").get(self.type)

    def create(self) -> CachePolicy:
        """Instantiate the cache plugin with these options and the ``validate`` flag."""
        return self.plugin_class()(self.options(), validate=self.validate)

    def __repr__(self) -> str:
        return (
            f"CacheConfig(type={self.type!r}, config={_masked(self.config)!r}, "
            f"compressed={self.compressed!r}, validate={self.validate!r})"
        )


@dataclass(frozen=True)
class PrefetchConfig:
    """The one effective prefetch setting (upstream v1 ``fs_prefetch`` names).

    From a v2 config it is merged from ``[rafs.prefetch]`` and ``[cache.prefetch]`` (docs/config.md).
    When ``enable`` is false the parser gives the defaults, so disabled settings compare equal.
    """

    enable: bool = False
    threads_count: int = DEFAULT_PREFETCH_THREADS
    merging_size: int = DEFAULT_MERGING_SIZE
    bandwidth_rate: int = 0
    prefetch_all: bool = True
    stream_prefetch: bool = False


@dataclass(frozen=True)
class NydusConfig:
    """A validated nydusd config (what ``-C/--config`` or the mount API's ``config`` string holds).

    ``backend`` is None when the config names none (v2 allows that; reading data then fails with
    :meth:`require_backend`'s message); ``cache`` is None for no cache (``dummycache``, ``""``, or
    no cache section). ``source``, ``version`` (the format read: 1 or 2) and ``warnings`` do not take
    part in equality, so the same settings compare equal whichever format they came from.
    """

    backend: BackendConfig | None = None
    cache: CacheConfig | None = None
    id: str = ""
    mode: str = "direct"
    digest_validate: bool = False
    iostats_files: bool = False
    enable_xattr: bool = False
    access_pattern: bool = False
    latest_read_files: bool = False
    amplify_io: int = DEFAULT_AMPLIFY_IO
    fs_prefetch: PrefetchConfig = field(default_factory=PrefetchConfig)
    source: str = field(default="<config>", compare=False)
    version: int = field(default=1, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        # digest_validate covers every byte served: chunks read back from the cache too (upstream
        # needs cache.validate for that as well; a user asking for validation expects it)
        if self.digest_validate and self.cache is not None and not self.cache.validate:
            object.__setattr__(self, "cache", replace(self.cache, validate=True))

    def require_backend(self) -> BackendConfig:
        """Return the backend, or raise a ConfigError saying the config names none."""
        if self.backend is None:
            key = "device.backend" if self.version == 1 else "backend"
            raise ConfigError("no backend configured; blob data cannot be read", file=self.source, key=key)
        return self.backend

    def to_v1_dict(self) -> dict[str, Any]:
        """Return the config as upstream's v1 JSON object (``RafsConfig``), defaults filled in.

        ``parse_config(cfg.to_v1_dict()) == cfg`` holds; the daemon's mount API passes configs on
        as ``json.dumps`` of this. Secrets are included (the mount API needs them).
        """
        device: dict[str, Any] = {"id": self.id}
        if self.backend is not None:
            device["backend"] = {"type": self.backend.type, "config": self.backend.options()}
        if self.cache is not None:
            device["cache"] = {
                "type": self.cache.type,
                "compressed": self.cache.compressed,
                "validate": self.cache.validate,
                "config": self.cache.options(),
            }
        return {
            "device": device,
            "mode": self.mode,
            "digest_validate": self.digest_validate,
            "iostats_files": self.iostats_files,
            "enable_xattr": self.enable_xattr,
            "access_pattern": self.access_pattern,
            "latest_read_files": self.latest_read_files,
            "amplify_io": self.amplify_io,
            "fs_prefetch": asdict(self.fs_prefetch),
        }

    def to_v1_json(self) -> str:
        """Return :meth:`to_v1_dict` as a JSON string (the form the mount API carries)."""
        return json.dumps(self.to_v1_dict(), sort_keys=True)

    @classmethod
    def from_localfs_dir(
        cls, blob_dir: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None
    ) -> NydusConfig:
        """Build the config nydusd's ``-D/--localfs-dir DIR`` implies: the ``localfs`` backend on DIR.

        Unlike upstream (which also turns on a file cache whose work dir is DIR itself), no cache is
        configured unless ``cache_dir`` is given: reading local blobs through a local copy only doubles
        the disk use. With ``cache_dir``, the ``blobcache`` cache keeps its files there.
        """
        from .parse import parse_config

        source = "-D/--localfs-dir"
        path = os.fspath(blob_dir)
        if not os.path.isdir(path):
            raise ConfigError(f"{path}: not a directory", file=source)
        data: dict[str, Any] = {"version": 2, "backend": {"type": "localfs", "localfs": {"dir": path}}}
        if cache_dir is not None:
            data["cache"] = {"type": "blobcache", "filecache": {"work_dir": os.fspath(cache_dir)}}
        return parse_config(data, source=source)
