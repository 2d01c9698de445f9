"""The interfaces every capability implements. Plugins subclass these and register the classes.

Each class has a class attribute ``name``: the word users write in a config file or on the command
line, or the id recorded inside an image. The core keys its registries by that name.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, BinaryIO, ClassVar, Protocol

from .errors import UnsupportedOperationError

__all__ = [
    "Backend",
    "BlobCache",
    "CachePolicy",
    "Compressor",
    "Converter",
    "Digester",
    "Frontend",
    "HashObject",
    "Prefetcher",
]


class Compressor(abc.ABC):
    """A chunk compression algorithm, with upstream's on-disk ids (rafs-format.md §2).

    ``algorithm_id`` is the u32 recorded in RAFS v6 blob tables and blob-meta headers;
    ``super_flag`` is the ``RafsSuperFlags`` bit; ``toc_flag`` the ToC entry compression flag.
    ``None`` means upstream has no id for it, so it cannot be recorded in an upstream-readable image.
    """

    name: ClassVar[str]
    algorithm_id: ClassVar[int | None] = None
    super_flag: ClassVar[int | None] = None
    toc_flag: ClassVar[int | None] = None

    @abc.abstractmethod
    def compress(self, data: bytes) -> bytes:
        """Return ``data`` compressed in the on-disk format upstream writes.

        ``data`` may be any bytes-like object (``bytes``, ``bytearray``, ``memoryview``); the result
        is ``bytes``. Must be thread-safe.
        """

    @abc.abstractmethod
    def decompress(self, data: bytes, uncompressed_size: int) -> bytes:
        """Return the original bytes; ``uncompressed_size`` is known from the chunk record.

        Raises :class:`~nydus_core.errors.IntegrityError` when ``data`` is not valid input or
        does not decompress to exactly ``uncompressed_size`` bytes. ``data`` may be any bytes-like
        object; the result is ``bytes``.
        """


class HashObject(Protocol):
    """An incremental hash, as returned by :meth:`Digester.new`."""

    def update(self, data: bytes, /) -> Any: ...

    def digest(self) -> bytes: ...


class Digester(abc.ABC):
    """A chunk digest algorithm (32-byte output), with upstream's on-disk ids (rafs-format.md §2)."""

    name: ClassVar[str]
    algorithm_id: ClassVar[int | None] = None
    super_flag: ClassVar[int | None] = None
    digest_size: ClassVar[int] = 32

    @abc.abstractmethod
    def new(self) -> HashObject:
        """Return a fresh incremental hash object."""

    def digest(self, data: bytes) -> bytes:
        """Return the digest of ``data`` (32 bytes)."""
        h = self.new()
        h.update(data)
        return h.digest()


class Backend(abc.ABC):
    """Where blobs live: a directory, a registry, an object store.

    Constructed with the backend's ``config`` mapping (the keys upstream uses for this backend type,
    already checked by :meth:`validate_config`). Must be thread-safe. Retries, auth refresh and proxy
    fallback live inside the backend; SDK errors become :class:`~nydus_core.errors.BackendError`
    subclasses (not found, auth, permission, transient).
    """

    name: ClassVar[str]

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``config`` and return it with defaults filled in.

        Raise :class:`~nydus_core.errors.ConfigError` with ``key=`` naming the bad key.
        """
        return dict(config)

    @abc.abstractmethod
    def size(self, blob_id: str) -> int:
        """Return the size in bytes of blob ``blob_id`` (a 64-char hex sha256, no ``sha256:``)."""

    @abc.abstractmethod
    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes of the blob starting at ``offset``.

        Fewer only at the blob's end; ``b""`` when ``offset`` is at or past the end. A missing blob
        raises :class:`~nydus_core.errors.BlobNotFoundError` naming ``blob_id``.
        """

    def readv(self, blob_id: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Read several ``(offset, length)`` ranges of one blob; backends may merge requests."""
        return [self.read(blob_id, off, length) for off, length in ranges]

    def exists(self, blob_id: str) -> bool:
        """Return whether the blob exists."""
        from .errors import BlobNotFoundError

        try:
            self.size(blob_id)
        except BlobNotFoundError:
            return False
        return True

    def write(self, blob_id: str, stream: BinaryIO, size: int | None = None) -> None:
        """Store a blob read from ``stream`` under ``blob_id`` (used when pushing images).

        All or nothing: when ``size`` is given and the stream holds a different number of bytes, or
        anything fails, no blob is left under ``blob_id``. Replacing an existing blob is allowed.
        """
        raise UnsupportedOperationError(f"backend '{self.name}' cannot store blobs")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""


class BlobCache(abc.ABC):
    """The local cache of one blob, keyed by chunk (as given by the blob's chunk records).

    Holds uncompressed chunk data. ``put`` writes, then marks ready: a crash never leaves a chunk
    marked ready whose bytes are wrong.
    """

    @abc.abstractmethod
    def is_ready(self, chunk: Any) -> bool:
        """Return whether ``chunk``'s uncompressed bytes are in the cache."""

    @abc.abstractmethod
    def get(self, chunk: Any) -> bytes | None:
        """Return the chunk's uncompressed bytes, or ``None`` on a miss."""

    @abc.abstractmethod
    def put(self, chunk: Any, data: bytes) -> None:
        """Store verified uncompressed bytes of ``chunk`` and mark them ready."""

    # Optional, with working defaults; a cache overrides them to be faster or to say more.

    #: The file holding the blob's cached data, when there is one (listed by the metrics API).
    data_path: str | None = None

    def read_range(self, chunk: Any, start: int, length: int) -> bytes | None:
        """Return ``length`` bytes at ``start`` within ``chunk``, or ``None`` on a miss (override to
        read just that range, e.g. with one ``pread``)."""
        data = self.get(chunk)
        return None if data is None else data[start:start + length]

    def put_many(self, items: Sequence[tuple[Any, bytes]]) -> None:
        """Store several ``(chunk, data)`` pairs (override to batch the durability work)."""
        for chunk, data in items:
            self.put(chunk, data)

    def ready_count(self) -> int | None:
        """Return how many chunks are ready, or ``None`` when the cache cannot tell cheaply."""
        return None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until what was put is durable; False on timeout (default: nothing pending)."""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release files."""


class CachePolicy(abc.ABC):
    """A kind of local cache (``cache.type`` in the nydusd config), holding many blobs.

    Constructed with the cache section's ``config`` mapping (e.g. ``work_dir``) and the
    ``validate`` flag of the cache section.
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Mapping[str, Any], *, validate: bool = False) -> None:
        self.config = dict(config)
        self.validate = validate

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``config`` and return it with defaults filled in (ConfigError naming the key)."""
        return dict(config)

    @abc.abstractmethod
    def open_blob(self, blob: Any) -> BlobCache:
        """Return the cache of one blob (its id, sizes and chunk count are on ``blob``)."""

    def stats(self) -> dict[str, Any]:
        """Return counters (hits, misses, bytes) for metrics."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release everything."""

    # Optional management, used by ``nydus cache ls|du|gc``; a cache type without them says so.

    @classmethod
    def list_entries(cls, work_dir: str) -> list[dict[str, Any]]:
        """Return one dict per cached blob in ``work_dir`` (``blob_id``, sizes, last use...)."""
        raise UnsupportedOperationError(f"cache type '{cls.name}' cannot list its entries")

    @classmethod
    def gc(cls, work_dir: str, *, max_size: int | None = None,
           remove_all: bool = False) -> list[dict[str, Any]]:
        """Remove idle blobs until ``work_dir`` fits in ``max_size`` (all with ``remove_all``);
        return what was removed."""
        raise UnsupportedOperationError(f"cache type '{cls.name}' has no garbage collection")


class Prefetcher(abc.ABC):
    """Decides what to fetch ahead of reads, and feeds it to the read pipeline at a bounded rate."""

    name: ClassVar[str]

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)

    @abc.abstractmethod
    def start(self, image: Any, pipeline: Any, hints: Iterable[str] = ()) -> None:
        """Begin prefetching in the background; ``hints`` are paths to fetch first."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop prefetching and wait for workers to end."""


class Frontend(abc.ABC):
    """Shows an opened image to users (a FUSE mount today)."""

    name: ClassVar[str]

    @abc.abstractmethod
    def serve(self, **options: Any) -> int:
        """Serve until told to stop; return an exit status."""


class Converter(abc.ABC):
    """Turns a foreign image (an OCI image in a registry, say) into Nydus bootstrap + blobs."""

    name: ClassVar[str]

    @abc.abstractmethod
    def convert(self, source: str, target: str, **options: Any) -> dict[str, Any]:
        """Convert ``source`` to ``target``; return a summary (timings, sizes) for ``--output-json``."""

