"""The snapshotter's metadata: one sqlite database of snapshots (name, parent, kind, labels, times).

Each snapshot has a numeric id naming its directory (``snapshots/<id>``). Writes are transactions, so
a crash leaves either the old or the new state; after a restart :class:`MetaStore` answers what it
answered before, which is what containerd remembers.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from nydus_core.errors import NydusError


class Kind(IntEnum):
    """Snapshot kinds, numbered as containerd's ``snapshots.v1.Kind``."""

    UNKNOWN = 0
    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3


class SnapshotError(NydusError):
    """Base of the errors the gRPC layer maps to status codes."""


class NotFoundError(SnapshotError):
    """No snapshot by that name (gRPC NOT_FOUND)."""


class AlreadyExistsError(SnapshotError):
    """A snapshot by that name exists (gRPC ALREADY_EXISTS)."""


class FailedPreconditionError(SnapshotError):
    """The operation does not fit the snapshot's state (gRPC FAILED_PRECONDITION)."""


class InvalidArgumentError(SnapshotError):
    """A malformed request (gRPC INVALID_ARGUMENT)."""


@dataclass
class Snapshot:
    """One row: a snapshot as containerd sees it, plus its numeric id."""

    id: int
    name: str
    parent: str
    kind: Kind
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    parent TEXT NOT NULL DEFAULT '',
    kind INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
"""
_COLS = "id,name,parent,kind,labels,created,updated"


#: One row of ``SELECT {_COLS}``, in the column types of _SCHEMA.
_Row = tuple[int, str, str, int, str, float, float]


def _row(r: _Row) -> Snapshot:
    return Snapshot(int(r[0]), str(r[1]), str(r[2]), Kind(int(r[3])), json.loads(str(r[4])),
                    float(r[5]), float(r[6]))


class MetaStore:
    """The sqlite store; thread-safe (one connection, serialised by a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.lock = threading.RLock()

    def close(self) -> None:
        """Close the database."""
        with self.lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[MetaStore]:
        """Run the block as one transaction (nested calls join the outer one)."""
        with self.lock:
            if self._db.in_transaction:
                yield self
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get(self, name: str) -> Snapshot:
        """Return the snapshot ``name``; NotFoundError if there is none."""
        snap = self.find(name)
        if snap is None:
            raise NotFoundError(f"snapshot {name} does not exist")
        return snap

    def find(self, name: str) -> Snapshot | None:
        """Return the snapshot ``name`` or None."""
        with self.lock:
            r = self._db.execute(f"SELECT {_COLS} FROM snapshots WHERE name=?", (name,)).fetchone()
        return _row(r) if r else None

    def all(self) -> list[Snapshot]:
        """Every snapshot, oldest first."""
        with self.lock:
            rows = self._db.execute(
                f"SELECT {_COLS} FROM snapshots ORDER BY id").fetchall()
        return [_row(r) for r in rows]

    def children(self, name: str) -> list[Snapshot]:
        """Snapshots whose parent is ``name``."""
        with self.lock:
            rows = self._db.execute(
                f"SELECT {_COLS} FROM snapshots WHERE parent=?",
                (name,)).fetchall()
        return [_row(r) for r in rows]

    def chain(self, name: str) -> list[Snapshot]:
        """``name`` and its ancestors, nearest first."""
        out: list[Snapshot] = []
        cur: str = name
        while cur:
            snap = self.get(cur)
            out.append(snap)
            cur = snap.parent
        return out

    def create(self, name: str, parent: str, kind: Kind, labels: dict[str, str]) -> Snapshot:
        """Insert a snapshot; AlreadyExistsError if the name is taken, NotFoundError for a bad parent."""
        now = time.time()
        with self.transaction():
            if self.find(name) is not None:
                raise AlreadyExistsError(f"snapshot {name} already exists")
            if parent:
                p = self.get(parent)
                if p.kind != Kind.COMMITTED:
                    raise FailedPreconditionError(f"parent {parent} is not a committed snapshot")
            cur = self._db.execute(
                "INSERT INTO snapshots(name,parent,kind,labels,created,updated) VALUES (?,?,?,?,?,?)",
                (name, parent, int(kind), json.dumps(labels, sort_keys=True), now, now))
            sid = int(cur.lastrowid or 0)
        return Snapshot(sid, name, parent, kind, dict(labels), now, now)

    def commit(self, key: str, name: str, labels: dict[str, str]) -> Snapshot:
        """Turn active ``key`` into committed ``name`` (same id, so the same directory)."""
        now = time.time()
        with self.transaction():
            snap = self.get(key)
            if snap.kind != Kind.ACTIVE:
                raise FailedPreconditionError(
                    f"snapshot {key} is not active (it is {snap.kind.name.lower()})")
            if self.find(name) is not None:
                raise AlreadyExistsError(f"snapshot {name} already exists")
            merged = {**snap.labels, **labels}
            self._db.execute("UPDATE snapshots SET name=?,kind=?,labels=?,updated=? WHERE id=?",
                             (name, int(Kind.COMMITTED), json.dumps(merged, sort_keys=True), now, snap.id))
        return Snapshot(snap.id, name, snap.parent, Kind.COMMITTED, merged, snap.created, now)

    def set_labels(self, name: str, labels: dict[str, str]) -> Snapshot:
        """Replace the labels of ``name``."""
        now = time.time()
        with self.transaction():
            snap = self.get(name)
            self._db.execute("UPDATE snapshots SET labels=?,updated=? WHERE id=?",
                             (json.dumps(labels, sort_keys=True), now, snap.id))
        snap.labels = dict(labels)
        snap.updated = now
        return snap

    def delete(self, name: str) -> Snapshot:
        """Remove ``name``; FailedPreconditionError while it has children."""
        with self.transaction():
            snap = self.get(name)
            if self.children(name):
                raise FailedPreconditionError(f"cannot remove snapshot {name}: it has children")
            self._db.execute("DELETE FROM snapshots WHERE id=?", (snap.id,))
        return snap

    def ids(self) -> set[int]:
        """Every snapshot id in use."""
        with self.lock:
            return {int(r[0]) for r in self._db.execute("SELECT id FROM snapshots")}
