"""Progress bars for long work, drawn on stderr only when it is a terminal (tqdm)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["progress_bar"]


def _no_progress(done: int, total: int | None = None) -> None:
    """Ignore a progress update (stderr is not a terminal)."""


@contextmanager
def progress_bar(desc: str, total: int | None = None, *, unit: str = "B",
                 enabled: bool | None = None) -> Iterator[Callable[[int, int | None], None]]:
    """Yield ``update(done, total)`` that moves a bar to ``done``; a no-op when not on a terminal."""
    on = sys.stderr.isatty() if enabled is None else enabled
    if not on:
        yield _no_progress
        return
    from tqdm import tqdm

    # no monitor thread: the bar is moved by our updates, and a single-threaded CLI may fork workers
    tqdm.monitor_interval = 0
    bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", unit_divisor=1024,
               leave=False, file=sys.stderr, dynamic_ncols=True)

    def update(done: int, total: int | None = None) -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()
