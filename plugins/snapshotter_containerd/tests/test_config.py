"""The snapshotter's config file: defaults, overrides, the per-image nydusd config, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from nydus_snapshotter_containerd.config import DEFAULT_ROOT, load_config

from nydus_core.config import parse_config
from nydus_core.errors import ConfigError


def test_defaults() -> None:
    cfg = load_config(None)
    assert cfg.root == DEFAULT_ROOT and cfg.address.endswith(".sock") and cfg.plain_http == []


def test_file_and_daemon_template(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('address = "/run/x.sock"\nroot = "/var/x"\nplain_http = ["reg:5000"]\n'
                 '[daemon]\nconfig = { digest_validate = true, amplify_io = 65536, '
                 'device = { cache = { type = "blobcache" } } }\n')
    cfg = load_config(f)
    assert (cfg.address, cfg.root, cfg.plain_http) == ("/run/x.sock", "/var/x", ["reg:5000"])
    d = cfg.daemon_config(scheme="http", host="reg:5000", repo="ns/app", auth="dTpw", work_dir="/var/x/cache")
    assert d["device"]["backend"] == {"type": "registry", "config": {"scheme": "http", "host": "reg:5000",
                                                                     "repo": "ns/app", "auth": "dTpw"}}
    assert d["device"]["cache"]["config"]["work_dir"] == "/var/x/cache"
    assert d["digest_validate"] is True and d["amplify_io"] == 65536
    # the result is a config nydusd accepts
    parsed = parse_config(d, source="test")
    assert parsed is not None
    # the template is not changed by filling it in
    assert "backend" not in cfg.daemon_template["device"]


@pytest.mark.parametrize("text, word", [
    ('rooot = "/x"\n', "rooot"),
    ('address = 5\n', "address"),
    ('plain_http = "reg"\n', "plain_http"),
    ('log_level = "loud"\n', "log_level"),
    ('[daemon]\nnydusd_cfg = "x"\n', "daemon.nydusd_cfg"),
    ('daemon_mode = "triple"\n', "daemon_mode"),
    ('[daemon]\nfs_driver = "fuse"\n', "fs_driver"),
    ('[daemon]\nrecover_policy = "pray"\n', "recover_policy"),
    ('[daemon]\nfailover_policy = "drop"\n', "failover_policy"),
    ('[daemon]\nthreads_number = 2000\n', "threads_number"),
    ('version = 2\n', "version"),
    ('cache_manager = 3\n', "cache_manager"),
    ('[log]\nlevel = "loud"\n', "log.level"),
    ('[log]\nlog_to_stdout = "yes"\n', "log.log_to_stdout"),
    ('[experimental]\nenable_magic = true\n', "experimental.enable_magic"),
    ('[remote.auth]\nenable_kubeconfig_keychain = true\nenable_cri_keychain = true\n', "keychain"),
    ('address = \n', "TOML"),
])
def test_errors_name_file_and_key(tmp_path: Path, text: str, word: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(f)
    msg = str(info.value)
    assert str(f) in msg and word in msg and "\n" not in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_upstream_daemon_keys(tmp_path: Path) -> None:
    tmpl = tmp_path / "nydusd-config.fusedev.json"
    tmpl.write_text('{"device": {"backend": {"type": "registry", "config": {"timeout": 9}}, '
                    '"cache": {"type": "blobcache"}}, "mode": "direct", "iostats_files": true}')
    f = tmp_path / "c.toml"
    f.write_text(f'[daemon]\nnydusd_config = "{tmpl}"\nnydusd_path = "/bin/true"\ndaemon_mode = "shared"\n')
    cfg = load_config(f)
    assert cfg.nydusd == "/bin/true" and cfg.daemon_mode == "shared" and cfg.warnings == []
    f.write_text('[daemon]\nnydusd_path = "/opt/nydusd"\n')
    missing = load_config(f)
    assert missing.nydusd == "" and [w for w in missing.warnings if "'daemon.nydusd_path'" in w]
    d = cfg.daemon_config(scheme="https", host="h", repo="r", auth=None, work_dir="/c")
    assert d["device"]["backend"]["config"] == {"timeout": 9, "scheme": "https", "host": "h", "repo": "r"}
    assert d["iostats_files"] is True


def test_cli_flags_errors_are_one_line(tmp_path: Path) -> None:
    import subprocess

    from nydus_testsupport.containerd import SnapshotterProcess

    base = [SnapshotterProcess.script(), "--root", str(tmp_path / "r"), "--address", str(tmp_path / "s.sock")]
    for extra, word in ((["--nydusd-config", str(tmp_path / "none.json")], "none.json"),
                        (["--daemon-mode", "triple"], "triple")):
        res = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode != 0 and word in res.stderr, res.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    res = subprocess.run([*base, "--nydusd-config", str(bad)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode != 0 and res.stderr.count("\n") == 1 and str(bad) in res.stderr
    assert not (tmp_path / "s.sock").exists()
