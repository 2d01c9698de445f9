"""One FUSE worker task until a request has to wait: lazy spawning of pyfuse3's worker tasks.

pyfuse3's loop starts a second worker task as soon as a request is received while no other task is
waiting for the next one, so a serial workload (``tar``, ``find``) ping-pongs every request between
two trio tasks through pyfuse3's read lock. Our handlers answer almost every request inline without
ever awaiting, so that second task is only needed while a handler waits (a read that misses the
local cache goes to a worker thread). :class:`LazyWorkers` holds pyfuse3's spawn requests back and
starts one only when a handler is about to wait (:meth:`LazyWorkers.before_wait`); with
``min_tasks=0`` the extra task ends once it is idle again. pyfuse3's read lock becomes a
:class:`ReadLock`, which does not yield when uncontended (trio's ``Lock`` costs a scheduling round
per request). Measured together: ~35 % less daemon CPU per request (see the plugin README).

It works through the documented way of swapping pyfuse3's event-loop module (the ``pyfuse3.trio``
attribute that ``pyfuse3_asyncio`` replaces): a stand-in module that is trio except for
``open_nursery`` and ``Lock``. Every spawn pyfuse3 asks for is either started or still pending,
so pyfuse3's own task count (live + pending) keeps its ``max_tasks`` bound.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import pyfuse3
import trio


class _LazyNursery:
    """pyfuse3's nursery seen through :class:`LazyWorkers`: ``start_soon`` only records the spawn."""

    def __init__(self, workers: LazyWorkers, nursery: trio.Nursery) -> None:
        self._workers = workers
        self._nursery = nursery
        self._first = True

    def start_soon(self, fn: Callable[..., Any], *args: Any, name: object = None) -> None:
        """Start the first worker (``pyfuse3.main``'s); record later spawns for
        :meth:`LazyWorkers.before_wait`."""
        if self._first:
            self._first = False
            self._nursery.start_soon(fn, *args, name=name)
        else:
            self._workers.pending.append((fn, args, name))

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._nursery, attr)


class _NurseryContext:
    def __init__(self, workers: LazyWorkers) -> None:
        self._workers = workers
        self._cm = trio.open_nursery()

    async def __aenter__(self) -> _LazyNursery:
        nursery = await self._cm.__aenter__()
        self._workers.nursery = nursery
        return _LazyNursery(self._workers, nursery)

    async def __aexit__(self, *exc: Any) -> bool | None:
        # the body only starts the first worker: the nursery lives on until every worker is done
        try:
            return await self._cm.__aexit__(*exc)
        finally:
            self._workers.pending.clear()
            self._workers.nursery = None


class ReadLock:
    """pyfuse3's read lock without trio's scheduling round when nobody else holds it.

    pyfuse3 takes it only around ``wait_readable`` (itself a checkpoint), so the uncontended
    acquire need not yield. Contended, a task parks and ``release`` hands the lock over."""

    def __init__(self) -> None:
        self._held = False
        self._lot = trio.lowlevel.ParkingLot()

    async def __aenter__(self) -> None:
        if self._held:
            await self._lot.park()  # woken by __aexit__ with the lock already ours
        else:
            self._held = True

    async def __aexit__(self, *exc: Any) -> None:
        if self._lot:
            self._lot.unpark()  # ownership passes to the first parked task
        else:
            self._held = False


class LazyWorkers:
    """Installs the stand-in trio module into pyfuse3 and starts held-back workers on demand."""

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[..., Any], tuple[Any, ...], object]] = []
        self.nursery: trio.Nursery | None = None
        self.started = 0
        self._saved: Any = None

    def install(self) -> bool:
        """Swap pyfuse3's trio for the stand-in; False (nothing changed) if pyfuse3 has no hook."""
        current = getattr(pyfuse3, "trio", None)
        if current is not trio:
            return False
        shim = types.ModuleType("trio")
        shim.__dict__.update(trio.__dict__)
        shim.__dict__.update(open_nursery=lambda *a, **kw: _NurseryContext(self), Lock=ReadLock)
        self._saved = current
        pyfuse3.trio = shim  # type: ignore[attr-defined]  # pyfuse3's stubs do not declare its trio global
        return True

    def uninstall(self) -> None:
        """Give pyfuse3 the real trio back."""
        if self._saved is not None:
            pyfuse3.trio = self._saved  # type: ignore[attr-defined]  # pyfuse3's stubs omit its trio global
            self._saved = None

    def before_wait(self) -> None:
        """Start one held-back worker, so the next request is read while this handler waits."""
        if self.pending and self.nursery is not None:
            fn, args, name = self.pending.pop()
            self.started += 1
            self.nursery.start_soon(fn, *args, name=name)
