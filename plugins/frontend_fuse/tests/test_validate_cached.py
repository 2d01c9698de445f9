"""Through FUSE, ``digest_validate: true`` verifies chunks read back from the cache too: bytes
cached while validation was off and then flipped on disk are fetched again, never served."""

from __future__ import annotations

import random
from pathlib import Path

from nydus_testsupport.fuse import NydusdProcess
from nydus_testsupport.storage_helpers import build_image, localfs_config

from nydus_core.fs import open_fs
from nydus_core.rafs.image import open_image

FILES = {f"/f{i}.bin": random.Random(i).randbytes(3 * 0x1000 + 77 * i) for i in range(6)}


def test_fuse_reads_verify_cached_chunks(need_fuse: None, tmp_path: Path) -> None:
    import json

    boot, blobs, result = build_image(tmp_path, FILES, chunk_size=0x1000)
    cache = tmp_path / "cache"
    with open_fs(boot, localfs_config(blobs, cache, digest_validate=False, amplify_io=0)) as fs:
        for path, data in FILES.items():
            assert fs.read_bytes(path) == data
    data_file = cache / f"{result.blob_id}.blob.data"
    raw = bytearray(data_file.read_bytes())
    with open_image(boot) as image:
        flipped = 0
        for path in FILES:
            for c in image.chunks(image.resolve(path)):
                raw[c.uncompressed_offset + 7] ^= 0x81
                flipped += 1
    data_file.write_bytes(bytes(raw))
    assert flipped >= 18
    cfg = tmp_path / "on.json"
    cfg.write_text(json.dumps(localfs_config(blobs, cache, digest_validate=True, amplify_io=0)))
    (tmp_path / "mnt").mkdir()
    with NydusdProcess(tmp_path / "mnt", ["-C", str(cfg), "-B", boot]) as d:
        for path, data in FILES.items():
            assert (Path(d.mountpoint) / path.lstrip("/")).read_bytes() == data, path
