"""The agent runtime: what the agent API keeps in memory between requests (token cache, check-in
buffer, enrolment writer, rate limits) and the connection watcher, started and stopped with the
application.

Agent tokens that die (a computer removed, a token superseded by a re-enrolment) are announced
on the event bus; every runtime refuses them from that moment, whichever process saw the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from server.agents.buffer import CheckinBuffer
from server.agents.enrolments import EnrolmentWriter
from server.agents.rate_limit import TokenBuckets
from server.agents.tokens import AgentTokenCache
from server.domain import agents
from server.domain.agents import AgentIdentity, AgentReport, Enrolment, EnrolmentRequest
from server.domain.connections import ConnectionWatcher
from server.domain.secrets import token_hash
from server.events import AGENT_TOKENS_REVOKED, EventBus
from server.observability import CHECKINS, ENROLMENTS
from server.settings import Settings

log = logging.getLogger(__name__)

PRUNE_PERIOD = 60.0
MAX_ENROLMENT_KEYS = 100_000  # installer tokens and client addresses being limited at once


class AgentRuntime:
    """Owns the agent API's state; `start()` and `stop()` belong in the app lifespan, after the
    database is up and before it goes down (`stop()` writes every buffered check-in)."""

    def __init__(
        self, settings: Settings, bus: EventBus | None = None, *, watcher_period: float = 5.0
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.tokens = AgentTokenCache()
        self.limits = TokenBuckets(settings.agent_requests_per_minute)
        # per installer token and per client address
        self.enrolment_limits = TokenBuckets(
            settings.enrolments_per_minute, settings.enrolment_burst, max_keys=MAX_ENROLMENT_KEYS
        )
        self.watcher = ConnectionWatcher(settings, bus, period=watcher_period)
        self.buffer = CheckinBuffer(settings.checkin_flush_interval, on_written=self._written)
        self.enrolments = EnrolmentWriter(settings)
        self._maintenance: asyncio.Task[None] | None = None
        self.started = False

    async def start(self) -> None:
        if self.started:
            return
        self.started = True
        if self.bus is not None:
            self.bus.add_handler(AGENT_TOKENS_REVOKED, self._tokens_revoked)
        await self.buffer.start()
        await self.watcher.start()
        self._maintenance = asyncio.create_task(self._maintain(), name="agent-maintenance")

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        if self.bus is not None:
            self.bus.remove_handler(AGENT_TOKENS_REVOKED, self._tokens_revoked)
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        try:
            await self.enrolments.stop()
            await self.buffer.stop()
        finally:
            await self.watcher.stop()
        try:  # announce what the last check-ins changed while the bus is still up
            await self.watcher.run_once()
        except Exception:
            log.exception("announcing the last connection transitions failed")

    async def enroll(
        self, installer_token: str, request: EnrolmentRequest, client_address: str | None = None
    ) -> Enrolment:
        enrolment = await self.enrolments.enroll(installer_token, request, client_address)
        computer = enrolment.computer
        if enrolment.superseded_token_hash is not None:  # here at once, then everywhere
            superseded = [enrolment.superseded_token_hash]
            self._tokens_revoked({"token_hashes": superseded})
            await agents.publish_revoked_tokens(self.bus, computer.instance_id, superseded)
        self.tokens.put(
            AgentIdentity(
                token_hash=token_hash(enrolment.agent_token),
                computer_id=computer.id,
                instance_id=computer.instance_id,
                hostname=computer.name,
                os=computer.os,
                agent_version=computer.agent_version,
                protection_status=computer.protection_status,
            )
        )
        self.watcher.wake()
        ENROLMENTS.inc()
        return enrolment

    async def authenticate(self, agent_token_hash: str) -> AgentIdentity | None:
        return await self.tokens.get(agent_token_hash)

    def record_checkin(
        self, identity: AgentIdentity, report: AgentReport, at: datetime | None = None
    ) -> int:
        """Buffer a check-in of an authenticated agent; returns the next check-in interval."""
        changes = identity.changes(report)
        if changes is not None:  # what this process believes stored from now on
            identity.hostname = changes.hostname or identity.hostname
            identity.os = changes.os if changes.os is not None else identity.os
            if changes.agent_version is not None:
                identity.agent_version = changes.agent_version
            if changes.protection_status is not None:
                identity.protection_status = changes.protection_status
        self.buffer.record(identity.token_hash, at or datetime.now(UTC), changes)
        CHECKINS.inc()
        return self.settings.checkin_interval

    def _tokens_revoked(self, payload: dict[str, Any]) -> None:
        """Refuse these agent tokens from now on (a bus handler: idempotent)."""
        token_hashes = [h for h in payload.get("token_hashes", ()) if isinstance(h, str)]
        self.tokens.revoke(token_hashes)
        self.buffer.discard(token_hashes)

    def _written(self, token_hashes: list[str], written: agents.WrittenCheckins) -> None:
        self.tokens.refresh(token_hashes, written.rows)
        if written.reconnected:
            self.watcher.wake()

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_PERIOD)
            self.limits.prune()
            self.enrolment_limits.prune()
