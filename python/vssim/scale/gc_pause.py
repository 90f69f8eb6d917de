"""The cyclic garbage collector during a run's event loop.

A run allocates millions of short-lived objects (simpy's events, the protocol's records, the
engine's small report arrays) and frees almost all of them by reference counting: the collector
finds a few hundred cycles in a whole ws2012 run of the throughput benchmark, yet its default
first threshold (700 allocations) made it walk the young objects 500 times and every live
object a few times — 7 % of that run's wall time (`benches/bench_scenario.py -k throughput`:
3.79 s with the defaults, 3.55 s with the objects alive before the run frozen and collections
every 100,000 allocations, 3.51 s with no collection at all).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Allocations between young collections while a run turns (model choice, measured as above:
#: with it the run took 3.55 s, with no collection at all 3.51 s; memory still returns by
#: reference counting).
RUN_GC_THRESHOLD = 100_000


_lock = threading.Lock()
#: Runs inside the policy now (runs from several threads nest), and what to restore after the last.
_depth = 0
_saved: tuple[tuple[int, ...], bool] = ((), False)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect less often while the block runs: the objects alive before it are frozen (a
    full collection does not walk them) and young collections wait for
    :data:`RUN_GC_THRESHOLD` allocations. However the block ends, the caller's thresholds are
    back and the objects are unfrozen — unless the caller had frozen some itself (then they all
    stay frozen: :func:`gc.unfreeze` cannot tell whose they are). Runs in several threads at once
    share one policy: the first in sets it, the last out restores it."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            old = gc.get_threshold()
            _saved = (old, gc.get_freeze_count() == 0)
            gc.freeze()
            gc.set_threshold(max(old[0], RUN_GC_THRESHOLD), *old[1:])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                thresholds, unfreeze = _saved
                gc.set_threshold(*thresholds)
                if unfreeze:
                    gc.unfreeze()
