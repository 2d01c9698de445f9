"""``digest_validate: true`` verifies every byte served, chunks read back from the cache included
(it implies ``cache.validate``), and the cache is private whatever the umask."""

from __future__ import annotations

import json
import logging
import os
import random
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from nydus_testkit.cli import clean_env
from nydus_testsupport.storage_helpers import build_image, localfs_config

from nydus_core.config import parse_config
from nydus_core.fs import open_fs
from nydus_core.logsetup import setup_logging
from nydus_core.rafs.image import open_image

FILES = {f"/f{i}.bin": random.Random(i).randbytes(3 * 0x1000 + 77 * i) for i in range(8)}


def _cat(boot: str, path: str, cfg: Path) -> subprocess.CompletedProcess[bytes]:
    nydus = str(Path(sys.executable).parent / "nydus")
    return subprocess.run([nydus, "cat", boot, path, "--config", str(cfg)], capture_output=True,
                          env=clean_env(), timeout=60)


def _flip_cached_chunks(data_file: Path, image_path: str) -> int:
    """Flip one byte in every chunk of the cache file; return how many."""
    image = open_image(image_path)
    raw = bytearray(data_file.read_bytes())
    n = 0
    for path in FILES:
        for c in image.chunks(image.resolve(path)):
            raw[c.uncompressed_offset + c.uncompressed_size // 2] ^= 0x5A
            n += 1
    image.close()
    data_file.write_bytes(bytes(raw))
    return n


def test_config_digest_validate_implies_cache_validate(tmp_path: Path) -> None:
    cfg = parse_config(localfs_config(tmp_path, tmp_path / "c", digest_validate=True))
    assert cfg.cache is not None and cfg.cache.validate
    assert parse_config(cfg.to_v1_dict()) == cfg
    off = parse_config(localfs_config(tmp_path, tmp_path / "c"))
    assert off.cache is not None and not off.cache.validate


@pytest.fixture()
def rotten_cache(tmp_path: Path) -> tuple[str, str, Path, Path]:
    """An image whose chunks were cached with validation off, then every one flipped on disk."""
    boot, blobs, result = build_image(tmp_path, FILES, chunk_size=0x1000)
    cache = tmp_path / "cache"
    off = localfs_config(blobs, cache, digest_validate=False, amplify_io=0)
    cfg_off = tmp_path / "off.json"
    cfg_off.write_text(json.dumps(off))
    with open_fs(boot, off) as fs:  # fill the cache in-process (the tests run `nydus cat`)
        for path, data in FILES.items():
            assert fs.read_bytes(path) == data
    assert _flip_cached_chunks(cache / f"{result.blob_id}.blob.data", boot) >= 24
    cfg_on = tmp_path / "on.json"
    cfg_on.write_text(json.dumps(localfs_config(blobs, cache, digest_validate=True, amplify_io=0)))
    return boot, blobs, cfg_off, cfg_on


def test_flipped_cache_bytes_are_refetched_under_digest_validate(rotten_cache: tuple[str, str, Path, Path]
                                                                 ) -> None:
    boot, _blobs, cfg_off, cfg_on = rotten_cache
    for path, data in FILES.items():
        proc = _cat(boot, path, cfg_on)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == data, path  # every chunk verified, the rotten ones fetched again
    for path, data in FILES.items():  # and the cache was repaired: unvalidated reads are right now
        assert _cat(boot, path, cfg_off).stdout == data


def test_flipped_cache_and_blob_give_an_error_never_wrong_bytes(rotten_cache: tuple[str, str, Path, Path]
                                                               ) -> None:
    boot, blobs, _cfg_off, cfg_on = rotten_cache
    for blob in Path(blobs).iterdir():  # the backend's copy is bad too: nothing right to serve
        raw = bytearray(blob.read_bytes())
        for i in range(0, len(raw) - 4096, 512):
            raw[i] ^= 0xFF
        blob.write_bytes(bytes(raw))
    for path in FILES:
        proc = _cat(boot, path, cfg_on)
        assert proc.returncode not in (0, 70) and proc.stdout == b"", proc.stderr
        assert b"Traceback" not in proc.stderr


def test_cache_and_log_are_private_whatever_the_umask(tmp_path: Path) -> None:
    boot, blobs, _ = build_image(tmp_path, FILES, chunk_size=0x1000)
    cache = tmp_path / "deep" / "cache"
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(localfs_config(blobs, cache, digest_validate=True)))
    proc = subprocess.run([str(Path(sys.executable).parent / "nydus"), "cat", boot, "/f1.bin", "--config",
                           str(cfg)], capture_output=True, env=clean_env(), timeout=60,
                          preexec_fn=lambda: os.umask(0))
    assert proc.returncode == 0 and proc.stdout == FILES["/f1.bin"], proc.stderr
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    made = sorted(cache.iterdir())
    assert made and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in made), \
        [(p.name, oct(p.stat().st_mode)) for p in made]
    old = os.umask(0)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("info", str(tmp_path / "nydusd.log"))
        logging.getLogger("nydus.test").info("hello")
    finally:
        os.umask(old)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert stat.S_IMODE((tmp_path / "nydusd.log").stat().st_mode) == 0o600
