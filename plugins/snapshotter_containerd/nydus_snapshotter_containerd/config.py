"""The snapshotter's config file (TOML), named with ``containerd-nydus-grpc --config FILE``.

```toml
address = "/run/containerd-nydus/containerd-nydus-grpc.sock"   # the gRPC socket containerd dials
root = "/var/lib/containerd-nydus"                              # metadata, snapshots, cache, mounts
nydusd = ""                 # nydusd command ("" = the nydusd next to this Python)
docker_config = ""          # Docker config.json for registry credentials ("" = ~/.docker/config.json)
plain_http = ["127.0.0.1:5000"]   # registries spoken to over plain HTTP
log_level = "info"

[daemon]                    # nydusd config template (upstream JSON v1 keys); the registry backend
                            # (scheme, host, repo, auth) is filled in per image
config = { device = { cache = { type = "blobcache" } }, digest_validate = false }
# or, as upstream nydus-snapshotter: nydusd_config = "/etc/nydus/nydusd-config.fusedev.json"
# nydusd_path = "/usr/bin/nydusd"; daemon_mode = "shared"; fs_driver = "fusedev"
```
"""

from __future__ import annotations

import copy
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nydus_core.errors import ConfigError
from nydus_core.logsetup import LEVEL_NAMES

DEFAULT_ROOT = "/var/lib/containerd-nydus"
DEFAULT_ADDRESS = "/run/containerd-nydus/containerd-nydus-grpc.sock"
_KEYS = {"address", "root", "nydusd", "docker_config", "plain_http", "log_level", "daemon"}
_DAEMON_KEYS = {"config", "nydusd_config", "nydusd_path", "daemon_mode", "fs_driver"}


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

    @property
    def root_path(self) -> Path:
        """``root`` as a path."""
        return Path(self.root)

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


def load_config(path: str | os.PathLike[str] | None) -> SnapshotterConfig:
    """Read and check the TOML file (None gives the defaults); ConfigError names the file and key."""
    if path is None:
        return SnapshotterConfig()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"{p}: unknown key '{unknown[0]}' (known: {', '.join(sorted(_KEYS))})")
    cfg = SnapshotterConfig()
    for key in ("address", "root", "nydusd", "docker_config", "log_level"):
        if key in data:
            if not isinstance(data[key], str):
                raise ConfigError(f"{p}: '{key}' must be a string")
            setattr(cfg, key, data[key])
    if cfg.log_level not in LEVEL_NAMES:
        raise ConfigError(f"{p}: 'log_level' must be one of {', '.join(LEVEL_NAMES)}")
    if not cfg.address or not cfg.root:
        raise ConfigError(f"{p}: 'address' and 'root' must not be empty")
    if "plain_http" in data:
        ph = data["plain_http"]
        if not isinstance(ph, list) or not all(isinstance(h, str) for h in ph):
            raise ConfigError(f"{p}: 'plain_http' must be a list of host[:port] strings")
        cfg.plain_http = list(ph)
    if "daemon" in data:
        _daemon_section(cfg, data["daemon"], p)
    return cfg


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


def _daemon_section(cfg: SnapshotterConfig, daemon: object, p: Path) -> None:
    """``[daemon]``: ``config`` (inline template) or upstream's ``nydusd_config`` (a JSON file),
    ``nydusd_path``; upstream's ``recover_policy`` and ``fs_driver``/``daemon_mode`` are checked."""
    if not isinstance(daemon, dict):
        raise ConfigError(f"{p}: '[daemon]' must be a table")
    unknown = sorted(set(daemon) - _DAEMON_KEYS)
    if unknown:
        known = ", ".join(sorted(_DAEMON_KEYS))
        raise ConfigError(f"{p}: unknown key 'daemon.{unknown[0]}' (known: {known})")
    if "config" in daemon and "nydusd_config" in daemon:
        raise ConfigError(f"{p}: give 'daemon.config' or 'daemon.nydusd_config', not both")
    if "config" in daemon:
        if not isinstance(daemon["config"], dict):
            raise ConfigError(f"{p}: 'daemon.config' must be a table")
        cfg.daemon_template = daemon["config"]
    if "nydusd_config" in daemon:
        cfg.daemon_template = load_daemon_template(Path(str(daemon["nydusd_config"])),
                                                   f"{p}: 'daemon.nydusd_config'")
    if "nydusd_path" in daemon:
        if not isinstance(daemon["nydusd_path"], str):
            raise ConfigError(f"{p}: 'daemon.nydusd_path' must be a string")
        cfg.nydusd = daemon["nydusd_path"]
    mode = daemon.get("daemon_mode", "shared")
    if mode != "shared":
        raise ConfigError(f"{p}: 'daemon.daemon_mode' = {mode!r} is not supported (only 'shared': "
                          "one nydusd per snapshotter)")
    driver = daemon.get("fs_driver", "fusedev")
    if driver != "fusedev":
        raise ConfigError(f"{p}: 'daemon.fs_driver' = {driver!r} is not supported (only 'fusedev')")
