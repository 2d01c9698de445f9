"""Every key of upstream nydus-snapshotter's config file, and what nydus-py does with it.

Upstream's ``SnapshotterConfig`` (v0.15) is the reference: a file written for upstream must start
this snapshotter. Each key is one of:

- ``honoured``: does what upstream does;
- ``ignored``: a feature nydus-py does not have; the key is accepted and, unless its value is
  upstream's zero value (``false``, ``0``, ``""``: the feature off), logged once, by name;
- ``inert``: upstream parses it and does nothing with it either; accepted silently (debug log);
- ``ours``: a nydus-py key upstream does not have (kept from nydus-py's own format).

A key in none of these tables is an error naming it. ``docs/snapshotter-config.md`` renders the table.
"""

from __future__ import annotations

from dataclasses import dataclass

HONOURED = "honoured"
IGNORED = "ignored"
INERT = "inert"
OURS = "ours"

#: Tables of upstream's file (a key that is a table in TOML).
SECTIONS: frozenset[str] = frozenset({
    "system", "system.debug", "metrics", "daemon", "snapshot", "remote", "remote.mirrors_config",
    "remote.auth", "image", "cache_manager", "log", "cgroup", "experimental", "experimental.tarfs",
})


@dataclass(frozen=True)
class KeySpec:
    """One config key: its TOML type(s), what nydus-py does with it, and a note for logs and docs."""

    types: tuple[type, ...]
    support: str
    note: str = ""


_S, _B, _I = (str,), (bool,), (int,)
_T = (dict,)
_SYSTEM = "the system controller (HTTP on system.address: daemons, records, live upgrade)"
_METRICS = "the Prometheus exporter is not implemented"
_OVLFS = "the nydus-overlayfs mount helper is not implemented"
_KUBE = "the kubeconfig keychain is not implemented"
_CRIPROXY = "the CRI image-service proxy is not implemented"
_KUBELET = "kubelet credential providers are not implemented"
_TARFS = "tarfs is not implemented"
_SIG = "bootstrap signatures are not checked"

#: key path -> spec, in upstream's order.
KEYS: dict[str, KeySpec] = {
    "version": KeySpec(_I, HONOURED, "format version; only 1"),
    "root": KeySpec(_S, HONOURED),
    "address": KeySpec(_S, HONOURED),
    "uid": KeySpec(_I, HONOURED, "owner of the gRPC socket"),
    "gid": KeySpec(_I, HONOURED, "group of the gRPC socket"),
    "daemon_mode": KeySpec(_S, HONOURED, "dedicated (multiple), shared; none is not implemented"),
    "cleanup_on_close": KeySpec(_B, HONOURED, "on shutdown, unmount the images and stop nydusd"),
    "system.enable": KeySpec(_B, HONOURED, _SYSTEM),
    "system.address": KeySpec(_S, HONOURED, _SYSTEM),
    "system.uid": KeySpec(_I, HONOURED, _SYSTEM),
    "system.gid": KeySpec(_I, HONOURED, _SYSTEM),
    "system.debug.daemon_cpu_profile_duration_secs": KeySpec(_I, IGNORED, "nydusd CPU profiling is Go-only"),
    "system.debug.pprof_address": KeySpec(_S, IGNORED, "Go pprof has no Python counterpart"),
    "metrics.address": KeySpec(_S, IGNORED, _METRICS),
    "metrics.hung_io_interval": KeySpec(_S, IGNORED, _METRICS),
    "metrics.collect_interval": KeySpec(_S, IGNORED, _METRICS),
    "daemon.nydusd_path": KeySpec(_S, HONOURED, "a missing file is logged and the bundled nydusd used"),
    "daemon.nydusd_config": KeySpec(_S, HONOURED, "a missing file is logged and the built-in template used"),
    "daemon.nydusimage_path": KeySpec(_S, IGNORED, "used upstream only for tarfs, which is not implemented"),
    "daemon.recover_policy": KeySpec(_S, HONOURED, "none, restart, failover (erofs driver; else restart)"),
    "daemon.fs_driver": KeySpec(_S, HONOURED, "fusedev, nydus-py's erofs; the others are served as fusedev"),
    "daemon.threads_number": KeySpec(_I, HONOURED, "nydusd --thread-num (0 = nydusd's default)"),
    "daemon.log_rotation_size": KeySpec(_I, HONOURED, "nydusd --log-rotation-size"),
    "daemon.failover_policy": KeySpec(_S, HONOURED, "checked and passed as nydusd --failover-policy"),
    "snapshot.enable_nydus_overlayfs": KeySpec(_B, IGNORED, _OVLFS),
    "snapshot.nydus_overlayfs_path": KeySpec(_S, IGNORED, _OVLFS),
    "snapshot.enable_kata_volume": KeySpec(_B, IGNORED, "Kata volumes are not implemented"),
    "snapshot.sync_remove": KeySpec(_B, HONOURED, "nydus-py always removes inside Remove (as true)"),
    "snapshot.enable_overlayfs_volatile": KeySpec(_B, HONOURED, "volatile on writable overlay mounts"),
    "remote.convert_vpc_registry": KeySpec(_B, INERT, "no effect upstream either"),
    "remote.skip_ssl_verify": KeySpec(_B, HONOURED, "TLS check of the snapshotter's own registry requests"),
    "remote.mirrors_config.dir": KeySpec(_S, IGNORED, "registry mirrors (hosts.toml) are not implemented"),
    "remote.auth.enable_kubeconfig_keychain": KeySpec(_B, IGNORED, _KUBE),
    "remote.auth.kubeconfig_path": KeySpec(_S, IGNORED, _KUBE),
    "remote.auth.enable_cri_keychain": KeySpec(_B, IGNORED, _CRIPROXY),
    "remote.auth.image_service_address": KeySpec(_S, IGNORED, _CRIPROXY),
    "remote.auth.enable_kubelet_credential_providers": KeySpec(_B, IGNORED, _KUBELET),
    "remote.auth.credential_provider_config": KeySpec(_S, IGNORED, _KUBELET),
    "remote.auth.credential_provider_bin_dir": KeySpec(_S, IGNORED, _KUBELET),
    "remote.auth.credential_renewal_interval": KeySpec(_S, IGNORED, "no renewal cache"),
    "image.public_key_file": KeySpec(_S, IGNORED, _SIG),
    "image.validate_signature": KeySpec(_B, IGNORED, _SIG),
    "cache_manager.disable": KeySpec(_B, INERT, "no effect upstream either"),
    "cache_manager.gc_period": KeySpec(_S, INERT, "no effect upstream either; Cleanup removes unused blobs"),
    "cache_manager.cache_dir": KeySpec(_S, HONOURED, "the blob cache directory (default <root>/cache)"),
    "log.log_to_stdout": KeySpec(_B, HONOURED, "log to stdout only (no file)"),
    "log.level": KeySpec(_S, HONOURED, "snapshotter and nydusd log level"),
    "log.dir": KeySpec(_S, HONOURED, "nydus-snapshotter.log goes there (default <root>/logs)"),
    "log.log_rotation_max_size": KeySpec(_I, HONOURED, "MB before the snapshotter's log file rotates"),
    "log.log_rotation_max_backups": KeySpec(_I, HONOURED, "rotated log files kept"),
    "log.log_rotation_max_age": KeySpec(_I, IGNORED, "rotated logs are kept by count, not age"),
    "log.log_rotation_local_time": KeySpec(_B, HONOURED, "log times are local time"),
    "log.log_rotation_compress": KeySpec(_B, IGNORED, "rotated logs are not compressed"),
    "cgroup.enable": KeySpec(_B, IGNORED, "nydusd is not put into a cgroup"),
    "cgroup.memory_limit": KeySpec(_S, IGNORED, "nydusd is not put into a cgroup"),
    "experimental.enable_stargz": KeySpec(
        _B, IGNORED, "eStargz images are not served lazily (nydusify convert reads eStargz layers)"),
    "experimental.enable_referrer_detect": KeySpec(_B, IGNORED, "referrer detection is not implemented"),
    "experimental.enable_index_detect": KeySpec(_B, IGNORED, "index detection is not implemented"),
    "experimental.enable_backend_source": KeySpec(_B, IGNORED, "the backend source API is not implemented"),
    "experimental.tarfs.enable_tarfs": KeySpec(_B, IGNORED, _TARFS),
    "experimental.tarfs.mount_tarfs_on_host": KeySpec(_B, IGNORED, _TARFS),
    "experimental.tarfs.tarfs_hint": KeySpec(_B, IGNORED, _TARFS),
    "experimental.tarfs.max_concurrent_proc": KeySpec(_I, IGNORED, _TARFS),
    "experimental.tarfs.export_mode": KeySpec(_S, IGNORED, _TARFS),
    # nydus-py's own keys (its format before it read upstream's; still accepted)
    "nydusd": KeySpec(_S, OURS, "as daemon.nydusd_path"),
    "docker_config": KeySpec(_S, OURS, "Docker config.json for registry credentials"),
    "plain_http": KeySpec((list,), OURS, "registries spoken to over plain HTTP"),
    "log_level": KeySpec(_S, OURS, "as log.level"),
    "daemon.config": KeySpec(_T, OURS, "inline nydusd config template (instead of daemon.nydusd_config)"),
    "daemon.daemon_mode": KeySpec(_S, OURS, "as top-level daemon_mode"),
}

DAEMON_MODES = {"dedicated": "dedicated", "multiple": "dedicated", "shared": "shared", "none": "none"}
FS_DRIVERS = ("fusedev", "fscache", "blockdev", "proxy", "nodev", "erofs")
RECOVER_POLICIES = ("none", "restart", "failover")
FAILOVER_POLICIES = ("none", "resend", "flush")


def flatten(data: dict[str, object], prefix: str = "") -> list[tuple[str, object]]:
    """``(dotted key, value)`` of every leaf, descending into upstream's sections only."""
    out: list[tuple[str, object]] = []
    for k, v in data.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and path in SECTIONS:
            out.extend(flatten(v, path + "."))
        else:
            out.append((path, v))
    return out
