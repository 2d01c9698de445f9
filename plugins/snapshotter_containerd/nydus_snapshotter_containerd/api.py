"""containerd's API as Python modules (generated stubs), generating them on first use if needed.

``from nydus_snapshotter_containerd.api import snapshots_pb2, snapshots_grpc`` and so on. The stubs
are made from containerd's own protos by :mod:`.gen` (at build time by the hatch hook; here as a
fallback when the package was installed from source without it).
"""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from nydus_core.errors import NydusError

from . import gen

if TYPE_CHECKING:  # the modules __getattr__ loads, for type checkers (messages typed by the *_pb2.pyi)
    from ._gen.containerd.services.content.v1 import content_pb2 as content_pb2
    from ._gen.containerd.services.content.v1 import content_pb2_grpc as content_grpc
    from ._gen.containerd.services.diff.v1 import diff_pb2 as diff_pb2
    from ._gen.containerd.services.diff.v1 import diff_pb2_grpc as diff_grpc
    from ._gen.containerd.services.images.v1 import images_pb2 as images_pb2
    from ._gen.containerd.services.images.v1 import images_pb2_grpc as images_grpc
    from ._gen.containerd.services.leases.v1 import leases_pb2 as leases_pb2
    from ._gen.containerd.services.leases.v1 import leases_pb2_grpc as leases_grpc
    from ._gen.containerd.services.snapshots.v1 import snapshots_pb2 as snapshots_pb2
    from ._gen.containerd.services.snapshots.v1 import snapshots_pb2_grpc as snapshots_grpc
    from ._gen.containerd.services.version.v1 import version_pb2 as version_pb2
    from ._gen.containerd.services.version.v1 import version_pb2_grpc as version_grpc
    from ._gen.containerd.types import descriptor_pb2 as descriptor_pb2
    from ._gen.containerd.types import mount_pb2 as mount_pb2
    from ._gen.containerd.types import platform_pb2 as platform_pb2

__all__ = [
    "ProtoUnavailableError", "content_grpc", "content_pb2", "descriptor_pb2", "diff_grpc", "diff_pb2",
    "ensure_generated", "images_grpc", "images_pb2", "leases_grpc", "leases_pb2", "mount_pb2",
    "platform_pb2", "snapshots_grpc", "snapshots_pb2", "version_grpc", "version_pb2",
]

_lock = threading.Lock()
_BASE = f"{gen.PACKAGE}.{gen.GEN}.containerd"


class ProtoUnavailableError(NydusError):
    """containerd's API stubs are not generated and cannot be (protos or grpcio-tools missing)."""


def ensure_generated(force: bool = False) -> None:
    """Generate the stubs into the package if they are not there yet (or again, with ``force``)."""
    here = Path(__file__).resolve().parent
    marker = here / gen.GEN / "containerd" / "services" / "snapshots" / "v1" / "snapshots_pb2_grpc.py"
    if marker.is_file() and not force:
        return
    with _lock:
        if marker.is_file() and not force:
            return
        try:
            gen.generate(here.parent)
        except (gen.ProtoGenError, ImportError, OSError) as exc:
            raise ProtoUnavailableError(f"containerd API stubs: {exc}") from None
        importlib.invalidate_caches()


def _load(rel: str) -> ModuleType:
    ensure_generated()
    name = f"{_BASE}.{rel}"
    try:
        return importlib.import_module(name)
    except (ImportError, RuntimeError) as exc:
        # Stubs made by a newer grpcio-tools/protobuf than the ones installed refuse to import
        # (their version checks): make them again with the installed grpc_tools.
        first = exc
    for mod in [m for m in sys.modules if m.startswith(f"{gen.PACKAGE}.{gen.GEN}")]:
        del sys.modules[mod]
    ensure_generated(force=True)
    try:
        return importlib.import_module(name)
    except (ImportError, RuntimeError) as exc:
        raise ProtoUnavailableError(f"containerd API stubs: {first}; regenerated: {exc}") from None


def __getattr__(name: str) -> ModuleType:
    table = {
        "mount_pb2": "types.mount_pb2",
        "descriptor_pb2": "types.descriptor_pb2",
        "platform_pb2": "types.platform_pb2",
        "snapshots_pb2": "services.snapshots.v1.snapshots_pb2",
        "snapshots_grpc": "services.snapshots.v1.snapshots_pb2_grpc",
        "content_pb2": "services.content.v1.content_pb2",
        "content_grpc": "services.content.v1.content_pb2_grpc",
        "images_pb2": "services.images.v1.images_pb2",
        "images_grpc": "services.images.v1.images_pb2_grpc",
        "leases_pb2": "services.leases.v1.leases_pb2",
        "leases_grpc": "services.leases.v1.leases_pb2_grpc",
        "version_pb2": "services.version.v1.version_pb2",
        "version_grpc": "services.version.v1.version_pb2_grpc",
        "diff_pb2": "services.diff.v1.diff_pb2",
        "diff_grpc": "services.diff.v1.diff_pb2_grpc",
    }
    if name not in table:
        raise AttributeError(name)
    mod = _load(table[name])
    globals()[name] = mod
    return mod
