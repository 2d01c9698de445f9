"""The one gzip reader of nydus-py: multi-member streams, every member's CRC32 and ISIZE checked.

Every place that inflates a gzip stream (``targz-rafs`` sources, OCI layers, bootstrap layers) reads
it through :class:`GzipReader`, so they all accept the same streams and fail the same way:

* a stream is one or more gzip members one after the other (``cat a.gz b.gz``, bgzip, eStargz);
  each member's header is parsed and its trailer checked by zlib (CRC32 of the data, ISIZE the
  length modulo 2**32, the header CRC when the header has one);
* NUL bytes after the last member are padding (as ``gzip -d`` accepts them); anything else after
  a member that is not another member is an error;
* a member cut short (the input ends before its trailer) is an error, never a short result;
* an error is a :class:`~nydus_core.errors.FormatError` on one line naming the stream (the layer
  or file), the member (1-based) and the compressed offset where that member starts.

Memory stays bounded whatever the compression ratio: ``read(n)`` inflates at most ``n`` bytes.
"""

from __future__ import annotations

import zlib
from typing import Protocol

from .errors import FormatError

__all__ = ["GZIP_MAGIC", "GzipError", "GzipReader", "Readable", "decompress", "is_gzip", "open_maybe_gzip"]

#: the two bytes every gzip member starts with
GZIP_MAGIC = b"\x1f\x8b"
_IN_CHUNK = 256 * 1024
_OUT_BLOCK = 1 << 20
# zlib's messages -> what they mean in gzip's terms
_ZLIB_MEANING = {
    "incorrect data check": "CRC32 mismatch (the data differs from what was compressed)",
    "incorrect length check": "ISIZE mismatch (the length differs from what was compressed)",
    "incorrect header check": "not a gzip member (bad magic)",
    "header crc mismatch": "header CRC mismatch",
    "unknown compression method": "unknown compression method",
}


class Readable(Protocol):
    """Anything with ``read(n)``: a file, a socket stream, an HTTP body."""

    def read(self, n: int = -1, /) -> bytes: ...


class GzipError(FormatError):
    """A gzip stream is malformed, truncated, or fails its CRC32/ISIZE check."""


def is_gzip(head: bytes) -> bool:
    """Return whether ``head`` (the first bytes of a stream) starts a gzip member."""
    return head[:2] == GZIP_MAGIC


class GzipReader:
    """A read-only stream of the data inflated from the gzip stream ``raw`` (see the module doc).

    ``name`` names the stream in errors (a file name, ``"<image> layer 2 (sha256:...)"``).
    Attributes: ``members`` (members completed so far), ``consumed`` (compressed bytes read from
    ``raw`` so far), ``produced`` (bytes inflated so far).
    """

    def __init__(self, raw: Readable, *, name: str, head: bytes = b"") -> None:
        self._raw = raw
        self.name = name
        self.members = 0
        self.consumed = len(head)
        self.produced = 0
        self._pending = head  # compressed bytes read from raw, not yet fed to the inflater
        self._member_start = 0
        self._member_fed = False  # whether the current inflater has been given any byte
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._eof = False
        self._raw_eof = False
        self._buf = b""  # inflated bytes not yet returned, from _pos on
        self._pos = 0

    def readable(self) -> bool:
        """Always readable."""
        return True

    def close(self) -> None:
        """Forget the input (the caller closes ``raw``)."""
        self._pending = self._buf = b""
        self._eof = True

    def _fail(self, what: str) -> GzipError:
        return GzipError(f"{self.name}: invalid gzip stream: member {self.members + 1} "
                         f"(at byte {self._member_start}): {what}")

    def _fail_trailing(self) -> GzipError:
        at = self.consumed - len(self._pending)
        return GzipError(f"{self.name}: invalid gzip stream: the bytes at {at}, after member {self.members}, "
                         "are neither a gzip member nor NUL padding")

    def _more_input(self) -> bool:
        """Refill ``_pending`` from ``raw``; False at the end of ``raw``."""
        if self._raw_eof:
            return False
        data = self._raw.read(_IN_CHUNK)
        if not data:
            self._raw_eof = True
            return False
        self.consumed += len(data)
        self._pending = data
        return True

    def _append_input(self) -> bool:
        """Append the next block of ``raw`` to ``_pending``; False at the end of ``raw``."""
        keep = self._pending
        if not self._more_input():
            self._pending = keep
            return False
        self._pending = keep + self._pending
        return True

    def _next_member(self) -> bool:
        """At a member boundary: True when another member starts; False at the clean end.

        NUL bytes to the end of the input are padding; any other byte is an error.
        """
        while len(self._pending) < 2 and self._append_input():
            pass
        if is_gzip(self._pending):
            return True
        if self.members == 0:
            raise self._fail("empty stream" if not self._pending else "not a gzip stream (bad magic)")
        while True:
            if self._pending.strip(b"\x00"):
                raise self._fail_trailing()
            self._pending = b""
            if not self._more_input():
                return False

    def _inflate(self, limit: int) -> bytes:
        """Inflate up to ``limit`` bytes; b"" only at the end of the stream."""
        while not self._eof:
            if not self._member_fed:
                if not self._next_member():
                    self._eof = True
                    return b""
                self._member_start = self.consumed - len(self._pending)
                self._member_fed = True
            try:
                out = self._d.decompress(self._pending, limit)
            except zlib.error as exc:
                msg = str(exc).split(": ", 1)[-1]
                raise self._fail(_ZLIB_MEANING.get(msg, msg)) from None
            if self._d.eof:
                self._pending = self._d.unused_data
                self.members += 1
                self._member_fed = False
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                self._pending = self._d.unconsumed_tail
                if not out and not self._pending and not self._more_input():
                    raise self._fail("truncated (the input ends inside the member)")
            if out:
                self.produced += len(out)
                return out
        return b""

    def read(self, n: int = -1, /) -> bytes:
        """Read up to ``n`` inflated bytes (all the rest with ``n < 0``); b"" at the end.

        Raises :class:`GzipError` when the stream turns out malformed, truncated or corrupt.
        """
        if n < 0:
            parts = [self._buf[self._pos:]]
            self._buf, self._pos = b"", 0
            while out := self._inflate(_OUT_BLOCK):
                parts.append(out)
            return b"".join(parts)
        if self._pos >= len(self._buf):
            if n == 0:
                return b""
            self._buf, self._pos = self._inflate(max(n, _OUT_BLOCK)), 0
        data = self._buf[self._pos:self._pos + n]
        self._pos += len(data)
        return data


class _Prefixed:
    """``head`` followed by the rest of ``raw``."""

    def __init__(self, head: bytes, raw: Readable) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1, /) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self._raw.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._raw.read(n)


def open_maybe_gzip(raw: Readable, *, name: str) -> tuple[Readable, bool]:
    """Return a stream of ``raw``'s data, inflated when it starts as gzip, and whether it did."""
    head = b""
    while len(head) < 2:
        more = raw.read(2 - len(head))
        if not more:
            break
        head += more
    if is_gzip(head):
        return GzipReader(raw, name=name, head=head), True
    return _Prefixed(head, raw), False


def decompress(data: bytes, *, name: str, limit: int | None = None) -> bytes:
    """Inflate a whole gzip stream held in memory (checked as :class:`GzipReader` does).

    With ``limit``, a stream that inflates to more than ``limit`` bytes is an error.
    """
    import io

    reader = GzipReader(io.BytesIO(data), name=name)
    if limit is None:
        return reader.read()
    out = reader.read(limit + 1) if limit >= 0 else b""
    parts = [out]
    total = len(out)
    while total <= limit and (out := reader.read(limit + 1 - total)):
        parts.append(out)
        total += len(out)
    if total > limit:
        raise GzipError(f"{name}: gzip stream inflates to more than {limit} bytes")
    return b"".join(parts)
