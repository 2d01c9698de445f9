"""Verified chunk reads for the tools (``nydus-image check|unpack``) and tests: a base class whose
subclasses say where stored bytes come from, and a reader of blobs in one local directory.

Compressors and digesters come from the plugin registries, looked up by the algorithm ids recorded
in the image (which is why this lives above ``rafs/``, which never touches the registries).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from ..errors import BlobNotFoundError, IntegrityError, NydusError
from ..interfaces import Compressor, Digester
from ..rafs.chunkdata import check_chunk_data, decode_chunk
from ..rafs.image import RafsImage
from ..rafs.model import BlobInfo, ChunkInfo
from ..rafs.zran_read import ContextCache, ZranBlob, is_zran, load_zran_blob, meta_blob_id


def _safe_blob_name(blob_id: str) -> bool:
    return bool(blob_id) and blob_id not in (".", "..") and "/" not in blob_id and "\0" not in blob_id


class ChunkReader:
    """Reads verified chunk data and file ranges of an image; subclasses say where stored bytes come
    from by implementing :meth:`read_stored`. Always validates chunks. Thread-safe."""

    def __init__(self) -> None:
        self._algos: dict[tuple[int, int], tuple[Compressor, Digester]] = {}
        self._zran: dict[str, ZranBlob] = {}
        self._contexts: dict[str, ContextCache] = {}
        self._zran_lock = threading.Lock()

    def algorithms(self, blob: BlobInfo) -> tuple[Compressor, Digester]:
        """Return the compressor and digester recorded for ``blob`` (from the plugin registries)."""
        key = (blob.compressor, blob.digester)
        algos = self._algos.get(key)
        if algos is None:
            from ..plugins import compressor_by_id, digester_by_id

            where = f"recorded for blob {blob.blob_id}"
            algos = (
                compressor_by_id(blob.compressor, where=where),
                digester_by_id(blob.digester, where=where),
            )
            self._algos[key] = algos
        return algos

    def read_blob(self, blob: BlobInfo, offset: int, length: int) -> bytes:
        """Return ``length`` bytes of ``blob`` at ``offset`` (fewer at its end)."""
        raise NotImplementedError

    def read_stored(self, blob: BlobInfo, chunk: ChunkInfo) -> bytes:
        """Return the stored (possibly compressed) bytes of ``chunk``."""
        return self.read_blob(blob, chunk.compressed_offset, chunk.compressed_size)

    def meta_blob(self, blob: BlobInfo) -> BlobInfo:
        """Return ``blob``'s separate RAFS blob (``*-ref`` images) as a blob to read."""
        return dataclasses.replace(blob, blob_id=meta_blob_id(blob))

    def zran(self, blob: BlobInfo) -> ZranBlob:
        """Return the ZRAN contexts of ``blob`` (read once from its RAFS blob)."""
        zb = self._zran.get(blob.blob_id)
        if zb is None:
            from ..plugins import compressor_by_id

            meta = self.meta_blob(blob)
            zb = load_zran_blob(lambda off, n: self.read_blob(meta, off, n), blob, compressor_by_id)
            with self._zran_lock:
                self._zran[blob.blob_id] = zb
        return zb

    def read_chunk(self, blob: BlobInfo, chunk: ChunkInfo) -> bytes:
        """Return the verified uncompressed bytes of ``chunk`` of ``blob``."""
        compressor, digester = self.algorithms(blob)
        if is_zran(blob):  # whole contexts, inflated once per blob while they stay in its cache
            zb = self.zran(blob)
            with self._zran_lock:
                cache = self._contexts.setdefault(blob.blob_id, ContextCache())
            start, end, held = zb.fetch_span([chunk], cache)
            raw = self.read_blob(blob, start, end - start) if end > start else b""
            [(_c, data)] = zb.decode(raw, start, [chunk], compressor, blob.blob_id, cache, held)
            if isinstance(data, NydusError):
                raise data
            return check_chunk_data(data, chunk, digester, validate=True, blob_id=blob.blob_id)
        raw = self.read_stored(blob, chunk)
        return decode_chunk(raw, chunk, compressor, digester, validate=True, blob_id=blob.blob_id)

    def read(self, image: RafsImage, ino: int, offset: int = 0, size: int | None = None) -> bytes:
        """Return ``size`` bytes (all to EOF when None) of regular file ``ino`` from ``offset``.

        Bytes no chunk covers (holes) read as zeros.
        """
        attrs = image.getattr(ino)
        end = attrs.size if size is None else min(attrs.size, offset + size)
        if offset >= end:
            return b""
        chunks: Sequence[ChunkInfo] = image.chunks_for_range(ino, offset, end - offset)
        out = bytearray(end - offset)
        for c in chunks:
            c_end = c.file_offset + c.uncompressed_size
            if c_end <= offset or c.file_offset >= end:
                continue
            if c.blob_index >= len(image.blobs):
                raise IntegrityError(f"{image.path}: chunk names blob index {c.blob_index}, image has "
                                     f"{len(image.blobs)} blobs")
            data = self.read_chunk(image.blobs[c.blob_index], c)
            lo, hi = max(offset, c.file_offset), min(end, c_end)
            out[lo - offset:hi - offset] = data[lo - c.file_offset:hi - c.file_offset]
        return bytes(out)

    def read_file(self, image: RafsImage, ino: int) -> bytes:
        """Return the whole content of regular file ``ino``."""
        return self.read(image, ino)

    def close(self) -> None:
        """Release files or connections."""

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlobDirReader(ChunkReader):
    """Read file data of an image from ``<blob_dir>/<blob_id>`` files, always validating chunks.

    Thread-safe; keeps one open descriptor per blob until :meth:`close`.
    """

    def __init__(self, blob_dir: str | os.PathLike[str]) -> None:
        super().__init__()
        self.blob_dir = Path(blob_dir)
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def blob_path(self, blob_id: str) -> Path:
        """Return the file that holds blob ``blob_id``."""
        if not _safe_blob_name(blob_id):
            raise BlobNotFoundError(f"{self.blob_dir}: invalid blob id {blob_id!r}")
        return self.blob_dir / blob_id

    def _fd(self, blob_id: str) -> int:
        fd = self._fds.get(blob_id)
        if fd is not None:
            return fd
        path = self.blob_path(blob_id)
        with self._lock:
            fd = self._fds.get(blob_id)
            if fd is None:
                try:
                    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                except FileNotFoundError:
                    raise BlobNotFoundError(f"{path}: blob not found") from None
                except OSError as exc:
                    raise BlobNotFoundError(f"{path}: cannot open blob: {exc.strerror or exc}") from None
                self._fds[blob_id] = fd
        return fd

    def read_blob(self, blob: BlobInfo, offset: int, length: int) -> bytes:
        """``pread`` a range of the blob file."""
        fd = self._fd(blob.blob_id)
        try:
            return os.pread(fd, length, offset)
        except OSError as exc:
            raise IntegrityError(
                f"blob {blob.blob_id}: read of {length} bytes at {offset} failed: {exc.strerror or exc}"
            ) from None
        except (OverflowError, ValueError):
            raise IntegrityError(f"blob {blob.blob_id}: offset {offset} out of range") from None

    def close(self) -> None:
        """Close every open blob file."""
        with self._lock:
            fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)
