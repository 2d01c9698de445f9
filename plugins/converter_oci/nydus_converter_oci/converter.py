"""The ``oci`` converter as registered with the core (``nydus_register_converters``)."""

from __future__ import annotations

from typing import Any, ClassVar

from nydus_core.interfaces import Converter, ConvertOptions


class OciConverter(Converter):
    """OCI/Docker image in a registry -> Nydus image in a registry (``nydusify convert``)."""

    name: ClassVar[str] = "oci"

    def convert(self, source: str, target: str, options: ConvertOptions | None = None) -> dict[str, Any]:
        """Convert the image ``source`` to ``target`` (registry references) as ``options`` say;
        return the summary ``nydusify convert --output-json`` writes."""
        from .convert import convert
        from .options import ConversionJob

        result = convert(ConversionJob.from_options(source, target, options or ConvertOptions()))
        return result.to_json()
