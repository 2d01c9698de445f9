"""A file-like view of a streamed registry blob, so a layer is built while it downloads."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class IterStream(io.RawIOBase):
    """Read from an iterator of byte chunks; ``on_read(total_bytes)`` reports progress.

    ``name`` says what the stream is (a layer's digest and media type): readers such as the
    builder put it in their error messages, as they do a file's name.
    """

    def __init__(self, chunks: Iterator[bytes], on_read: Callable[[int], None] | None = None,
                 *, name: str = "stream") -> None:
        self.name = name
        self._it = chunks
        self._buf = b""
        self._pos = 0
        self.total = 0
        self._on_read = on_read
        self._eof = False

    def readable(self) -> bool:
        """Always readable."""
        return True

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (the rest with ``size < 0``); ``b""`` at the end (never None)."""
        return super().read(size) or b""

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill ``buffer`` from the next chunk(s); 0 at the end."""
        while self._pos >= len(self._buf):
            if self._eof:
                return 0
            try:
                self._buf, self._pos = next(self._it), 0
            except StopIteration:
                self._eof = True
                return 0
            self.total += len(self._buf)
            if self._on_read is not None:
                self._on_read(self.total)
        view = memoryview(buffer)
        n = min(view.nbytes, len(self._buf) - self._pos)
        view[:n] = self._buf[self._pos:self._pos + n]
        self._pos += n
        return n

    def drain(self) -> int:
        """Consume the rest of the stream (so the source's digest check runs); return its size."""
        while self.read(1 << 20):
            pass
        return self.total


def layer_label(ref: object, index: int, desc: dict[str, Any]) -> str:
    """How errors name a layer: ``REF layer N (DIGEST, MEDIA TYPE)``."""
    media = desc.get("mediaType") or "no media type"
    return f"{ref} layer {index} ({desc.get('digest')}, {media})"
