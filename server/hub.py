"""The subscription hub of one worker: each event is fetched once, whatever the number of
subscribers, and each subscriber picks from it in memory what it may receive.

The hub reads the bus through one mailbox per topic that has subscribers (opened with the
first, closed with the last). `refresh` is called with the subscribers' viewers every
`refresh_every` seconds while there are subscribers (the API re-reads their rights, all in one
statement). For every batch of events that arrived together it calls, per instance with
subscribers: `refresh` for those whose rights are older than `refresh_every` (the periodic
one fell behind), then the topic's `load` once for the whole batch (one
fetch: the rows with whatever every subscriber needs to check and render them, such as their
paths), then each subscriber's `select`, a pure function of the event, the fetched rows and its
viewer. What a subscriber selects from one batch goes to its own bounded mailbox as one entry
(so a burst is not mistaken for a stall): a subscriber that falls `QUEUE_LIMIT` batches behind
is ended with `SubscriberTooSlow`, never silently skipped. The hub
knows nothing of GraphQL: topics and their loads are registered by `server/api/subscriptions.py`
(and whoever adds a topic later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from server.events import EventBus, Mailbox

log = logging.getLogger(__name__)

Payload = dict[str, Any]
# one fetch for the events of one instance that arrived together
Load = Callable[[int, Sequence[Payload]], Awaitable[Mapping[Any, Any]]]
# what of one event a subscriber receives (a list, maybe empty), or None: its session ended
Select = Callable[[Payload, Mapping[Any, Any]], list[Any] | None]
# re-read the rights of those viewers last read more than so many seconds ago
Refresh = Callable[[Sequence[Any], float], Awaitable[None]]
# events the hub's own mailbox holds while it fetches: drained whole at each fetch, so only a
# burst this large arriving during one fetch could overflow it (and end every subscription)
HUB_QUEUE_LIMIT = 100_000


@dataclass(eq=False)
class Subscriber:
    instance_id: int
    select: Select
    viewer: Any = None  # handed to the hub's `refresh` before each fetch
    mailbox: Mailbox = field(default_factory=Mailbox)


@dataclass(eq=False)
class _Topic:
    load: Load
    subscribers: dict[int, list[Subscriber]] = field(default_factory=dict)  # by instance
    inbox: Mailbox | None = None
    pump: asyncio.Task[None] | None = None
    fetches: int = 0  # for tests: loads issued


class Hub:
    def __init__(
        self, bus: EventBus, refresh: Refresh | None = None, refresh_every: float = 1.0
    ) -> None:
        self.bus = bus
        self.refresh = refresh
        self.refresh_every = refresh_every
        self._topics: dict[str, _Topic] = {}
        self._refresher: asyncio.Task[None] | None = None

    def register(self, topic: str, load: Load) -> None:
        self._topics[topic] = _Topic(load)

    def fetches(self, topic: str) -> int:
        return self._topics[topic].fetches

    @property
    def subscriber_count(self) -> int:
        return sum(len(g) for t in self._topics.values() for g in t.subscribers.values())

    @contextlib.asynccontextmanager
    async def subscribe(
        self, topic: str, instance_id: int, select: Select, viewer: Any = None
    ) -> AsyncIterator[Mailbox]:
        """A mailbox of what `select` picks from every later event of `topic` of the
        instance (each item a list); its reader raises `SubscriberTooSlow` if it stalls."""
        state = self._topics[topic]
        subscriber = Subscriber(instance_id, select, viewer)
        state.subscribers.setdefault(instance_id, []).append(subscriber)
        if state.inbox is None:  # opened now, synchronously: no event published later is lost
            state.inbox = self.bus.open_mailbox(topic, HUB_QUEUE_LIMIT)
            state.pump = asyncio.create_task(self._pump(topic, state), name=f"hub-{topic}")
        if self.refresh is not None and (self._refresher is None or self._refresher.done()):
            self._refresher = asyncio.create_task(self._refresh_forever(), name="hub-refresh")
        try:
            yield subscriber.mailbox
        finally:
            self._leave(topic, state, subscriber)

    def _leave(self, topic: str, state: _Topic, subscriber: Subscriber) -> None:
        subscriber.mailbox.close()
        group = state.subscribers.get(subscriber.instance_id, [])
        with contextlib.suppress(ValueError):
            group.remove(subscriber)
        if not group:
            state.subscribers.pop(subscriber.instance_id, None)
        if not state.subscribers and state.inbox is not None:
            self.bus.close_mailbox(topic, state.inbox)
            state.inbox = None
            if state.pump is not None:
                state.pump.cancel()
                state.pump = None

    def _viewers(self, instance_id: int | None = None) -> list[Any]:
        return [
            s.viewer
            for t in self._topics.values()
            for i, group in t.subscribers.items()
            if instance_id is None or i == instance_id
            for s in group
            if s.viewer is not None
        ]

    async def _refresh_forever(self) -> None:
        """Between events, keep the subscribers' rights fresh (one statement a period for
        all), so that an event seldom waits for it; ends with the last subscriber."""
        assert self.refresh is not None
        while self.subscriber_count:
            await asyncio.sleep(self.refresh_every)
            try:
                await self.refresh(self._viewers(), self.refresh_every / 2)
            except Exception:
                log.exception("hub: re-reading the subscribers' rights failed")

    async def _pump(self, topic: str, state: _Topic) -> None:
        inbox = state.inbox
        assert inbox is not None
        try:
            while True:
                events = await inbox.batch()
                by_instance: dict[int, list[Payload]] = {}
                for payload in events:
                    by_instance.setdefault(payload.get("instance_id", -1), []).append(payload)
                for instance_id, payloads in by_instance.items():
                    if state.subscribers.get(instance_id):
                        await self._deliver(state, instance_id, payloads)
        except StopAsyncIteration:
            return
        except Exception as exc:  # SubscriberTooSlow: the hub itself fell behind the bus
            log.error("hub: the %s pump stopped (%s)", topic, type(exc).__name__)
            if state.inbox is inbox:  # end every subscription: the next one starts afresh
                for group in state.subscribers.values():
                    for subscriber in group:
                        subscriber.mailbox.close(exc)
                state.subscribers = {}
                self.bus.close_mailbox(topic, inbox)
                state.inbox, state.pump = None, None

    async def _deliver(self, state: _Topic, instance_id: int, payloads: list[Payload]) -> None:
        try:
            if self.refresh is not None:  # those due (the refresher fell behind), if any
                await self.refresh(self._viewers(instance_id), self.refresh_every)
            state.fetches += 1
            found = await state.load(instance_id, payloads)
        except Exception as exc:
            log.exception("hub: fetching an event failed")
            for subscriber in list(state.subscribers.get(instance_id, ())):
                subscriber.mailbox.close(exc)  # its subscription ends with the error
            return
        for subscriber in list(state.subscribers.get(instance_id, ())):
            try:
                picked, ended = _pick(subscriber, payloads, found)
            except Exception as exc:
                log.exception("hub: a subscriber's selection failed")
                subscriber.mailbox.close(exc)
                continue
            if picked:  # one entry per batch: a burst is not a stall
                subscriber.mailbox.put(picked)
            if ended:
                subscriber.mailbox.close()


def _pick(
    subscriber: Subscriber, payloads: Sequence[Payload], found: Mapping[Any, Any]
) -> tuple[list[Any], bool]:
    """What the subscriber receives of these events, and whether its session ended."""
    picked: list[Any] = []
    for payload in payloads:
        chosen = subscriber.select(payload, found)
        if chosen is None:
            return picked, True
        picked += chosen
    return picked, False
