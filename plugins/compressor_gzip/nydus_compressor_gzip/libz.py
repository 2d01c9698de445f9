"""The system zlib through ctypes: the raw-inflate calls Python's ``zlib`` module does not expose.

Python's ``zlib`` has no ``inflatePrime`` and cannot stop at deflate block boundaries (``Z_BLOCK``)
or say how many bits of the last input byte are unread (``data_type``), which resuming a gzip stream
mid-way needs. :class:`RawInflater` wraps one ``z_stream`` doing raw inflate (windowBits -15);
nothing here inflates by itself: every byte goes through libz.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from ctypes import POINTER, Structure, c_char_p, c_int, c_uint, c_ulong, c_void_p

__all__ = ["Z_BLOCK", "Z_NO_FLUSH", "Z_OK", "Z_STREAM_END", "LibzError", "RawInflater", "zlib_version"]

Z_NO_FLUSH = 0
Z_BLOCK = 5
Z_OK = 0
Z_STREAM_END = 1
Z_NEED_DICT = 2
Z_BUF_ERROR = -5


class LibzError(Exception):
    """libz reported an error (the message is libz's own)."""


class _ZStream(Structure):
    _fields_ = [
        ("next_in", c_void_p),
        ("avail_in", c_uint),
        ("total_in", c_ulong),
        ("next_out", c_void_p),
        ("avail_out", c_uint),
        ("total_out", c_ulong),
        ("msg", c_char_p),
        ("state", c_void_p),
        ("zalloc", c_void_p),
        ("zfree", c_void_p),
        ("opaque", c_void_p),
        ("data_type", c_int),
        ("adler", c_ulong),
        ("reserved", c_ulong),
    ]


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def _libz() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        with _lib_lock:
            if _lib is None:
                name = ctypes.util.find_library("z") or "libz.so.1"
                try:
                    lib = ctypes.CDLL(name)
                except OSError as exc:
                    raise LibzError(f"cannot load the system zlib ({name}): {exc}") from None
                zp = POINTER(_ZStream)
                lib.zlibVersion.restype = c_char_p
                lib.inflateInit2_.argtypes = [zp, c_int, c_char_p, c_int]
                lib.inflatePrime.argtypes = [zp, c_int, c_int]
                lib.inflateSetDictionary.argtypes = [zp, c_void_p, c_uint]
                lib.inflate.argtypes = [zp, c_int]
                lib.inflateReset2.argtypes = [zp, c_int]
                lib.inflateEnd.argtypes = [zp]
                for fn in ("inflateInit2_", "inflatePrime", "inflateSetDictionary", "inflate",
                           "inflateReset2", "inflateEnd"):
                    getattr(lib, fn).restype = c_int
                _lib = lib
    return _lib


def zlib_version() -> str:
    """Return the version of the system zlib in use."""
    return bytes(_libz().zlibVersion()).decode("ascii")


class RawInflater:
    """One raw-deflate inflate stream of libz. Not thread-safe; :meth:`close` frees it."""

    def __init__(self) -> None:
        self._z = _libz()
        self._s = _ZStream()
        version = self._z.zlibVersion()
        rc = self._z.inflateInit2_(ctypes.byref(self._s), -15, version, ctypes.sizeof(_ZStream))
        if rc != Z_OK:
            raise LibzError(f"inflateInit2 failed ({rc})")
        self._open = True
        self._in = b""

    def _check(self, rc: int, what: str) -> None:
        if rc != Z_OK:
            msg = self._s.msg.decode("ascii", "replace") if self._s.msg else f"error {rc}"
            raise LibzError(f"{what}: {msg}")

    def reset(self) -> None:
        """Start a new raw deflate stream (the next gzip member), with no history."""
        self._check(self._z.inflateReset2(ctypes.byref(self._s), -15), "inflateReset2")

    def prime(self, bits: int, value: int) -> None:
        """Insert ``bits`` bits of ``value`` ahead of the input (``inflatePrime``)."""
        self._check(self._z.inflatePrime(ctypes.byref(self._s), bits, value), "inflatePrime")

    def set_dictionary(self, window: bytes) -> None:
        """Set the history a resumed stream refers back to (``inflateSetDictionary``)."""
        if window:
            self._check(self._z.inflateSetDictionary(ctypes.byref(self._s), window, len(window)),
                        "inflateSetDictionary")

    def feed(self, data: bytes, start: int = 0) -> None:
        """Make ``data[start:]`` the pending input (no copy: ``data`` is kept until the next feed)."""
        self._in = data
        base = ctypes.cast(c_char_p(data), c_void_p).value or 0
        self._s.next_in = base + start
        self._s.avail_in = len(data) - start

    @property
    def avail_in(self) -> int:
        """Input bytes not consumed yet."""
        return int(self._s.avail_in)

    @property
    def data_type(self) -> int:
        """libz's ``data_type``: 0x80 at a block boundary, 0x40 after the last block, low 3 bits:
        unused bits of the last input byte."""
        return int(self._s.data_type)

    def inflate(self, out: ctypes.Array[ctypes.c_char], offset: int, room: int, flush: int = Z_NO_FLUSH
                ) -> tuple[int, int]:
        """Inflate into ``out[offset:offset + room]``; return ``(libz return code, bytes written)``.

        Raises :class:`LibzError` on corrupt data.
        """
        s = self._s
        s.next_out = ctypes.addressof(out) + offset
        s.avail_out = room
        rc = self._z.inflate(ctypes.byref(s), flush)
        written = room - int(s.avail_out)
        if rc == Z_NEED_DICT:
            raise LibzError("inflate: a dictionary is needed")
        if rc < 0 and rc != Z_BUF_ERROR:
            msg = s.msg.decode("ascii", "replace") if s.msg else f"error {rc}"
            raise LibzError(f"inflate: {msg}")
        return rc, written

    def close(self) -> None:
        """Free the stream."""
        if self._open:
            self._open = False
            self._z.inflateEnd(ctypes.byref(self._s))

    def __enter__(self) -> RawInflater:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
