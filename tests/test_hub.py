"""The subscription hub and the bus's mailboxes, in one process: one fetch per event whatever
the number of subscribers, bursts delivered whole, a stalled reader ended with
`SubscriberTooSlow` while the others receive everything, and nothing silently dropped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from server import events
from server.events import InProcessEventBus, Mailbox, SubscriberTooSlow
from server.hub import Hub

TOPIC = events.CUSTOMER_STATUS


class Fetches:
    """The topic's load: reads nothing, records what it was asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[dict[str, Any]]]] = []

    async def __call__(self, instance_id: int, payloads: Sequence[dict[str, Any]]) -> Mapping:
        self.calls.append((instance_id, list(payloads)))
        await asyncio.sleep(0)  # a fetch yields to the loop, as a statement would
        return {i: f"row {i}" for p in payloads for i in p["company_ids"]}


def every_id(payload: dict[str, Any], found: Mapping) -> list[Any]:
    return [found[i] for i in payload["company_ids"]]


def event(instance_id: int, *ids: int) -> dict[str, Any]:
    return {"instance_id": instance_id, "company_ids": list(ids)}


async def drain(mailbox: Mailbox, count: int, within: float = 5) -> list[Any]:
    got: list[Any] = []
    async with asyncio.timeout(within):
        while len(got) < count:
            got += await anext(mailbox)
    return got


@pytest.fixture
def hub() -> tuple[Hub, InProcessEventBus, Fetches]:
    bus = InProcessEventBus()
    fetches = Fetches()
    hub = Hub(bus)
    hub.register(TOPIC, fetches)
    return hub, bus, fetches


@pytest.mark.parametrize("subscribers", [1, 200])
async def test_an_event_is_fetched_once_whatever_the_number_of_subscribers(hub, subscribers):
    hub, bus, fetches = hub
    async with contextlib.AsyncExitStack() as stack:
        boxes = [
            await stack.enter_async_context(hub.subscribe(TOPIC, 1, every_id))
            for _ in range(subscribers)
        ]
        await bus.publish(TOPIC, event(1, 7))
        assert [await drain(box, 1) for box in boxes] == [["row 7"]] * subscribers
    assert fetches.calls == [(1, [event(1, 7)])]
    assert hub.fetches(TOPIC) == 1


async def test_events_of_an_instance_without_subscribers_are_not_fetched(hub):
    hub, bus, fetches = hub
    async with hub.subscribe(TOPIC, 1, every_id) as box:
        await bus.publish(TOPIC, event(2, 5))
        await bus.publish(TOPIC, event(1, 6))
        assert await drain(box, 1) == ["row 6"]
    assert [instance for instance, _ in fetches.calls] == [1]


async def test_a_burst_is_fetched_in_one_go_and_delivered_whole_and_in_order(hub):
    hub, bus, fetches = hub
    async with (
        hub.subscribe(TOPIC, 1, every_id) as first,
        hub.subscribe(TOPIC, 1, every_id) as other,
    ):
        for n in range(5000):  # published faster than anything is fetched
            await bus.publish(TOPIC, event(1, n))
        expected = [f"row {n}" for n in range(5000)]
        assert await drain(first, 5000) == expected
        assert await drain(other, 5000) == expected
    assert len(fetches.calls) < 5000  # events that arrived together shared a fetch
    assert sum(len(payloads) for _, payloads in fetches.calls) == 5000


async def test_each_subscriber_receives_what_its_selection_lets_through(hub):
    hub, bus, _ = hub

    def odd(payload: dict[str, Any], found: Mapping) -> list[Any]:
        return [found[i] for i in payload["company_ids"] if i % 2]

    async with (
        hub.subscribe(TOPIC, 1, every_id) as everything,
        hub.subscribe(TOPIC, 1, odd) as some,
    ):
        await bus.publish(TOPIC, event(1, 1, 2, 3))
        await bus.publish(TOPIC, event(1, 4))
        await bus.publish(TOPIC, event(1, 5))
        assert await drain(everything, 5) == [f"row {n}" for n in range(1, 6)]
        assert await drain(some, 3) == ["row 1", "row 3", "row 5"]


async def test_a_stalled_subscriber_is_ended_with_an_error_and_the_others_lose_nothing(hub):
    hub, bus, _ = hub
    batches = events.QUEUE_LIMIT + 5
    async with (
        hub.subscribe(TOPIC, 1, every_id) as stalled,
        hub.subscribe(TOPIC, 1, every_id) as live,
    ):
        received: list[Any] = []
        for n in range(batches):  # one batch each: the live reader keeps up, the other never reads
            await bus.publish(TOPIC, event(1, n))
            received += await drain(live, 1)
        assert received == [f"row {n}" for n in range(batches)]
        # the stalled one gets what its mailbox held, then the error: never a silent gap
        got = []
        with pytest.raises(SubscriberTooSlow):
            async for rows in stalled:
                got += rows
        assert got == [f"row {n}" for n in range(events.QUEUE_LIMIT)]


async def test_a_selection_answering_none_ends_that_subscription_only(hub):
    hub, bus, _ = hub
    ended = False

    def until_ended(payload: dict[str, Any], found: Mapping) -> list[Any] | None:
        return None if ended else every_id(payload, found)

    async with (
        hub.subscribe(TOPIC, 1, until_ended) as box,
        hub.subscribe(TOPIC, 1, every_id) as other,
    ):
        await bus.publish(TOPIC, event(1, 1))
        assert await drain(box, 1) == ["row 1"]
        ended = True
        await bus.publish(TOPIC, event(1, 2))
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(box), 5)
        assert await drain(other, 2) == ["row 1", "row 2"]


async def test_a_failed_fetch_ends_the_subscriptions_with_the_error(hub):
    hub, bus, _ = hub

    async def broken(instance_id: int, payloads: Sequence[dict[str, Any]]) -> Mapping:
        raise RuntimeError("database down")

    hub.register(events.SYNC_RUN, broken)
    async with hub.subscribe(events.SYNC_RUN, 1, every_id) as box:
        await bus.publish(events.SYNC_RUN, {"instance_id": 1, "run_id": 1})
        with pytest.raises(RuntimeError, match="database down"):
            await asyncio.wait_for(anext(box), 5)


async def test_the_bus_reads_a_topic_once_for_the_hub_and_lets_go_with_the_last_subscriber(hub):
    hub, bus, _ = hub
    assert bus.subscriber_count == 0
    async with hub.subscribe(TOPIC, 1, every_id), hub.subscribe(TOPIC, 2, every_id):
        assert bus.subscriber_count == 1
        assert hub.subscriber_count == 2
    assert bus.subscriber_count == 0 and hub.subscriber_count == 0
    async with hub.subscribe(TOPIC, 1, every_id) as box:  # and starts again
        await bus.publish(TOPIC, event(1, 3))
        assert await drain(box, 1) == ["row 3"]


async def test_a_bus_reader_that_stalls_gets_what_it_held_then_an_error():
    bus = InProcessEventBus()
    async with bus.subscribe(events.SESSION_ENDED) as mailbox:
        for n in range(events.QUEUE_LIMIT + 1):
            await bus.publish(events.SESSION_ENDED, {"instance_id": 1, "session_ids": [n]})
        assert bus.subscriber_count == 0  # closed at once: nothing more is put in it
        got = []
        with pytest.raises(SubscriberTooSlow):
            async for payload in mailbox:
                got.append(payload["session_ids"][0])
        assert got == list(range(events.QUEUE_LIMIT))
