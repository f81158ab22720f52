"""The event bus: sync progress, customer status and computer connection changes, and agent
tokens that stopped working; and the hub that fans its events out to subscriptions.

Payloads carry ids, never rows. `InProcessEventBus` serves one process (the embedded default);
`PostgresEventBus` (LISTEN/NOTIFY) lets subscribers on any worker or host see events caused on
another. Besides mailboxes (read by tasks), a process may register handlers: plain functions
called with each event of their topic, at once when this process publishes it.

Nothing is dropped silently: every mailbox is bounded, and one that fills up (its reader
stalled) is closed with `SubscriberTooSlow`, which its reader raises once it has taken what
the mailbox held. The subscriptions of a worker read the bus through its hub (server/hub.py).
"""

from __future__ import annotations

import asyncio
import collections
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
QUEUE_LIMIT = 1000  # events one mailbox holds before its reader counts as stalled


class SubscriberTooSlow(Exception):
    """A mailbox filled up: its reader fell `QUEUE_LIMIT` events behind."""


class Mailbox:
    """A bounded queue of one reader. A put beyond the bound closes it instead of dropping
    anything; the reader gets what it holds, then `SubscriberTooSlow` (or the end, after
    `close()`)."""

    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self.limit = limit
        self._items: collections.deque[Any] = collections.deque()
        self._ready = asyncio.Event()
        self._end: BaseException | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any) -> bool:
        """Queue `item`; False (and closed with `SubscriberTooSlow`) when over the bound."""
        if self.closed:
            return False
        if len(self._items) >= self.limit:
            self.close(SubscriberTooSlow(f"more than {self.limit} events waiting"))
            return False
        self._items.append(item)
        self._ready.set()
        return True

    def close(self, error: BaseException | None = None) -> None:
        """No more items: the reader ends (raising `error`, if any) after the queued ones."""
        if not self.closed:
            self.closed, self._end = True, error
            self._ready.set()

    async def _queued(self) -> None:
        """Returns once an item is queued; closed with none left, ends the reader instead."""
        while not self._items:
            if self.closed:
                if self._end is not None:
                    raise self._end
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()

    async def batch(self) -> list[Any]:
        """Everything queued, waiting for at least one item."""
        await self._queued()
        items = list(self._items)
        self._items.clear()
        return items

    def __aiter__(self) -> Mailbox:
        return self

    async def __anext__(self) -> Any:
        await self._queued()
        return self._items.popleft()


class EventBus(Protocol):
    async def publish(self, topic: str, payload: dict[str, Any]) -> None: ...

    def subscribe(self, topic: str) -> contextlib.AbstractAsyncContextManager[Mailbox]: ...

    def open_mailbox(self, topic: str, limit: int = QUEUE_LIMIT) -> Mailbox: ...

    def close_mailbox(self, topic: str, mailbox: Mailbox) -> None: ...

    def add_handler(self, topic: str, handler: Handler) -> None: ...

    def remove_handler(self, topic: str, handler: Handler) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class InProcessEventBus:
    """Fans each event out to this process's handlers and to the mailboxes of its readers."""

    def __init__(self) -> None:
        self._queues: dict[str, set[Mailbox]] = {t: set() for t in TOPICS}
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
        for mailbox in list(self._queues.get(topic, ())):
            if not mailbox.put(payload):  # a stalled reader is closed, never the bus
                self._queues[topic].discard(mailbox)

    @property
    def subscriber_count(self) -> int:
        return sum(len(queues) for queues in self._queues.values())

    def open_mailbox(self, topic: str, limit: int = QUEUE_LIMIT) -> Mailbox:
        """A mailbox receiving every event of `topic` from now on (synchronously: nothing
        published after this call is missed)."""
        if topic not in self._queues:
            raise ValueError(f"unknown topic {topic!r}")
        mailbox = Mailbox(limit)
        self._queues[topic].add(mailbox)
        return mailbox

    def close_mailbox(self, topic: str, mailbox: Mailbox) -> None:
        self._queues.get(topic, set()).discard(mailbox)
        mailbox.close()

    @contextlib.asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[Mailbox]:
        mailbox = self.open_mailbox(topic)
        try:
            yield mailbox
        finally:
            self.close_mailbox(topic, mailbox)


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
