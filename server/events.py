"""The event bus: sync progress, customer status and computer connection changes, and agent
tokens that stopped working.

Payloads carry ids, never rows: a subscriber reloads what it may see through its own scope.
`InProcessEventBus` serves one process (the embedded default); `PostgresEventBus` (LISTEN/NOTIFY)
lets subscribers on any worker or host see events caused on another. Besides subscriptions
(queues read by tasks), a process may register handlers: plain functions called with each event
of their topic, at once when this process publishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], None]

SYNC_RUN = "sync_run"  # {"instance_id", "run_id"}
CUSTOMER_STATUS = "customer_status"  # {"instance_id", "company_ids"}
COMPUTER_CONNECTION = "computer_connection"  # {"instance_id", "computer_ids"}
LICENSE_CHANGED = "license_changed"  # {"instance_id", "license_ids"}: changed by a sync
SESSION_ENDED = "session_ended"  # {"instance_id", "user_ids" | "session_ids"}: close sockets
# {"instance_id", "token_hashes"}: agent tokens of removed computers, or superseded by a
# re-enrolment; every process refuses them from now on (the hashes, never the tokens)
AGENT_TOKENS_REVOKED = "agent_tokens_revoked"
TOPICS = (
    SYNC_RUN,
    CUSTOMER_STATUS,
    COMPUTER_CONNECTION,
    LICENSE_CHANGED,
    SESSION_ENDED,
    AGENT_TOKENS_REVOKED,
)
QUEUE_LIMIT = 1000


class EventBus(Protocol):
    async def publish(self, topic: str, payload: dict[str, Any]) -> None: ...

    def subscribe(
        self, topic: str
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]: ...

    def add_handler(self, topic: str, handler: Handler) -> None: ...

    def remove_handler(self, topic: str, handler: Handler) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class InProcessEventBus:
    """Fans each event out to this process's handlers and to the queues of its subscribers."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {t: set() for t in TOPICS}
        self._handlers: dict[str, list[Handler]] = {t: [] for t in TOPICS}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.deliver(topic, payload)

    def add_handler(self, topic: str, handler: Handler) -> None:
        """Call `handler` with every event of `topic` (idempotent handlers only: on PostgreSQL
        this process's own events reach them twice, at once and when the notification
        comes back)."""
        if topic not in self._handlers:
            raise ValueError(f"unknown topic {topic!r}")
        self._handlers[topic].append(handler)

    def remove_handler(self, topic: str, handler: Handler) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._handlers[topic].remove(handler)

    def handle(self, topic: str, payload: dict[str, Any]) -> None:
        for handler in self._handlers.get(topic, ()):
            try:
                handler(payload)
            except Exception:
                log.exception("event bus: a %s handler failed", topic)

    def deliver(self, topic: str, payload: dict[str, Any]) -> None:
        self.handle(topic, payload)
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


CHANNEL = "msp_console_events"
MAX_IDS_PER_NOTIFY = 400  # NOTIFY payloads must stay under 8000 bytes
MAX_LIST_BYTES = 6000  # of one payload's id list, leaving room for the rest


def split_payload(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Cut long id lists (numbers or hashes) into several payloads that each fit one NOTIFY."""
    for key, value in payload.items():
        if not isinstance(value, list) or not value:
            continue
        widest = max(len(orjson.dumps(item)) for item in value) + 1
        size = max(1, min(MAX_IDS_PER_NOTIFY, MAX_LIST_BYTES // widest))
        if len(value) > size:
            return [{**payload, key: value[i : i + size]} for i in range(0, len(value), size)]
    return [payload]


class PostgresEventBus(InProcessEventBus):
    """Publishes with NOTIFY and delivers what one dedicated LISTEN connection per process
    hears, so a subscriber on any worker or host sees every event. The listening connection
    is reopened when it drops (events sent meanwhile are lost to this process)."""

    def __init__(self, dsn: str, reconnect_delay: float = 1.0) -> None:
        super().__init__()
        self.dsn = dsn
        self.reconnect_delay = reconnect_delay
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self.reconnects = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="event-bus-listener")
        try:
            await asyncio.wait_for(self._connected.wait(), timeout=10)
        except TimeoutError:
            log.warning("event bus: LISTEN connection not up yet; retrying in the background")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """NOTIFY every process (this one too, when the notification comes back); this
        process's handlers run at once, so what it decided holds before it answers."""
        from server.models import db

        for part in split_payload(payload):
            await db.fetch("SELECT pg_notify(?, ?)", [CHANNEL, encode(topic, part)])
        self.handle(topic, payload)

    def _on_notify(self, connection: Any, pid: int, channel: str, message: str) -> None:
        try:
            topic, payload = decode(message)
        except (ValueError, KeyError, TypeError):
            log.warning("event bus: ignored a malformed notification")
            return
        self.deliver(topic, payload)

    def _on_terminate(self, connection: Any) -> None:
        self._lost.set()

    async def _listen_forever(self) -> None:
        import asyncpg

        while True:
            connection = None
            try:
                connection = await asyncpg.connect(self.dsn)
                connection.add_termination_listener(self._on_terminate)
                await connection.add_listener(CHANNEL, self._on_notify)
                self._lost.clear()
                self._connected.set()
                await self._lost.wait()
                log.warning("event bus: LISTEN connection lost; reconnecting")
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("event bus: cannot LISTEN (%s); retrying", type(exc).__name__)
            finally:
                self._connected.clear()
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=2)
            self.reconnects += 1
            await asyncio.sleep(self.reconnect_delay)


def create_event_bus(database_url: str) -> EventBus:
    """PostgreSQL LISTEN/NOTIFY when the database is PostgreSQL, in-process otherwise."""
    from server.models import db

    url = db.normalize_url(database_url)
    if url.startswith("postgres://"):
        return PostgresEventBus("postgresql://" + url.removeprefix("postgres://"))
    return InProcessEventBus()
