"""Plain-Python work over a whole instance runs off the event loop, without cyclic garbage
collection until the last such stretch ends (`server.offload`)."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from server import offload


async def test_a_computation_leaves_the_event_loop_free_for_other_tasks() -> None:
    served = threading.Event()

    def computation() -> tuple[bool, int]:
        # set by a callback of the event loop: never, if this ran on the loop
        return served.wait(timeout=10), threading.get_ident()

    asyncio.get_running_loop().call_later(0.01, served.set)
    was_served, thread = await offload.computed(computation)
    assert was_served
    assert thread != threading.get_ident()


async def test_a_computation_runs_without_cyclic_collection_and_passes_its_error_on() -> None:
    assert gc.isenabled()
    assert await offload.computed(gc.isenabled) is False
    assert gc.isenabled()

    def failing(message: str) -> None:
        raise ValueError(message)

    with pytest.raises(ValueError, match="bad row"):
        await offload.computed(failing, message="bad row")
    assert gc.isenabled()


def test_collection_comes_back_when_the_last_of_overlapping_stretches_ends() -> None:
    started, release = threading.Event(), threading.Event()

    def stretch() -> None:
        with offload.no_collection():
            started.set()
            release.wait(timeout=10)

    worker = threading.Thread(target=stretch)
    with offload.no_collection():
        assert not gc.isenabled()
        worker.start()
        assert started.wait(timeout=10)
    assert not gc.isenabled()  # the worker's stretch still runs
    release.set()
    worker.join(timeout=10)
    assert gc.isenabled()


def test_collection_disabled_before_a_stretch_stays_disabled_after_it() -> None:
    gc.disable()
    try:
        with offload.no_collection():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_within_a_sync_what_a_stretch_built_is_frozen_until_the_last_sync_ends() -> None:
    assert gc.get_freeze_count() == 0
    with offload.no_collection(freeze=True):  # no sync: nothing to hold it for
        pass
    assert gc.get_freeze_count() == 0
    with offload.no_full_collection():
        with offload.no_collection():  # a small stretch (a shift): not asked to freeze
            pass
        assert gc.get_freeze_count() == 0
        with offload.no_full_collection():
            with offload.no_collection(freeze=True):
                built = [{"row": n} for n in range(1_000)]
            assert gc.get_freeze_count() >= len(built)  # the young collections skip them
        assert gc.get_freeze_count() >= len(built)
    assert gc.get_freeze_count() == 0
    assert gc.isenabled()


async def test_what_a_computation_of_a_sync_builds_is_frozen_until_the_sync_ends() -> None:
    with offload.no_full_collection():
        built = await offload.computed(lambda: [{"row": n} for n in range(1_000)])
        assert gc.get_freeze_count() >= len(built)
    assert gc.get_freeze_count() == 0


async def test_a_computation_begun_ahead_runs_while_the_caller_awaits_something_else() -> None:
    released = asyncio.Event()
    waited = threading.Event()

    def computation() -> str:
        # waits for the caller's await below to have begun: never, if `ahead` ran it only
        # when awaited
        return "rows" if waited.wait(timeout=10) else "not meanwhile"

    async def statement() -> None:
        waited.set()
        await released.wait()

    with offload.ahead(computation) as rows:
        asyncio.get_running_loop().call_later(0.01, released.set)
        await statement()
        assert await rows == "rows"


async def test_a_computation_left_before_it_is_awaited_is_dropped_unreported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def failing() -> None:
        raise ValueError("bad row")

    with pytest.raises(RuntimeError, match="statement failed"), offload.ahead(failing) as begun:
        raise RuntimeError("statement failed")  # before the computation is awaited
    await asyncio.wait([begun])
    assert begun.cancelled()
    with offload.ahead(failing) as finished, pytest.raises(ValueError, match="bad row"):
        await finished
    with offload.ahead(failing) as unawaited:
        await asyncio.wait([unawaited])  # done, its error never awaited by the caller
    del begun, finished, unawaited
    gc.collect()
    await asyncio.sleep(0)
    assert "exception was never retrieved" not in caplog.text
    assert gc.isenabled()


async def test_work_begun_and_left_before_it_ends_is_cancelled_where_it_waits() -> None:
    stopped = asyncio.Event()

    async def drafting() -> str:
        try:
            await asyncio.sleep(10)  # a statement of the draft, say
        except asyncio.CancelledError:
            stopped.set()
            raise
        return "draft"

    with pytest.raises(RuntimeError, match="fetch failed"), offload.begun(drafting()) as draft:
        await asyncio.sleep(0)  # the draft has begun
        raise RuntimeError("fetch failed")
    await asyncio.wait_for(stopped.wait(), 1)
    assert draft.cancelled()
