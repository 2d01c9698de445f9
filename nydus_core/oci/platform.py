"""Platforms (``os/arch[/variant]``) and picking a manifest out of an index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import FormatError, UsageError

__all__ = ["DEFAULT_PLATFORM", "Platform", "select_manifest", "select_nydus_manifest"]

DEFAULT_PLATFORM = "linux/amd64"


@dataclass(frozen=True)
class Platform:
    """An image platform."""

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` (``--platform``)."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/amd64")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> Platform | None:
        """From a descriptor's ``platform`` (or an image config's ``os``/``architecture``)."""
        if not doc or "os" not in doc or "architecture" not in doc:
            return None
        return cls(str(doc["os"]), str(doc["architecture"]), str(doc.get("variant") or ""))

    def to_json(self) -> dict[str, str]:
        """As a descriptor ``platform`` object."""
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def matches(self, other: Platform) -> bool:
        """Whether ``other`` (from an index) satisfies this wanted platform (variant only if asked)."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return not self.variant or self.variant == other.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def select_manifest(index: dict[str, Any], wanted: Platform, *, where: str,
                    skip_nydus: bool = True) -> dict[str, Any]:
    """Return the descriptor in ``index`` for ``wanted``; Nydus manifests are skipped unless asked."""
    from .image import is_nydus_descriptor

    seen = []
    desc: dict[str, Any]
    for desc in index.get("manifests") or []:
        plat = Platform.from_json(desc.get("platform"))
        if plat is None:
            continue
        if skip_nydus and is_nydus_descriptor(desc):
            continue
        seen.append(str(plat))
        if wanted.matches(plat):
            return desc
    if not index.get("manifests"):
        raise FormatError(f"{where}: the index lists no manifests")
    raise UsageError(f"{where}: no manifest for platform {wanted} (available: {', '.join(seen) or 'none'})")


def select_nydus_manifest(index: dict[str, Any], wanted: Platform, *, where: str) -> dict[str, Any]:
    """Return the Nydus manifest descriptor for ``wanted`` in a merged index."""
    from .image import is_nydus_descriptor

    desc: dict[str, Any]
    for desc in index.get("manifests") or []:
        plat = Platform.from_json(desc.get("platform"))
        if plat is not None and is_nydus_descriptor(desc) and wanted.matches(plat):
            return desc
    raise FormatError(f"{where}: the index has no Nydus manifest for platform {wanted}")
