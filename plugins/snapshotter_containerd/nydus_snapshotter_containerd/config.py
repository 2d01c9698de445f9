"""The snapshotter's config file (TOML), named with ``containerd-nydus-grpc --config FILE``.

Upstream nydus-snapshotter's files are read as they are (``version = 1``, top-level ``daemon_mode``,
``[daemon]``, ``[log]``, ``[cache_manager]``, …): every key upstream has is accepted; keys of
features nydus-py lacks are logged once each, by name (:mod:`.upstream_keys` is the per-key table);
only keys upstream does not have (and nydus-py's own, below) are errors. As upstream, ``false``,
``0`` or ``""`` leave a key at its default.

```toml
version = 1
root = "/var/lib/containerd-nydus"
address = "/run/containerd-nydus/containerd-nydus-grpc.sock"
daemon_mode = "dedicated"          # or "shared" (one nydusd for every image)

[daemon]
nydusd_config = "/etc/nydus/nydusd-config.fusedev.json"   # the per-image nydusd config template
recover_policy = "restart"

[log]
level = "info"
```

nydus-py's own keys, kept: ``nydusd`` (= ``daemon.nydusd_path``), ``docker_config`` (registry
credentials file), ``plain_http`` (registries spoken to over HTTP), ``log_level`` (= ``log.level``),
``[daemon] config`` (the template inline, as a TOML table).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nydus_core.config import decode_text
from nydus_core.errors import ConfigError
from nydus_core.logsetup import LEVEL_NAMES, LEVELS

from .upstream_keys import (
    DAEMON_MODES,
    FAILOVER_POLICIES,
    FS_DRIVERS,
    IGNORED,
    KEYS,
    RECOVER_POLICIES,
    SECTIONS,
    flatten,
)

log = logging.getLogger("containerd-nydus")

DEFAULT_ROOT = "/var/lib/containerd-nydus"
DEFAULT_ADDRESS = "/run/containerd-nydus/containerd-nydus-grpc.sock"
DEFAULT_SYSTEM_ADDRESS = "/run/containerd-nydus/system.sock"
#: Upstream's default daemon mode (``multiple``, an alias of ``dedicated``).
DEFAULT_DAEMON_MODE = "dedicated"
#: fs drivers this snapshotter serves; upstream's others are handled as ``fusedev`` (logged).
SERVED_FS_DRIVERS = ("fusedev", "erofs")


def default_daemon_template() -> dict[str, Any]:
    """The nydusd config used when the file gives none: blob cache on, no validation."""
    return {"device": {"backend": {"type": "registry", "config": {}},
                       "cache": {"type": "blobcache", "config": {}}},
            "mode": "direct", "digest_validate": False}


@dataclass
class SnapshotterConfig:
    """Validated settings of one snapshotter process."""

    address: str = DEFAULT_ADDRESS
    root: str = DEFAULT_ROOT
    nydusd: str = ""
    docker_config: str = ""
    plain_http: list[str] = field(default_factory=list)
    log_level: str = "info"
    daemon_template: dict[str, Any] = field(default_factory=default_daemon_template)
    uid: int = 0
    gid: int = 0
    daemon_mode: str = DEFAULT_DAEMON_MODE
    cleanup_on_close: bool = False
    fs_driver: str = "fusedev"
    recover_policy: str = "restart"
    failover_policy: str = "resend"
    threads_number: int = 0
    nydusd_log_rotation_size: int = 100
    overlay_volatile: bool = False
    skip_ssl_verify: bool = False
    cache_dir: str = ""
    log_to_stdout: bool = False
    log_dir: str = ""
    log_rotation_max_size: int = 200
    log_rotation_max_backups: int = 5
    #: upstream's system controller (HTTP on a unix socket, :mod:`.system`)
    system_enable: bool = False
    system_address: str = DEFAULT_SYSTEM_ADDRESS
    system_uid: int = 0
    system_gid: int = 0
    #: One line per deviation from upstream (a key nydus-py ignores), logged at start.
    warnings: list[str] = field(default_factory=list)
    #: Where the file came from (for messages); empty for the built-in defaults.
    source: str = ""

    @property
    def root_path(self) -> Path:
        """``root`` as a path."""
        return Path(self.root)

    @property
    def cache_path(self) -> Path:
        """The blob cache directory: ``cache_manager.cache_dir`` or ``<root>/cache``."""
        return Path(self.cache_dir) if self.cache_dir else self.root_path / "cache"

    @property
    def log_path(self) -> Path:
        """The snapshotter's log file: ``<log.dir or <root>/logs>/nydus-snapshotter.log``."""
        return (Path(self.log_dir) if self.log_dir else self.root_path / "logs") / "nydus-snapshotter.log"

    def daemon_config(self, *, scheme: str, host: str, repo: str, auth: str | None,
                      work_dir: str) -> dict[str, Any]:
        """The nydusd (JSON v1) config of one image: the template with its registry backend and cache dir."""
        cfg = copy.deepcopy(self.daemon_template)
        device = cfg.setdefault("device", {})
        backend = device.setdefault("backend", {})
        backend["type"] = "registry"
        bcfg = backend.setdefault("config", {})
        bcfg.update({"scheme": scheme, "host": host, "repo": repo})
        if auth:
            bcfg["auth"] = auth
        cache = device.setdefault("cache", {"type": "blobcache"})
        if cache.get("type") in ("blobcache", "filecache"):
            cache.setdefault("config", {})["work_dir"] = work_dir
        cfg.setdefault("mode", "direct")
        return cfg

    def set_daemon_mode(self, mode: str, what: str) -> None:
        """Set ``daemon_mode`` from upstream's names (``multiple`` = ``dedicated``); ``none`` is logged."""
        if mode not in DAEMON_MODES:
            raise ConfigError(f"{what} = {mode!r}: must be one of {', '.join(DAEMON_MODES)}")
        if mode == "none":
            self.warnings.append(f"{what} = 'none': runtime-described mounts (nydus-overlayfs, Kata) are not "
                                 f"implemented; using '{DEFAULT_DAEMON_MODE}'")
            mode = DEFAULT_DAEMON_MODE
        self.daemon_mode = DAEMON_MODES[mode]

    def set_fs_driver(self, driver: str, what: str) -> None:
        """Set ``fs_driver``; upstream's drivers nydus-py lacks are logged and served as ``fusedev``."""
        if driver not in FS_DRIVERS:
            raise ConfigError(f"{what} = {driver!r}: must be one of {', '.join(FS_DRIVERS)}")
        if driver not in SERVED_FS_DRIVERS:
            self.warnings.append(f"{what} = {driver!r}: not implemented (fscache needs kernel cachefiles "
                                 "on-demand; blockdev/proxy/nodev need tarfs or Kata); using 'fusedev'")
            driver = "fusedev"
        self.fs_driver = driver


def load_config(path: str | os.PathLike[str] | None) -> SnapshotterConfig:
    """Read and check the TOML file (None gives the defaults); ConfigError names the file and key."""
    if path is None:
        return SnapshotterConfig()
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    data = dict(decode_text(text, source=str(p), syntax="toml"))  # bounded: one-line errors
    return _from_dict(data, p)


def _from_dict(data: dict[str, Any], p: Path) -> SnapshotterConfig:
    cfg = SnapshotterConfig(source=str(p))
    values: dict[str, Any] = {}
    for key, value in flatten(data):
        spec = KEYS.get(key)
        if spec is None:
            if key in SECTIONS:
                raise ConfigError(f"{p}: '[{key}]' must be a table")
            raise ConfigError(f"{p}: unknown key '{key}' (not a key of upstream nydus-snapshotter's config; "
                              "see docs/snapshotter-config.md)")
        if not isinstance(value, spec.types) or (isinstance(value, bool) and bool not in spec.types):
            kind = {str: "a string", bool: "true or false", int: "an integer", list: "a list",
                    dict: "a table"}[spec.types[0]]
            raise ConfigError(f"{p}: '{key}' must be {kind}")
        values[key] = value
        if spec.support == IGNORED:
            if value in (False, 0, ""):  # upstream's zero value: the feature is off, nothing is lost
                log.debug("config key '%s' = %r: %s; off, as here", key, value, spec.note)
            else:
                cfg.warnings.append(f"config key '{key}' = {value!r}: {spec.note}; ignored")
    _apply(cfg, values, p)
    return cfg


def _apply(cfg: SnapshotterConfig, v: dict[str, Any], p: Path) -> None:
    """Fill ``cfg`` from the flat, type-checked ``v``; zero values keep the defaults (upstream's rule)."""
    if v.get("version", 1) not in (0, 1):
        raise ConfigError(f"{p}: 'version' = {v['version']}: only version 1 is known")
    for key, attr in (("root", "root"), ("address", "address"), ("docker_config", "docker_config"),
                      ("cache_manager.cache_dir", "cache_dir"), ("log.dir", "log_dir"),
                      ("system.address", "system_address")):
        if v.get(key):
            setattr(cfg, attr, v[key])
    for key, attr in (("uid", "uid"), ("gid", "gid"), ("system.uid", "system_uid"),
                      ("system.gid", "system_gid"),
                      ("daemon.log_rotation_size", "nydusd_log_rotation_size"),
                      ("log.log_rotation_max_size", "log_rotation_max_size"),
                      ("log.log_rotation_max_backups", "log_rotation_max_backups")):
        if v.get(key):
            if v[key] < 0:
                raise ConfigError(f"{p}: '{key}' must not be negative")
            setattr(cfg, attr, v[key])
    for key, attr in (("cleanup_on_close", "cleanup_on_close"), ("log.log_to_stdout", "log_to_stdout"),
                      ("snapshot.enable_overlayfs_volatile", "overlay_volatile"),
                      ("remote.skip_ssl_verify", "skip_ssl_verify"), ("system.enable", "system_enable")):
        if v.get(key):
            setattr(cfg, attr, True)
    level = v.get("log.level") or v.get("log_level") or ""
    if level:
        if level.lower() not in LEVELS:
            key = "log.level" if v.get("log.level") else "log_level"
            raise ConfigError(f"{p}: '{key}' must be one of {', '.join(LEVEL_NAMES)}")
        cfg.log_level = level.lower()
    if "plain_http" in v:
        if not all(isinstance(h, str) for h in v["plain_http"]):
            raise ConfigError(f"{p}: 'plain_http' must be a list of host[:port] strings")
        cfg.plain_http = list(v["plain_http"])
    threads = v.get("daemon.threads_number", 0)
    if not 0 <= threads <= 1024:
        raise ConfigError(f"{p}: 'daemon.threads_number' = {threads}: must be 0 to 1024")
    cfg.threads_number = threads
    mode = v.get("daemon_mode") or v.get("daemon.daemon_mode") or ""
    if mode:
        cfg.set_daemon_mode(mode, f"{p}: 'daemon_mode'")
    if v.get("daemon.fs_driver"):
        cfg.set_fs_driver(v["daemon.fs_driver"], f"{p}: 'daemon.fs_driver'")
    _policies(cfg, v, p)
    _daemon_files(cfg, v, p)
    if v.get("remote.auth.enable_kubeconfig_keychain") and v.get("remote.auth.enable_cri_keychain"):
        raise ConfigError(f"{p}: 'remote.auth.enable_kubeconfig_keychain' and "
                          "'remote.auth.enable_cri_keychain' cannot both be on")
    if not cfg.address or not cfg.root:
        raise ConfigError(f"{p}: 'address' and 'root' must not be empty")


def _policies(cfg: SnapshotterConfig, v: dict[str, Any], p: Path) -> None:
    recover = v.get("daemon.recover_policy") or "restart"
    if recover not in RECOVER_POLICIES:
        raise ConfigError(f"{p}: 'daemon.recover_policy' = {recover!r}: must be one of "
                          f"{', '.join(RECOVER_POLICIES)}")
    cfg.recover_policy = recover
    failover = v.get("daemon.failover_policy") or "resend"
    if failover not in FAILOVER_POLICIES:
        raise ConfigError(f"{p}: 'daemon.failover_policy' = {failover!r}: must be one of "
                          f"{', '.join(FAILOVER_POLICIES)}")
    cfg.failover_policy = failover


def _daemon_files(cfg: SnapshotterConfig, v: dict[str, Any], p: Path) -> None:
    """``daemon.config`` / ``daemon.nydusd_config`` (the template) and ``daemon.nydusd_path``/``nydusd``."""
    if "daemon.config" in v and v.get("daemon.nydusd_config"):
        raise ConfigError(f"{p}: give 'daemon.config' or 'daemon.nydusd_config', not both")
    if "daemon.config" in v:
        cfg.daemon_template = v["daemon.config"]
    tmpl = v.get("daemon.nydusd_config") or ""
    if tmpl:
        if Path(tmpl).exists():
            cfg.daemon_template = load_daemon_template(Path(tmpl), f"{p}: 'daemon.nydusd_config'")
        else:
            cfg.warnings.append(f"{p}: 'daemon.nydusd_config' = {tmpl!r}: no such file; using the built-in "
                                "nydusd config (registry backend, blob cache)")
    nydusd = v.get("daemon.nydusd_path") or v.get("nydusd") or ""
    if nydusd:
        key = "daemon.nydusd_path" if v.get("daemon.nydusd_path") else "nydusd"
        if os.sep in nydusd and not os.access(nydusd, os.X_OK):
            cfg.warnings.append(f"{p}: '{key}' = {nydusd!r}: not an executable file; using the nydusd "
                                "installed with this snapshotter")
        else:
            cfg.nydusd = nydusd


def load_daemon_template(path: Path, what: str) -> dict[str, Any]:
    """Read a nydusd JSON config used as the per-image template; ConfigError naming ``what``."""
    try:
        tmpl = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what}: {path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what}: {path}: not a JSON config: {exc}") from None
    if not isinstance(tmpl, dict):
        raise ConfigError(f"{what}: {path}: must hold a JSON object")
    return tmpl


__all__ = ["DEFAULT_ADDRESS", "DEFAULT_DAEMON_MODE", "DEFAULT_ROOT", "SERVED_FS_DRIVERS", "SnapshotterConfig",
           "default_daemon_template", "load_config", "load_daemon_template"]
