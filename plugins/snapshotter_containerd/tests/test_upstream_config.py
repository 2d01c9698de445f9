"""Upstream nydus-snapshotter's config files start ours: every key read, each ignored one logged once.

The two files in ``data/`` are written from upstream-surface.md (the performance config and the config
of upstream's documentation); upstream's own files are checked elsewhere.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from nydus_snapshotter_containerd.config import load_config
from nydus_snapshotter_containerd.upstream_keys import IGNORED, INERT, KEYS, OURS, flatten

DATA = Path(__file__).parent / "data"
UPSTREAM_FILES = ["upstream_performance_config.toml", "upstream_documented_config.toml"]
DOC = Path(__file__).resolve().parents[3] / "docs" / "snapshotter-config.md"


def _ignored_keys(path: Path, *, zero: bool = False) -> list[str]:
    """The file's ignored keys whose value asks for the feature (``zero``: those set to false/0/"")."""
    import tomllib

    return [k for k, v in flatten(tomllib.loads(path.read_text()))
            if KEYS[k].support == IGNORED and (v in (False, 0, "")) == zero]


@pytest.mark.parametrize("name", UPSTREAM_FILES)
def test_upstream_file_loads_with_one_warning_per_ignored_key(name: str) -> None:
    cfg = load_config(DATA / name)
    ignored = _ignored_keys(DATA / name)
    assert ignored, "the fixture exercises ignored keys"
    for key in ignored:
        hits = [w for w in cfg.warnings if f"'{key}'" in w]
        assert len(hits) == 1, (key, cfg.warnings)
    # a feature we lack that the file turns off (false, 0, "") is no deviation: nothing logged
    off = _ignored_keys(DATA / name, zero=True)
    assert off, "the fixture turns some ignored features off"
    assert not [w for w in cfg.warnings for key in off if f"'{key}'" in w], cfg.warnings
    # honoured keys took effect
    assert cfg.daemon_mode == "dedicated"            # "dedicated", and "multiple" is its alias
    assert cfg.threads_number == 4 and cfg.nydusd_log_rotation_size == 100
    assert cfg.log_rotation_max_size == 100 and cfg.log_rotation_max_backups == 5
    assert cfg.fs_driver == "fusedev"
    assert cfg.recover_policy == ("restart" if "performance" in name else "failover")
    assert str(cfg.cache_path) == "/var/lib/containerd-nydus/cache"     # "" keeps the default
    # /etc/nydus/nydusd-config.fusedev.json and the nydusd path do not exist here: logged, by key
    assert any("'daemon.nydusd_config'" in w for w in cfg.warnings)


def test_failover_policy_read() -> None:
    cfg = load_config(DATA / "upstream_documented_config.toml")
    assert cfg.recover_policy == "failover" and cfg.failover_policy == "resend"


def test_zero_values_keep_defaults(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('version = 1\ndaemon_mode = ""\n[daemon]\nrecover_policy = ""\nfs_driver = ""\n'
                 '[log]\nlevel = ""\nlog_rotation_max_size = 0\n')
    cfg = load_config(f)
    assert (cfg.daemon_mode, cfg.recover_policy, cfg.fs_driver, cfg.log_level, cfg.log_rotation_max_size) == \
        ("dedicated", "restart", "fusedev", "info", 200)
    assert cfg.warnings == []


def test_unimplemented_values_fall_back_with_a_warning(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('daemon_mode = "none"\n[daemon]\nfs_driver = "fscache"\n')
    cfg = load_config(f)
    assert (cfg.daemon_mode, cfg.fs_driver) == ("dedicated", "fusedev")
    assert len(cfg.warnings) == 2 and "'daemon_mode'" in cfg.warnings[0] and "fscache" in cfg.warnings[1]


def test_honoured_keys(tmp_path: Path) -> None:
    tmpl = tmp_path / "nydusd.json"
    tmpl.write_text('{"device": {"cache": {"type": "blobcache"}}, "mode": "direct", "amplify_io": 4096}')
    f = tmp_path / "c.toml"
    f.write_text(f'daemon_mode = "shared"\nuid = 7\ngid = 8\ncleanup_on_close = true\n'
                 f'[daemon]\nnydusd_config = "{tmpl}"\n'
                 f'[cache_manager]\ncache_dir = "{tmp_path}/blobs"\n'
                 f'[snapshot]\nenable_overlayfs_volatile = true\n'
                 f'[remote]\nskip_ssl_verify = true\n'
                 f'[log]\nlog_to_stdout = true\nlevel = "debug"\ndir = "{tmp_path}/logs"\n')
    cfg = load_config(f)
    assert cfg.warnings == []
    assert (cfg.daemon_mode, cfg.uid, cfg.gid, cfg.cleanup_on_close) == ("shared", 7, 8, True)
    assert cfg.daemon_template["amplify_io"] == 4096
    assert cfg.cache_path == tmp_path / "blobs" and cfg.overlay_volatile and cfg.skip_ssl_verify
    assert cfg.log_to_stdout and cfg.log_level == "debug"
    assert cfg.log_path == tmp_path / "logs" / "nydus-snapshotter.log"


def test_every_key_in_the_doc_table() -> None:
    text = DOC.read_text()
    rows = set(re.findall(r"^\| `([a-z_.]+)` \|", text, flags=re.M))
    assert rows == set(KEYS), (set(KEYS) - rows, rows - set(KEYS))
    for key, spec in KEYS.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))
        word = {IGNORED: "ignored", INERT: "inert", OURS: "nydus-py"}.get(spec.support, "honoured")
        assert word in row, row


@pytest.mark.parametrize("name", UPSTREAM_FILES)
def test_snapshotter_starts_on_upstream_file(tmp_path: Path, name: str) -> None:
    """The real command with upstream's file (root/address by flag, as upstream's unit does)."""
    from nydus_snapshotter_containerd.nydusd import NydusdManager
    from nydus_testsupport.containerd import SnapshotterProcess

    root, sock = tmp_path / "root", tmp_path / "s.sock"
    argv = [SnapshotterProcess.script(), "--config", str(DATA / name), "--root", str(root),
            "--address", str(sock), "--log-to-stdout", "--daemon-mode", "shared",
            "--nydusd-config", str(_template(tmp_path))]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sock.is_socket(), proc.poll()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        NydusdManager(root).stop()
    assert proc.returncode == 0, out
    for key in _ignored_keys(DATA / name):
        assert len(re.findall(rf"WARNING .*'{re.escape(key)}'", out)) == 1, (key, out)
    assert "Traceback" not in out
    assert not (root / "logs").exists()          # log_to_stdout: no file


def _template(tmp_path: Path) -> Path:
    t = tmp_path / "nydusd-config.json"
    t.write_text('{"device": {"backend": {"type": "registry", "config": {}}, "cache": {"type": "blobcache"}},'
                 ' "mode": "direct"}')
    return t
