"""The ``oci`` converter as registered with the core (``nydus_register_converters``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from nydus_core.interfaces import Converter


class OciConverter(Converter):
    """OCI/Docker image in a registry -> Nydus image in a registry (``nydusify convert``)."""

    name: ClassVar[str] = "oci"

    def convert(self, source: str, target: str, **options: Any) -> dict[str, Any]:
        """Convert; ``options`` are :class:`~.options.ConvertOptions` fields. Returns the summary."""
        from .convert import convert
        from .options import ConvertOptions

        if "work_dir" in options:
            options["work_dir"] = Path(options["work_dir"])
        result = convert(ConvertOptions(source=source, target=target, **options))
        return result.to_json()
