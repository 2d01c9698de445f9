"""``--work-dir``: per-layer conversion results, so a layer converted with the same options (and the
same layers below it, which the cross-layer dedup depends on) is not converted again."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Bump when the layer conversion output changes (2: implicit.json per layer, --oci-ref records).
CACHE_VERSION = 2


@dataclass
class LayerRecord:
    """One converted layer: its Nydus blob and per-layer bootstrap, and where they came from."""

    source_digest: str
    blob_digest: str
    blob_size: int
    has_blob_data: bool
    key: str
    directory: str

    @property
    def blob_path(self) -> Path:
        """The Nydus data blob file."""
        return Path(self.directory) / "blob"

    @property
    def bootstrap_path(self) -> Path:
        """The per-layer bootstrap (blob ids real)."""
        return Path(self.directory) / "bootstrap"


def layer_key(chain: list[str], options: dict[str, Any]) -> str:
    """The cache key of a layer: its digest, the digests below it, and the conversion options."""
    doc = json.dumps({"v": CACHE_VERSION, "chain": chain, "options": options}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()


class WorkCache:
    """Layer records under ``<work_dir>/layers/<key>/`` (``record.json``, ``blob``, ``bootstrap``)."""

    def __init__(self, work_dir: str | os.PathLike[str]) -> None:
        self.root = Path(work_dir)
        self.layers = self.root / "layers"
        self.layers.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> LayerRecord | None:
        """The record for ``key`` if it is complete (its files present with the recorded size)."""
        d = self.layers / key
        try:
            doc = json.loads((d / "record.json").read_text())
            rec = LayerRecord(**{**doc, "directory": str(d)})
        except (OSError, ValueError, TypeError):
            return None
        try:
            if rec.blob_path.stat().st_size != rec.blob_size or not rec.bootstrap_path.is_file():
                return None
        except OSError:
            return None
        return rec

    def staging(self, key: str) -> Path:
        """A fresh directory to build a layer into (committed with :meth:`commit`)."""
        d = self.layers / f".{key}.tmp"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def commit(self, staging: Path, record: LayerRecord) -> LayerRecord:
        """Write the record and move the staging directory into place."""
        final = self.layers / record.key
        doc = {k: v for k, v in asdict(record).items() if k != "directory"}
        (staging / "record.json").write_text(json.dumps(doc, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        record.directory = str(final)
        return record

    def scratch(self, name: str) -> Path:
        """A per-run scratch directory (emptied first)."""
        d = self.root / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d
