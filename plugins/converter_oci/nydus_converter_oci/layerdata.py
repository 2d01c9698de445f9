"""A source layer's tar stream, whatever its compression: gzip (every member checked by the core's
gzip reader), zstd (``tar+zstd`` layers, as buildkit and podman write them) or none."""

from __future__ import annotations

from typing import Any

import zstandard

from nydus_core.errors import FormatError
from nydus_core.gzipstream import open_maybe_gzip

__all__ = ["ESTARGZ_TOC_DIGEST", "ZSTD_MAGIC", "ZstdLayerReader", "is_estargz", "open_layer_tar"]

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: The annotation eStargz layers carry (stargz-snapshotter, nydus-snapshotter recognise them by it).
ESTARGZ_TOC_DIGEST = "containerd.io/snapshot/stargz/toc.digest"


def is_estargz(desc: dict[str, Any]) -> bool:
    """Whether the layer descriptor says eStargz (its TOC digest annotation)."""
    return ESTARGZ_TOC_DIGEST in (desc.get("annotations") or {})


class _Head:
    """``raw`` with ``head`` (bytes already read from it) put back in front."""

    def __init__(self, head: bytes, raw: Any) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                out, self._head = self._head + bytes(self._raw.read()), b""
                return out
            head, self._head = self._head[:n], self._head[n:]
            return head
        return bytes(self._raw.read(n))


class ZstdLayerReader:
    """Reads a zstd stream (any number of frames) as its decompressed bytes; errors name the layer."""

    def __init__(self, raw: Any, *, name: str) -> None:
        self.name = name
        self._reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)

    def read(self, n: int = -1) -> bytes:
        """Decompressed bytes (short only at the end)."""
        try:
            if n < 0:
                parts = []
                while chunk := self._reader.read(1 << 20):
                    parts.append(chunk)
                return b"".join(parts)
            out = bytearray()
            while len(out) < n:
                chunk = self._reader.read(n - len(out))
                if not chunk:
                    break
                out += chunk
            return bytes(out)
        except zstandard.ZstdError as exc:
            raise FormatError(f"{self.name}: invalid zstd data: {exc}") from None


def open_layer_tar(raw: Any, *, name: str) -> Any:
    """Return the tar stream of a layer read from ``raw`` (gzip, zstd or plain, told by magic)."""
    head = b""
    while len(head) < 4:
        more = raw.read(4 - len(head))
        if not more:
            break
        head += more
    if head == ZSTD_MAGIC:
        return ZstdLayerReader(_Head(head, raw), name=name)
    data, _gzipped = open_maybe_gzip(_Head(head, raw), name=name)
    return data
