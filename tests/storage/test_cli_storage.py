"""`nydus ls`, `nydus cat` and `nydus cache ls|du|gc`, run as the installed command."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from nydus_testkit.cli import clean_env, run_nydus
from nydus_testsupport.storage_helpers import build_image, localfs_config

NYDUS = str(Path(sys.executable).parent / "nydus")


@pytest.fixture(scope="module")
def img(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, dict, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    rnd = random.Random(61)
    files: dict[str, bytes | str | None] = {
        "/etc/hosts": b"127.0.0.1 localhost\n",
        "/bin/blob": rnd.randbytes(200_000),
        "/bin/sh": "->blob",
        "/empty": None,
    }
    boot, blobs, _ = build_image(tmp, files, chunk_size=0x10000)
    return boot, blobs, files, tmp


def _cat(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([NYDUS, "cat", *args], capture_output=True, env=clean_env(), timeout=60)


def test_ls(img: tuple) -> None:
    boot, _, files, _ = img
    out = run_nydus("ls", boot)
    assert out.returncode == 0 and out.stdout.split() == ["bin", "empty", "etc"]
    long = run_nydus("ls", boot, "/bin", "-l")
    assert long.returncode == 0
    lines = long.stdout.splitlines()
    assert lines[0].startswith("-rw") and lines[0].endswith(" blob") and " 200000 " in lines[0]
    assert lines[1].startswith("l") and lines[1].endswith("sh -> blob")
    js = json.loads(run_nydus("ls", boot, "/etc/hosts", "--json").stdout)
    assert js == [{**js[0], "name": "hosts", "type": "file", "size": len(files["/etc/hosts"]),
                   "target": None}]
    missing = run_nydus("ls", boot, "/nope")
    assert missing.returncode != 0
    assert missing.stderr.strip() == f"error: {boot}: /nope: No such file or directory"


def test_cat_with_config_and_blob_dir(img: tuple) -> None:
    boot, blobs, files, tmp = img
    cfg = tmp / "cfg.json"
    cfg.write_text(json.dumps(localfs_config(blobs, tmp / "cache", digest_validate=True)))
    proc = _cat(boot, "/bin/sh", "/etc/hosts", "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == files["/bin/blob"] + files["/etc/hosts"]
    assert any((tmp / "cache").glob("*.blob.data"))
    proc = _cat(boot, "/etc/hosts", "-D", blobs)
    assert proc.returncode == 0 and proc.stdout == files["/etc/hosts"]


@pytest.mark.parametrize(("args", "message"), [
    (["/etc/hosts"], "give --config CFG"),
    (["/empty", "-D", "BLOBS"], "Is a directory"),
    (["/etc/hosts", "--config", "NOCFG"], "missing.json"),
])
def test_cat_errors_are_one_line(img: tuple, args: list[str], message: str) -> None:
    boot, blobs, _, tmp = img
    args = [a.replace("BLOBS", blobs).replace("NOCFG", str(tmp / "missing.json")) for a in args]
    proc = _cat(boot, *args)
    err = proc.stderr.decode()
    assert proc.returncode != 0 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and message in err


def test_cat_unknown_backend_gets_the_install_hint(img: tuple) -> None:
    boot, _, _, tmp = img
    cfg = tmp / "oss.json"
    cfg.write_text(json.dumps({"device": {"backend": {"type": "azure", "config": {}}}, "mode": "direct"}))
    proc = _cat(boot, "/etc/hosts", "--config", str(cfg))
    err = proc.stderr.decode()
    assert proc.returncode != 0 and "Unknown backend 'azure'" in err and "Traceback" not in err


def test_cache_ls_du_gc(img: tuple) -> None:
    boot, blobs, _, tmp = img
    work = tmp / "gc-cache"
    cfg = tmp / "gc.json"
    cfg.write_text(json.dumps(localfs_config(blobs, work)))
    assert _cat(boot, "/bin/blob", "--config", str(cfg)).returncode == 0
    ls = json.loads(run_nydus("cache", "ls", "--config", str(cfg), "--json").stdout)
    assert len(ls) == 1 and not ls[0]["in_use"]
    assert (ls[0]["ready_chunks"], ls[0]["chunk_count"]) == (4, 5)  # /bin/blob, not /etc/hosts
    text = run_nydus("cache", "ls", "-w", str(work)).stdout
    assert ls[0]["blob_id"] in text
    du = json.loads(run_nydus("cache", "du", "-w", str(work), "--json").stdout)
    assert du["blobs"] == 1 and du["disk_usage"] >= 200_000
    human = run_nydus("cache", "du", "-w", str(work)).stdout
    assert human.split("\t")[0].endswith("K") and human.split("\t")[1] == str(du["disk_usage"])
    noarg = run_nydus("cache", "gc", "-w", str(work))
    assert noarg.returncode != 0 and "--max-size" in noarg.stderr
    bad = run_nydus("cache", "gc", "-w", str(work), "--max-size", "lots")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "'--max-size': expected a size like 1073741824 or 1G, got 'lots'" in bad.stderr
    keep = run_nydus("cache", "gc", "-w", str(work), "--max-size", "10M")
    assert keep.returncode == 0 and "0 blobs removed" in keep.stdout
    gone = run_nydus("cache", "gc", "--config", str(cfg), "--max-size", "0")
    assert gone.returncode == 0 and f"removed {ls[0]['blob_id']}" in gone.stdout
    assert json.loads(run_nydus("cache", "ls", "-w", str(work), "--json").stdout) == []


def test_cache_commands_need_a_cache(img: tuple) -> None:
    _, blobs, _, tmp = img
    cfg = tmp / "nocache.json"
    cfg.write_text(json.dumps(localfs_config(blobs)))
    proc = run_nydus("cache", "du", "--config", str(cfg))
    assert proc.returncode != 0 and "device.cache.type" in proc.stderr
