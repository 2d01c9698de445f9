"""Blob ids of inlined-meta images, and the access-pattern recorder."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
from nydus_testkit.fake_image import build_fake_image
from nydus_testkit.fakes import DirBackend

from nydus_core.errors import FormatError
from nydus_core.rafs.constants import BLOB_ID_INLINE_PLACEHOLDER, BlobFeatures
from nydus_core.rafs.model import BlobInfo
from nydus_core.storage import AccessPattern, ReadPipeline, resolve_blob_ids
from nydus_core.storage.blobids import blob_id_from_path

REAL = hashlib.sha256(b"layer").hexdigest()


def _blob(blob_id: str, index: int = 0, inline: bool = True) -> BlobInfo:
    return BlobInfo(blob_id=blob_id, blob_index=index, chunk_size=0x100000,
                    features=int(BlobFeatures.INLINED_FS_META) if inline else 0)


@pytest.mark.parametrize("name", [REAL, f"{REAL}.boot", f"sha256:{REAL}", f"{REAL}.bootstrap.v6"])
def test_placeholder_takes_the_bootstrap_file_name(name: str) -> None:
    assert blob_id_from_path(f"/layers/{name}") == REAL
    ids = resolve_blob_ids([_blob(BLOB_ID_INLINE_PLACEHOLDER)], bootstrap_path=f"/layers/{name}")
    assert ids == [REAL]


def test_caller_given_id_wins_and_others_are_kept() -> None:
    other = hashlib.sha256(b"other").hexdigest()
    blobs = [_blob(other, 0, inline=False), _blob(BLOB_ID_INLINE_PLACEHOLDER, 1)]
    ids = resolve_blob_ids(blobs, bootstrap_path="/x/image.boot", inline_blob_id=f"sha256:{REAL}")
    assert ids == [other, REAL]
    assert resolve_blob_ids(blobs, overrides={0: REAL}, inline_blob_id=REAL) == [REAL, REAL]


def test_placeholder_without_a_real_id_is_a_clear_error() -> None:
    with pytest.raises(FormatError, match="placeholder") as err:
        resolve_blob_ids([_blob(BLOB_ID_INLINE_PLACEHOLDER)], bootstrap_path="/x/image.boot")
    assert "/x/image.boot" in str(err.value)


def test_access_pattern_orders_first_reads(tmp_path: Path) -> None:
    files = {f"/d/f{i}": bytes([i]) * 5000 for i in range(6)}
    image, _ = build_fake_image(files, blob_dir=tmp_path)
    order = ["/d/f3", "/d/f0", "/d/f3", "/d/f5", "/d/f0"]
    with ReadPipeline(image, DirBackend({"dir": str(tmp_path)}), None, access_pattern=True) as pipe:
        for p in order:
            pipe.read(image.resolve(p), 0, 10)
        ap = pipe.access_pattern
        assert ap is not None
        assert ap.paths(image) == ["/d/f3", "/d/f0", "/d/f5"]
        assert ap.export(image) == "/d/f3\n/d/f0\n/d/f5\n"
        recs = ap.records()
        assert [r["ino"] for r in recs] == [image.resolve(p) for p in ("/d/f3", "/d/f0", "/d/f5")]
        assert [r["nr_read"] for r in recs] == [2, 2, 1]
        assert all(r["first_access_time_secs"] > 0 for r in recs)


def test_access_pattern_is_thread_safe() -> None:
    ap = AccessPattern()

    def job(k: int) -> None:
        for i in range(200):
            ap.record(i % 50 + (k % 2) * 1000)

    threads = [threading.Thread(target=job, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ap) == 100
    assert len(set(ap.inodes())) == 100
