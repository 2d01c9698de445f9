"""containerd's API as Python modules (stubs generated when the package was built).

``from nydus_snapshotter_containerd.api import snapshots_pb2, snapshots_grpc`` and so on. The stubs
are made from containerd's own protos by ``stubgen.py`` in the hatch build hook; nothing here
generates them, so the installed package needs no ``grpcio-tools``. Stubs that are missing, or that
refuse the installed grpcio/protobuf, raise :class:`ProtoUnavailableError` saying what to do.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from nydus_core.errors import NydusError

_BASE = f"{__package__}._gen.containerd"
_REBUILD = ("reinstall nydus-snapshotter-containerd from its wheel, or build it again where containerd's "
            "API protos are installed (apt-get install golang-github-containerd-containerd-dev)")

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
    "images_grpc", "images_pb2", "leases_grpc", "leases_pb2", "mount_pb2", "platform_pb2",
    "snapshots_grpc", "snapshots_pb2", "version_grpc", "version_pb2",
]

_MODULES = {
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


class ProtoUnavailableError(NydusError):
    """containerd's API stubs are missing from the installed package, or refuse to import."""


def _load(rel: str) -> ModuleType:
    name = f"{_BASE}.{rel}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith(f"{__package__}._gen"):
            raise ProtoUnavailableError(
                f"containerd API stubs are missing from this installation ({name}): {_REBUILD}") from None
        raise ProtoUnavailableError(f"containerd API stubs: {exc}") from None
    except (ImportError, RuntimeError) as exc:  # grpcio/protobuf older than the stubs' own checks allow
        text = " ".join(str(exc).split())
        raise ProtoUnavailableError(f"containerd API stubs refuse to load: {text}") from None


def __getattr__(name: str) -> ModuleType:
    if name not in _MODULES:
        raise AttributeError(name)
    mod = _load(_MODULES[name])
    globals()[name] = mod
    return mod
