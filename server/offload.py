"""Plain-Python work over a whole instance (a sync's snapshot: 100,000 companies, 200,000
licenses) without holding up the worker's other requests: run off the event loop (`computed`),
begun early to run while the database works (`ahead`), and out of the way of the cyclic garbage
collector, whose collections would walk those objects again and again (`no_collection`,
`no_full_collection`).
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

# guards the counts below: `computed` runs in worker threads
_collecting = threading.Lock()
_uncollected = 0  # stretches under `no_collection` running now
_collection_was_enabled = True  # before the first of them
_to_freeze = False  # whether one of them asked to freeze what they built
_holding_full_collections = 0  # syncs of this process running under `no_full_collection`
_full_collection_threshold = 0  # the oldest generation's threshold before the first of them


@contextmanager
def no_collection(*, freeze: bool = False) -> Iterator[None]:
    """No cyclic garbage collection during a stretch of plain Python that builds a few hundred
    thousand objects and no cycles: collections triggered by the allocations would walk the
    growing heap again and again (a quarter of a 100,000-company plan). Stretches may overlap
    (two syncs' `computed`): collection comes back when the last one ends. `freeze`, within a
    sync (`no_full_collection`): what the stretches built is then frozen (`gc.freeze`) until
    the last sync ends, else the first young collections after it would walk all of it, on
    whichever thread allocates next (0.4 s of a first sync of 100,000 companies, the event
    loop's)."""
    global _uncollected, _collection_was_enabled, _to_freeze
    with _collecting:
        if _uncollected == 0:
            _collection_was_enabled = gc.isenabled()
            gc.disable()
        _uncollected += 1
        _to_freeze = _to_freeze or freeze
    try:
        yield
    finally:
        with _collecting:
            _uncollected -= 1
            if _uncollected == 0:
                if _to_freeze and _holding_full_collections:
                    gc.freeze()
                _to_freeze = False
                if _collection_was_enabled:
                    gc.enable()


def _uncollected_call(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    with no_collection(freeze=True):
        return function(*args, **kwargs)


async def computed(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`function(*args, **kwargs)`, a sync's plain Python over its whole snapshot (no await, no
    database, nothing another task touches), run in a worker thread under `no_collection`.
    Meanwhile the event loop goes on serving the worker's other requests: it takes the
    interpreter back every switch interval (5 ms) instead of waiting out the whole computation
    (up to a second each at 100,000 companies: the plan, the license rows, the counters'
    roll-up). What it builds is frozen out of the young collections till the sync's end."""
    return await asyncio.to_thread(_uncollected_call, function, *args, **kwargs)


@contextmanager
def begun(work: Awaitable[T]) -> Iterator[asyncio.Future[T]]:
    """`work` begun now as a task of its own, awaited later: a sync prepares the next step while
    it waits on the upstream or the database. Left before it is awaited (an error), the work is
    cancelled, or its result dropped."""
    future = asyncio.ensure_future(work)
    try:
        yield future
    finally:
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()  # retrieved: an error the caller never awaited is not logged


def ahead(
    function: Callable[..., T], /, *args: Any, **kwargs: Any
) -> AbstractContextManager[asyncio.Future[T]]:
    """`computed(function, *args, **kwargs)` `begun` now: a sync works out what it writes next
    while the database runs its statements (two cores busy instead of one in turn: a first sync
    of 100,000 companies spends about as long in each). The computation reads only what it is
    given, never the database."""
    return begun(computed(function, *args, **kwargs))


@contextmanager
def no_full_collection() -> Iterator[None]:
    """No full (oldest-generation) cyclic garbage collection while a sync holds a snapshot in
    memory: each one walks every object of it, and one ran whenever the heap had grown by a
    quarter (5 during the three syncs of the sync benchmark at 20,000 companies, holding the
    worker's other requests up to 0.19 s each time, more the larger the instance). The young
    generations are still collected, so the cycles a request leaves behind go as they come;
    once the last sync ends, the threshold is back and what `no_collection` froze is collected
    as usual again. Across awaits (unlike `no_collection`)."""
    global _holding_full_collections, _full_collection_threshold
    with _collecting:
        young, middle, oldest = gc.get_threshold()
        if _holding_full_collections == 0:
            _full_collection_threshold = oldest
            gc.set_threshold(young, middle, 1 << 30)  # young collections between two full ones
        _holding_full_collections += 1
    try:
        yield
    finally:
        with _collecting:
            _holding_full_collections -= 1
            if _holding_full_collections == 0:
                young, middle, _ = gc.get_threshold()
                gc.set_threshold(young, middle, _full_collection_threshold)
                gc.unfreeze()
