"""What ``nydusify convert`` is asked to do."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nydus_core.config import decode_text
from nydus_core.errors import UsageError
from nydus_core.interfaces import ConvertOptions
from nydus_core.rafs.constants import DEFAULT_CHUNK_SIZE, valid_chunk_size

#: ``--backend-type`` values: blobs into the target registry, or into object storage.
BACKEND_TYPES = ("registry", "s3", "oss")


@dataclass
class ConversionJob:
    """One conversion: source, target and the options (upstream nydusify flag names in the
    comments), as the converter uses them; built from the core's
    :class:`~nydus_core.interfaces.ConvertOptions` by :meth:`from_options`."""

    source: str
    target: str
    source_insecure: bool = False  # --source-insecure
    target_insecure: bool = False  # --target-insecure
    plain_http: bool = False  # --plain-http
    platform: str = "linux/amd64"  # --platform
    compressor: str = "zstd"  # --compressor
    fs_version: int = 6  # --fs-version
    chunk_size: int = DEFAULT_CHUNK_SIZE  # --chunk-size / --fs-chunk-size
    chunk_dict: str | None = None  # --chunk-dict bootstrap:registry:REF | bootstrap:local:PATH
    chunk_dict_insecure: bool = False  # --chunk-dict-insecure
    prefetch_patterns: Sequence[str] | None = None  # --prefetch-patterns (paths read from stdin)
    merge_platform: bool = False  # --merge-platform
    with_referrer: bool = False  # --with-referrer
    oci: bool = False  # --oci: write OCI media types even for a Docker source
    oci_ref: bool = False  # --oci-ref: the source layers stay the data blobs (zran); implies --oci
    backend_type: str = "registry"  # --backend-type
    backend_config: dict[str, Any] = field(default_factory=dict)  # --backend-config JSON
    work_dir: Path = Path("./tmp")  # --work-dir
    output_json: Path | None = None  # --output-json
    progress: bool | None = None  # None: bars only on a terminal

    @classmethod
    def from_options(cls, source: str, target: str, options: ConvertOptions) -> ConversionJob:
        """Return the job converting ``source`` to ``target`` as ``options`` say."""
        return cls(
            source=source, target=target, source_insecure=options.source_insecure,
            target_insecure=options.target_insecure, plain_http=options.plain_http,
            platform=options.platform, compressor=options.compressor, fs_version=options.fs_version,
            chunk_size=options.chunk_size, chunk_dict=options.chunk_dict,
            chunk_dict_insecure=options.chunk_dict_insecure,
            prefetch_patterns=None if options.prefetch_patterns is None else list(options.prefetch_patterns),
            merge_platform=options.merge_platform, with_referrer=options.with_referrer, oci=options.oci,
            oci_ref=options.oci_ref,
            backend_type=options.backend_type, backend_config=dict(options.backend_config),
            work_dir=Path(options.work_dir),
            output_json=Path(options.output_json) if options.output_json else None,
            progress=options.progress,
        )

    def validate(self) -> None:
        """Raise UsageError for a value upstream would refuse."""
        if self.fs_version != 6:
            raise UsageError(f"--fs-version {self.fs_version}: nydus-py converts to RAFS v6 only")
        if not valid_chunk_size(self.chunk_size):
            raise UsageError(f"--chunk-size {self.chunk_size:#x}: must be a power of two between 0x1000 "
                             "and 0x1000000")
        if self.backend_type not in BACKEND_TYPES:
            choices = ", ".join(BACKEND_TYPES)
            raise UsageError(f"--backend-type {self.backend_type!r}: choose one of {choices}")
        if self.backend_type != "registry" and not self.backend_config:
            raise UsageError(f"--backend-type {self.backend_type} needs --backend-config")
        if self.chunk_dict is not None:
            parse_chunk_dict(self.chunk_dict)
        if self.oci_ref:
            if self.backend_type != "registry":
                raise UsageError("--oci-ref keeps the source layers in the registry: it cannot be used "
                                 f"with --backend-type {self.backend_type}")
            if self.chunk_dict is not None:
                raise UsageError("--oci-ref cannot be combined with --chunk-dict (the data blobs are the "
                                 "source layers)")

    def layer_options(self, chunk_dict_id: str | None) -> dict[str, Any]:
        """The options a per-layer conversion result depends on (part of the cache key)."""
        if self.oci_ref:  # ZRAN: gzip and sha256 are forced, as upstream
            return {"oci_ref": True, "chunk_size": self.chunk_size, "fs_version": self.fs_version}
        return {"compressor": self.compressor, "chunk_size": self.chunk_size, "fs_version": self.fs_version,
                "digester": "blake3", "chunk_dict": chunk_dict_id}


def parse_chunk_dict(value: str) -> tuple[str, str]:
    """Split ``bootstrap:registry:REF`` / ``bootstrap:local:PATH`` into ``(kind, ref)``."""
    parts = value.split(":", 2)
    if len(parts) != 3 or parts[0] != "bootstrap" or parts[1] not in ("registry", "local") or not parts[2]:
        raise UsageError(f"--chunk-dict {value!r}: expected bootstrap:registry:REF or bootstrap:local:PATH")
    return parts[1], parts[2]


def parse_backend_config(text: str) -> dict[str, Any]:
    """Parse ``--backend-config`` JSON (an object)."""
    if not text.lstrip().startswith("{"):
        raise UsageError("--backend-config: expected a JSON object")
    return dict(decode_text(text, source="--backend-config", syntax="json"))
