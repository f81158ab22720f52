"""The event bus: sync progress, customer status and computer connection changes.

Payloads carry ids, never rows: a subscriber reloads what it may see through its own scope.
`InProcessEventBus` serves one process (the embedded default); `PostgresEventBus` (LISTEN/NOTIFY)
lets subscribers on any worker or host see events caused on another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)

SYNC_RUN = "sync_run"  # {"instance_id", "run_id"}
CUSTOMER_STATUS = "customer_status"  # {"instance_id", "company_ids"}
COMPUTER_CONNECTION = "computer_connection"  # {"instance_id", "computer_ids"}
SESSION_ENDED = "session_ended"  # {"instance_id", "user_ids"}: close their sockets
TOPICS = (SYNC_RUN, CUSTOMER_STATUS, COMPUTER_CONNECTION, SESSION_ENDED)
QUEUE_LIMIT = 1000


class EventBus(Protocol):
    async def publish(self, topic: str, payload: dict[str, Any]) -> None: ...

    def subscribe(
        self, topic: str
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class InProcessEventBus:
    """Fans each event out to the queues of this process's subscribers."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {t: set() for t in TOPICS}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.deliver(topic, payload)

    def deliver(self, topic: str, payload: dict[str, Any]) -> None:
        for queue in self._queues.get(topic, ()):
            if queue.full():  # a stalled subscriber loses its oldest event, not the bus
                queue.get_nowait()
            queue.put_nowait(payload)

    @property
    def subscriber_count(self) -> int:
        return sum(len(queues) for queues in self._queues.values())

    @contextlib.asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        if topic not in self._queues:
            raise ValueError(f"unknown topic {topic!r}")
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_LIMIT)
        self._queues[topic].add(queue)

        async def events() -> AsyncIterator[dict[str, Any]]:
            while True:
                yield await queue.get()

        try:
            yield events()
        finally:
            self._queues[topic].discard(queue)


def encode(topic: str, payload: dict[str, Any]) -> str:
    return orjson.dumps({"topic": topic, "payload": payload}).decode()


def decode(message: str) -> tuple[str, dict[str, Any]]:
    data = orjson.loads(message)
    return data["topic"], data["payload"]
