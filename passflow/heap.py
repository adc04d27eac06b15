"""The start-up heap of a long-running process, kept out of the cyclic garbage collector's way.

A passflow process holds a few hundred thousand objects from the moment it has started (modules,
SQLAlchemy's mappers, Celery, pydantic's validators) that live as long as it does. CPython's full
collection walks every one of them each time it runs, with the GIL held: under load a worker
made one every 5 to 7 s, each stopping all its threads for 100 to 170 ms, and those pauses
were the tail of a play's latency (docs/performance.md, "Pauses of the garbage collector").
`gc.freeze()` moves what exists now to a generation the collector never walks; objects made
later are collected as before, and reference counting still frees what the frozen objects stop
using.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect the garbage of start-up, then freeze what is left. Call it once a process has
    built what it keeps (its app, its pool), before it serves; in a forked child, once more
    (the parent's freeze is not inherited if it came after the fork). Returns the number of
    objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
