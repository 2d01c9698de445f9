"""Prefetch through the real plugins (table, files, all) on built images with the real localfs
backend and blobcache: what gets fetched, the bandwidth limit, user reads going first, and the
access-pattern loop back into `nydus-image create --prefetch-policy fs`."""

from __future__ import annotations

import importlib.metadata
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from nydus_testkit.cli import clean_env
from nydus_testsupport.storage_helpers import build_image, localfs_config

from nydus_core.errors import DuplicatePluginError, UnknownPluginError
from nydus_core.fs import open_fs
from nydus_core.interfaces import Prefetcher, PrefetchRequest
from nydus_core.pluginapi import PLUGIN_API_VERSION
from nydus_core.plugins import PluginManager, set_manager
from nydus_core.rafs.image import open_image
from nydus_core.storage.prefetch import TokenBucket, choose_prefetcher

CHUNK = 0x10000


def _files(n: int, size: int, seed: int) -> dict[str, bytes | str | None]:
    rnd = random.Random(seed)
    return {f"/d{i % 3}/f{i:02d}": rnd.randbytes(size) for i in range(n)}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, dict[str, bytes | str | None]]:
    files = _files(24, 4 * CHUNK, 41)
    boot, blobs, _ = build_image(tmp_path_factory.mktemp("pf"), files, chunk_size=CHUNK,
                                 prefetch=["/d1/f07", "/d2"])
    return boot, blobs, files


def _cfg(blobs: str, cache: Path, **prefetch: object) -> dict:
    fs_prefetch = {"enable": True, "threads_count": 4, "merging_size": CHUNK * 4, **prefetch}
    return localfs_config(blobs, cache, fs_prefetch=fs_prefetch, digest_validate=True)


def _prefetched(fs) -> set[str]:
    """Paths whose chunks are all cached."""
    out = set()
    for dirpath, _dirs, names in fs.walk("/"):
        for n in names:
            p = f"{dirpath.rstrip('/')}/{n}"
            if all(fs.pipeline.is_ready(c) for c in fs.pipeline.file(fs.resolve(p)).chunks):
                out.add(p)
    return out


def _name(cls: type[Prefetcher] | None) -> str | None:
    return None if cls is None else cls.name


def test_choice_of_prefetcher_follows_upstream_config() -> None:
    assert choose_prefetcher(PrefetchRequest()) is None
    assert choose_prefetcher(PrefetchRequest(prefetch_all=True)) is None  # not enabled: no prefetch
    assert _name(choose_prefetcher(PrefetchRequest(enable=True))) == "table"
    assert _name(choose_prefetcher(PrefetchRequest(hints=("/a",)))) == "files"
    assert _name(choose_prefetcher(PrefetchRequest(enable=True, hints=("/a",)))) == "files"
    assert _name(choose_prefetcher(PrefetchRequest(), "all")) == "all"
    with pytest.raises(UnknownPluginError, match="Unknown prefetcher 'nope'"):
        choose_prefetcher(PrefetchRequest(enable=True), "nope")


_THIRD_PARTY = """
from nydus_core import hookimpl

NYDUS_PLUGIN_API = "@API@"
from nydus_core.storage.prefetch import BasePrefetcher

class Eager(BasePrefetcher):
    name = "eager"

    @classmethod
    def applies(cls, request):
        return RANK if request.enable else None

    def targets(self, image, hints):
        return []

@hookimpl
def nydus_register_prefetchers():
    return [Eager]
"""


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Install the real plugins plus a third-party prefetcher ranking ``fs_prefetch.enable``."""
    def install(rank: int, disabled: tuple[str, ...] = ()) -> None:
        name = f"nydus_test_eager_{rank}"
        source = _THIRD_PARTY.replace("RANK", str(rank)).replace("@API@", PLUGIN_API_VERSION)
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        eps = [*importlib.metadata.entry_points(group="nydus"),
               importlib.metadata.EntryPoint(name="prefetch-eager", value=name, group="nydus")]
        set_manager(PluginManager(entry_points=eps, strict=False, disabled=disabled).load())

    yield install
    set_manager(None)


def test_a_third_party_prefetcher_declares_when_it_applies(third_party: Callable[..., None]) -> None:
    third_party(30)
    assert _name(choose_prefetcher(PrefetchRequest(enable=True))) == "eager"  # outranks table
    assert _name(choose_prefetcher(PrefetchRequest(hints=("/a",)))) == "files"  # not for hints


def test_two_prefetchers_at_one_rank_is_an_error_naming_both(third_party: Callable[..., None]) -> None:
    third_party(10)
    with pytest.raises(DuplicatePluginError, match=r"'eager' .*'table'|'table' .*'eager'"):
        choose_prefetcher(PrefetchRequest(enable=True))


def test_no_installed_prefetcher_for_the_request(third_party: Callable[..., None]) -> None:
    third_party(30, disabled=("prefetch-files", "prefetch-eager"))
    with pytest.raises(UnknownPluginError, match=r"--prefetch-files.*nydus-prefetch-files"):
        choose_prefetcher(PrefetchRequest(hints=("/a",)))


def test_table_fetches_the_table_only_without_prefetch_all(image: tuple, tmp_path: Path) -> None:
    boot, blobs, files = image
    img = open_image(boot)
    assert len(img.prefetch_inodes()) == 2
    with open_fs(boot, _cfg(blobs, tmp_path / "c", prefetch_all=False)) as fs:
        assert fs.prefetcher is not None and fs.prefetcher.name == "table"
        assert fs.prefetcher.wait(20)
        expected = {"/d1/f07"} | {p for p in files if p.startswith("/d2/")}
        assert _prefetched(fs) == expected
        m = fs.metrics()
        assert m["reads"]["reads"] == 0  # nobody read: it was all prefetch
        assert m["backend"]["prefetch_amount_total"] == m["backend"]["read_amount_total"] > 0
        assert m["blobcache"]["prefetch_requests_count"] > 0 and m["blobcache"]["prefetch_end_time_secs"] > 0


def test_table_then_all(image: tuple, tmp_path: Path) -> None:
    boot, blobs, files = image
    with open_fs(boot, _cfg(blobs, tmp_path / "c", prefetch_all=True)) as fs:
        assert fs.prefetcher.wait(20)
        assert _prefetched(fs) == set(files)
        assert fs.metrics()["blobcache"]["data_all_ready"] is True
        before = fs.metrics()["backend"]["read_count"]
        for path, data in files.items():
            assert fs.read_bytes(path) == data
        assert fs.metrics()["backend"]["read_count"] == before


def test_files_and_all_prefetchers(image: tuple, tmp_path: Path) -> None:
    boot, blobs, files = image
    cfg = _cfg(blobs, tmp_path / "c1", prefetch_all=False)  # explicit files win over the table
    with open_fs(boot, cfg, prefetch_files=["/d0/f03", "/d0/f06", "/missing/file"]) as fs:
        assert fs.prefetcher.name == "files" and fs.prefetcher.wait(20)
        assert _prefetched(fs) == {"/d0/f03", "/d0/f06"}
    with open_fs(boot, _cfg(blobs, tmp_path / "c2", enable=False), prefetcher="all") as fs:
        assert fs.prefetcher.wait(20)
        assert _prefetched(fs) == set(files)


def test_bandwidth_rate_holds_within_ten_percent(tmp_path: Path) -> None:
    files = _files(12, 8 * CHUNK, 42)  # 6 MiB
    boot, blobs, _ = build_image(tmp_path, files, chunk_size=CHUNK, compressor="none")
    rate = 2 << 20  # 2 MiB/s: about 3 s for the image
    cfg = _cfg(blobs, tmp_path / "c", bandwidth_rate=rate, merging_size=4 * CHUNK)
    t0 = time.monotonic()
    with open_fs(boot, cfg, prefetcher="all") as fs:
        assert fs.prefetcher.wait(30)
        elapsed = time.monotonic() - t0
        fetched = fs.metrics()["backend"]["prefetch_amount_total"]
    assert fetched == 6 << 20
    measured = fetched / elapsed
    assert 0.9 * rate <= measured <= 1.1 * rate, (measured, elapsed)


def test_token_bucket_paces_and_refunds() -> None:
    bucket = TokenBucket(1_000_000)
    t0 = time.monotonic()
    for _ in range(4):
        assert bucket.acquire(100_000)
    assert 0.35 <= time.monotonic() - t0 <= 0.8
    bucket.refund(10**9)  # cannot bank time into the future
    t1 = time.monotonic()
    assert bucket.acquire(100_000)
    assert 0.08 <= time.monotonic() - t1 <= 0.5


def test_user_reads_go_ahead_of_a_throttled_prefetch(tmp_path: Path) -> None:
    files = _files(16, 8 * CHUNK, 43)
    boot, blobs, _ = build_image(tmp_path, files, chunk_size=CHUNK, compressor="none")
    cfg = _cfg(blobs, tmp_path / "c", bandwidth_rate=CHUNK * 4, merging_size=CHUNK * 4, threads_count=2)
    with open_fs(boot, cfg, prefetcher="all") as fs:
        time.sleep(0.3)  # prefetch is running, throttled to 256 KiB/s
        last = sorted(files)[-1]
        t0 = time.monotonic()
        assert fs.read_bytes(last) == files[last]
        assert time.monotonic() - t0 < 1.0  # a throttled prefetch would need ~30 s to get there
        assert not fs.prefetcher.done.is_set()
    # closing stopped the prefetcher promptly
    assert fs.prefetcher.done.wait(5)


def test_access_pattern_feeds_prefetch_policy_fs(image: tuple, tmp_path: Path) -> None:
    boot, blobs, _files = image
    cfg = localfs_config(blobs, None, access_pattern=True)
    order = ["/d2/f05", "/d0/f00", "/d1/f10", "/d2/f05"]
    with open_fs(boot, cfg) as fs:
        for p in order:
            fs.read_bytes(p)
        pattern = fs.access_pattern()
        assert pattern == ["/d2/f05", "/d0/f00", "/d1/f10"]
        text = fs.pipeline.access_pattern.export(fs.image)
    src = Path(boot).with_suffix(".src")
    nydus_image = str(Path(sys.executable).parent / "nydus-image")
    proc = subprocess.run([nydus_image, "create", "--prefetch-policy", "fs", "--chunk-size", hex(CHUNK),
                           "-B", str(tmp_path / "new.boot"), "-D", str(tmp_path / "blobs"), str(src)],
                          input=text.encode(), capture_output=True, env=clean_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    new = open_image(tmp_path / "new.boot")
    assert new.prefetch_inodes() == [new.resolve(p) for p in pattern]


def test_prefetchers_on_one_pipeline_share_the_rate(tmp_path: Path) -> None:
    from nydus_core.plugins import registry

    files = _files(8, 8 * CHUNK, 44)  # 4 MiB
    boot, blobs, _ = build_image(tmp_path, files, chunk_size=CHUNK, compressor="none")
    rate = 2 << 20
    settings = {"threads_count": 2, "merging_size": 4 * CHUNK, "bandwidth_rate": rate, "prefetch_all": True}
    with open_fs(boot, localfs_config(blobs, tmp_path / "c")) as fs:
        t0 = time.monotonic()
        both = [registry("prefetcher").get(name)(settings) for name in ("files", "all")]
        both[0].start(fs.image, fs.pipeline, sorted(files)[4:])
        both[1].start(fs.image, fs.pipeline)
        assert all(p.wait(30) for p in both)
        elapsed = time.monotonic() - t0
        fetched = fs.metrics()["backend"]["prefetch_amount_total"]
    assert fetched == 4 << 20  # each chunk once, although both walked everything
    assert fetched / elapsed <= 1.1 * rate
