"""The ``containerd.services.snapshots.v1.Snapshots`` gRPC service over :class:`.Snapshotter`.

Errors become gRPC status codes the way containerd's errdefs read them (NotFound, AlreadyExists,
FailedPrecondition, InvalidArgument; anything else Unknown with a one-line message).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import TypeVar

import grpc
from google.protobuf import empty_pb2, timestamp_pb2

from nydus_core.errors import NydusError, describe

from .api import mount_pb2, snapshots_grpc, snapshots_pb2
from .metadata import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    Snapshot,
)
from .snapshotter import Mount, Snapshotter

log = logging.getLogger("containerd-nydus")
T = TypeVar("T")

_CODES: list[tuple[type[Exception], grpc.StatusCode]] = [
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
]


def _ts(t: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts


def info_pb(s: Snapshot) -> snapshots_pb2.Info:
    """A :class:`Snapshot` as ``snapshots.v1.Info``."""
    return snapshots_pb2.Info(name=s.name, parent=s.parent, kind=s.kind.name, created_at=_ts(s.created),
                              updated_at=_ts(s.updated), labels=s.labels)


def mounts_pb(mounts: list[Mount]) -> list[mount_pb2.Mount]:
    """Mounts as ``types.Mount``."""
    return [mount_pb2.Mount(type=m.type, source=m.source, options=m.options) for m in mounts]


class SnapshotsService(snapshots_grpc.SnapshotsServicer):
    """Each RPC calls the snapshotter and maps its errors."""

    def __init__(self, sn: Snapshotter) -> None:
        self.sn = sn

    def _run(self, context: grpc.ServicerContext, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:
            for cls, code in _CODES:
                if isinstance(exc, cls):
                    if code != grpc.StatusCode.ALREADY_EXISTS:
                        log.info("%s: %s", what, exc)
                    context.abort(code, str(exc))
            if isinstance(exc, NydusError):
                log.error("%s: %s", what, exc)
                context.abort(grpc.StatusCode.UNKNOWN, f"{what}: {exc}")
            log.exception("%s failed", what)
            context.abort(grpc.StatusCode.INTERNAL, f"{what}: {describe(exc)}")
        raise AssertionError("unreachable")

    def Prepare(
        self, request: snapshots_pb2.PrepareSnapshotRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.PrepareSnapshotResponse:
        """Create an active snapshot."""
        ms = self._run(context, f"prepare {request.key}",
                       lambda: self.sn.prepare(request.key, request.parent, dict(request.labels)))
        return snapshots_pb2.PrepareSnapshotResponse(mounts=mounts_pb(ms))

    def View(
        self, request: snapshots_pb2.ViewSnapshotRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.ViewSnapshotResponse:
        """Create a view."""
        ms = self._run(context, f"view {request.key}",
                       lambda: self.sn.view(request.key, request.parent, dict(request.labels)))
        return snapshots_pb2.ViewSnapshotResponse(mounts=mounts_pb(ms))

    def Mounts(
        self, request: snapshots_pb2.MountsRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.MountsResponse:
        """Mounts of an active snapshot or view."""
        ms = self._run(context, f"mounts {request.key}", lambda: self.sn.mounts(request.key))
        return snapshots_pb2.MountsResponse(mounts=mounts_pb(ms))

    def Commit(
        self, request: snapshots_pb2.CommitSnapshotRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        """Commit an active snapshot."""
        self._run(context, f"commit {request.key} as {request.name}",
                  lambda: self.sn.commit(request.name, request.key, dict(request.labels)))
        return empty_pb2.Empty()

    def Remove(
        self, request: snapshots_pb2.RemoveSnapshotRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        """Remove a snapshot."""
        self._run(context, f"remove {request.key}", lambda: self.sn.remove(request.key))
        return empty_pb2.Empty()

    def Stat(
        self, request: snapshots_pb2.StatSnapshotRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.StatSnapshotResponse:
        """Info of a snapshot."""
        s = self._run(context, f"stat {request.key}", lambda: self.sn.stat(request.key))
        return snapshots_pb2.StatSnapshotResponse(info=info_pb(s))

    def Update(
        self, request: snapshots_pb2.UpdateSnapshotRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.UpdateSnapshotResponse:
        """Update a snapshot's labels."""
        paths = list(request.update_mask.paths) if request.HasField("update_mask") else []
        s = self._run(context, f"update {request.info.name}",
                      lambda: self.sn.update(request.info.name, dict(request.info.labels), paths))
        return snapshots_pb2.UpdateSnapshotResponse(info=info_pb(s))

    def List(
        self, request: snapshots_pb2.ListSnapshotsRequest, context: grpc.ServicerContext
    ) -> Iterator[snapshots_pb2.ListSnapshotsResponse]:
        """Stream the snapshots matching the filters, 100 a message."""
        snaps = self._run(context, "list", lambda: self.sn.walk(list(request.filters)))
        for i in range(0, len(snaps), 100):
            yield snapshots_pb2.ListSnapshotsResponse(info=[info_pb(s) for s in snaps[i:i + 100]])

    def Usage(
        self, request: snapshots_pb2.UsageRequest, context: grpc.ServicerContext
    ) -> snapshots_pb2.UsageResponse:
        """Disk usage of a snapshot."""
        u = self._run(context, f"usage {request.key}", lambda: self.sn.usage(request.key))
        return snapshots_pb2.UsageResponse(size=u.size, inodes=u.inodes)

    def Cleanup(
        self, request: snapshots_pb2.CleanupRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        """Remove directories no snapshot owns."""
        self._run(context, "cleanup", self.sn.cleanup)
        return empty_pb2.Empty()


def make_server(sn: Snapshotter, address: str, workers: int = 8) -> grpc.Server:
    """A gRPC server serving the snapshots service on the unix socket ``address`` (not started)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshots"))
    snapshots_grpc.add_SnapshotsServicer_to_server(SnapshotsService(sn), server)
    if server.add_insecure_port(f"unix://{address}") == 0:
        raise NydusError(f"{address}: cannot listen on this socket")
    return server
