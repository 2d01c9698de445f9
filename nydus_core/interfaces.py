"""The interfaces every capability implements. Plugins subclass these and register the classes.

Each class has a class attribute ``name``: the word users write in a config file or on the command
line, or the id recorded inside an image. The core keys its registries by that name.

What the core hands to a plugin is typed: chunk records are :class:`~nydus_core.rafs.model.ChunkInfo`,
blobs :class:`~nydus_core.rafs.model.BlobInfo`, images :class:`~nydus_core.rafs.image.RafsImage`, the
read pipeline :class:`~nydus_core.storage.ReadPipeline`. What a caller asks of a frontend, a converter
or a prefetcher travels in frozen dataclasses declared here: :class:`ServeOptions`,
:class:`ConvertOptions`, :class:`PrefetchRequest`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Protocol

from .errors import UnsupportedFeatureError, UnsupportedOperationError

if TYPE_CHECKING:
    from .config import NydusConfig
    from .rafs.image import RafsImage
    from .rafs.model import BlobInfo, ChunkInfo
    from .storage import ReadPipeline

__all__ = [
    "FS_DRIVERS",
    "Backend",
    "BlobCache",
    "CachePolicy",
    "Compressor",
    "ConvertOptions",
    "Converter",
    "Digester",
    "Frontend",
    "HashObject",
    "IndexedStream",
    "PrefetchRequest",
    "Prefetcher",
    "ResumePoint",
    "ServeOptions",
]

#: How a frontend may show an image (upstream's snapshotter ``fs_driver``): ``fusedev`` serves
#: every file operation in the daemon; ``erofs`` lets the kernel's EROFS driver read the bootstrap
#: and asks the daemon only for blob data.
FS_DRIVERS = ("fusedev", "erofs")


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """A place in a compressed stream where decoding can start again (a zran checkpoint).

    ``in_offset`` is the offset in the compressed file of the first byte to feed, ``out_offset``
    the offset in the uncompressed stream of the first byte it yields. ``bits`` (0..7) high bits of
    ``byte`` (the file byte at ``in_offset - 1``) are still unread; ``window`` is the decoder's
    history at that point (deflate: the last 32 KiB of output of the current member, or less).
    """

    in_offset: int
    out_offset: int
    bits: int = 0
    byte: int = 0
    window: bytes = b""


class IndexedStream(Protocol):
    """A compressed file read as its uncompressed bytes, noting where decoding could resume.

    Returned by :meth:`Compressor.open_indexed`. ``take_points`` returns the resume points passed
    since the previous call (in stream order); ``take_progress`` the ``(uncompressed, compressed)``
    byte counts after each internal decode step, so a caller can bound the compressed bytes any
    output range needs.
    """

    def read(self, n: int = -1, /) -> bytes: ...

    def take_points(self) -> list[ResumePoint]: ...

    def take_progress(self) -> list[tuple[int, int]]: ...


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

    def decompress_from(self, data: bytes, point: ResumePoint, skip: int, size: int) -> bytes:
        """Decode from the middle of a stream (zran chunks, docs/compressor-interface.md).

        ``data`` is the compressed file from ``point.in_offset`` on (at least as far as the wanted
        output needs). Returns the ``size`` bytes that follow the first ``skip`` bytes of output
        from ``point``. Raises :class:`~nydus_core.errors.IntegrityError` when the data does not
        decode that far. Compressors without resumable streams keep this default, which refuses.
        """
        raise UnsupportedFeatureError(f"compressor '{self.name}' cannot decode from a resume point")

    def open_indexed(self, stream: BinaryIO) -> IndexedStream:
        """Return ``stream`` (a compressed file) read as uncompressed bytes, noting resume points.

        Used by ``targz-ref`` builds. The default refuses.
        """
        raise UnsupportedFeatureError(f"compressor '{self.name}' cannot index a compressed stream")


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
    def is_ready(self, chunk: ChunkInfo) -> bool:
        """Return whether ``chunk``'s uncompressed bytes are in the cache."""

    @abc.abstractmethod
    def get(self, chunk: ChunkInfo) -> bytes | None:
        """Return the chunk's uncompressed bytes, or ``None`` on a miss."""

    @abc.abstractmethod
    def put(self, chunk: ChunkInfo, data: bytes) -> None:
        """Store verified uncompressed bytes of ``chunk`` and mark them ready."""

    # Optional, with working defaults; a cache overrides them to be faster or to say more.

    #: The file holding the blob's cached data, when there is one (listed by the metrics API).
    data_path: str | None = None

    def read_range(self, chunk: ChunkInfo, start: int, length: int) -> bytes | None:
        """Return ``length`` bytes at ``start`` within ``chunk``, or ``None`` on a miss (override to
        read just that range, e.g. with one ``pread``)."""
        data = self.get(chunk)
        return None if data is None else data[start:start + length]

    def put_many(self, items: Sequence[tuple[ChunkInfo, bytes]]) -> None:
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
    def open_blob(self, blob: BlobInfo) -> BlobCache:
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


@dataclass(frozen=True)
class PrefetchRequest:
    """What a host asks of prefetch for one image, from its config and command line.

    ``enable`` is ``fs_prefetch.enable`` (v2: either prefetch table enabled), ``hints`` the paths
    of nydusd's ``--prefetch-files`` (or the mount API's ``prefetch_files``), ``prefetch_all`` the
    config's ``prefetch_all``. :meth:`Prefetcher.applies` reads it to say whether a prefetcher
    serves such a request.
    """

    enable: bool = False
    hints: tuple[str, ...] = ()
    prefetch_all: bool = False


class Prefetcher(abc.ABC):
    """Decides what to fetch ahead of reads, and feeds it to the read pipeline at a bounded rate.

    The host picks one prefetcher per image: the one named by the caller, else the installed
    prefetcher whose :meth:`applies` gives the highest rank for the request (two at the same rank
    is an error naming both; none means no prefetch).
    """

    name: ClassVar[str]

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)

    @classmethod
    def applies(cls, request: PrefetchRequest) -> int | None:
        """Return this prefetcher's rank for ``request`` (higher wins), or None when it should only
        run when named. The first-party ranks: ``files`` 20 when there are hints, ``table`` 10 when
        prefetch is enabled; ``all`` only by name."""
        return None

    @abc.abstractmethod
    def start(self, image: RafsImage, pipeline: ReadPipeline, hints: Iterable[str] = ()) -> None:
        """Begin prefetching in the background; ``hints`` are paths to fetch first."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop prefetching and wait for workers to end."""


@dataclass(frozen=True)
class ServeOptions:
    """What a frontend is asked to serve: upstream nydusd's options, parsed, nothing opened yet.

    ``mountpoint`` is where to show the image(s). ``bootstrap`` is the image to serve at
    ``virtual_mountpoint`` (none: start empty and take images through the API, upstream's
    ``POST /api/v1/mount``); it needs ``config`` (the nydusd config: backend, cache, prefetch).
    ``apisock`` is the HTTP API's unix socket, ``prefetch_files`` the absolute paths of
    ``--prefetch-files``, ``threads`` the worker threads for data reads, ``daemon_id`` and
    ``supervisor`` upstream's ``--id``/``--supervisor``. ``fs_driver`` is one of
    :data:`FS_DRIVERS`; a frontend refuses a driver it does not implement with a
    :class:`~nydus_core.errors.UsageError`. Frontend-specific tuning is the frontend's own
    constructor argument, never a field here.
    """

    mountpoint: str
    bootstrap: str | None = None
    config: NydusConfig | None = None
    virtual_mountpoint: str = "/"
    apisock: str | None = None
    prefetch_files: tuple[str, ...] = ()
    threads: int = 4
    daemon_id: str = ""
    supervisor: str | None = None
    fs_driver: str = "fusedev"

    def nydusd_args(self) -> list[str]:
        """Return these options as upstream nydusd flags (for hosts that start a daemon process;
        ``config`` and ``prefetch_files`` are files there, so they are not included)."""
        args = ["--mountpoint", self.mountpoint]
        if self.bootstrap:
            args += ["--bootstrap", self.bootstrap]
        if self.virtual_mountpoint != "/":
            args += ["--virtual-mountpoint", self.virtual_mountpoint]
        if self.apisock:
            args += ["--apisock", self.apisock]
        if self.threads != 4:
            args += ["--thread-num", str(self.threads)]
        if self.daemon_id:
            args += ["--id", self.daemon_id]
        if self.supervisor:
            args += ["--supervisor", self.supervisor]
        if self.fs_driver != "fusedev":
            args += ["--fs-driver", self.fs_driver]
        return args


class Frontend(abc.ABC):
    """Shows an opened image to users (a FUSE mount today)."""

    name: ClassVar[str]

    @abc.abstractmethod
    def serve(self, options: ServeOptions) -> int:
        """Serve what ``options`` ask until told to stop (a signal, an unmount, the API); return
        an exit status. Errors before anything is shown are :class:`~nydus_core.errors.NydusError`
        (one line)."""


@dataclass(frozen=True)
class ConvertOptions:
    """How a converter builds and stores the Nydus image: upstream ``nydusify convert``'s options.

    ``platform`` picks a manifest of a multi-platform source (``merge_platform`` converts them all
    into one index). ``compressor``, ``chunk_size``, ``fs_version``, ``chunk_dict``
    (``bootstrap:registry:REF`` or ``bootstrap:local:PATH``) and ``prefetch_patterns`` (paths to
    record in the prefetch table) shape the image. ``source_insecure``/``target_insecure`` allow
    TLS without verification, ``plain_http`` plain HTTP. ``backend_type``/``backend_config`` say
    where blobs go (the target registry by default, or object storage). ``oci`` writes OCI media
    types, ``with_referrer`` links the result to its source. ``oci_ref`` (``--oci-ref``) keeps the
    source's gzip layers as the data blobs and pushes only small RAFS (meta) blobs and the bootstrap
    (zran, rafs-format.md §6.8). ``work_dir`` holds temporary files and
    the layer cache, ``output_json`` receives the summary, ``progress`` shows bars (None: only on a
    terminal). A converter refuses what it cannot do with a :class:`~nydus_core.errors.UsageError`.
    """

    platform: str = "linux/amd64"
    compressor: str = "zstd"
    chunk_size: int = 0x100000
    fs_version: int = 6
    chunk_dict: str | None = None
    chunk_dict_insecure: bool = False
    prefetch_patterns: tuple[str, ...] | None = None
    source_insecure: bool = False
    target_insecure: bool = False
    plain_http: bool = False
    merge_platform: bool = False
    with_referrer: bool = False
    oci: bool = False
    oci_ref: bool = False
    backend_type: str = "registry"
    backend_config: Mapping[str, Any] = field(default_factory=dict)
    work_dir: str = "./tmp"
    output_json: str | None = None
    progress: bool | None = None


class Converter(abc.ABC):
    """Turns a foreign image (an OCI image in a registry, say) into Nydus bootstrap + blobs."""

    name: ClassVar[str]

    @abc.abstractmethod
    def convert(self, source: str, target: str, options: ConvertOptions | None = None) -> dict[str, Any]:
        """Convert ``source`` to ``target``; return a summary (timings, sizes) for ``--output-json``."""
