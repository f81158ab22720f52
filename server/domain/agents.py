"""Agents: enrolment with an installer token, check-ins with an agent token.

Requests are validated whole before anything is written. Enrolment (`server.domain.enrolment`,
re-exported here) writes the enrolments that arrived together in one transaction. An
installer token is treated as public: re-enrolling the hardware of an enrolled computer continues
that computer only for the agent that holds its current agent token; anyone else gets a new
computer marked as its duplicate, for a console user to settle. Check-ins are written in batches
(`write_checkins`), one statement per batch, by the agent API's buffer; `checkin` is the
unbuffered form of the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from server import events
from server.domain import enrolment
from server.domain.enrolment import (  # noqa: F401 - enrolment is part of the agents' API
    AGENT_TOKEN_PREFIX,
    DUPLICATE_ENROLMENT,
    AgentUnauthorized,
    Enrolment,
    EnrolmentRequest,
    Pending,
    enroll_batch,
)
from server.domain.errors import InvalidInput
from server.domain.secrets import token_hash, well_formed_token
from server.domain.tree_paths import sort_name
from server.events import EventBus
from server.models import db
from server.models.enums import ProtectionStatus
from server.settings import Settings

TEXT_MAX = 255
# JSON field -> (column, longest accepted value)
ENROL_FIELDS = {
    "hardwareId": ("hardware_id", TEXT_MAX),
    "hostname": ("name", TEXT_MAX),
    "os": ("os", TEXT_MAX),
    "agentVersion": ("agent_version", 64),
}
AGENT_TOKEN_FIELD = "agentToken"  # noqa: S105 - optional: the re-enrolling agent's token
REPORT_FIELDS = {
    "hostname": ("name", TEXT_MAX),
    "os": ("os", TEXT_MAX),
    "agentVersion": ("agent_version", 64),
    "protectionStatus": ("protection_status", 16),
}
SQLITE_ROWS_PER_STATEMENT = 2000  # 7 parameters a row, well under SQLite's 32766
POSTGRES_ROWS_PER_STATEMENT = 20000


def _text(data: Mapping[str, Any], key: str, limit: int, *, required: bool) -> str | None:
    if key not in data:
        if required:
            raise InvalidInput(f"{key} is required", key)
        return None
    value = data[key]
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string", key)
    if len(value) > limit:
        raise InvalidInput(f"{key} is longer than {limit} characters", key)
    if "\x00" in value:
        raise InvalidInput(f"{key} must not contain NUL", key)
    return value


def _object(data: object, allowed: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    for key in data:
        if key not in allowed:
            raise InvalidInput(f"unknown field {str(key)[:64]!r}", str(key)[:64])
    return data


@dataclass(frozen=True, slots=True)
class AgentReport:
    """What an agent reports at check-in; None for a field it left out."""

    hostname: str | None = None
    os: str | None = None
    agent_version: str | None = None
    protection_status: ProtectionStatus | None = None


def parse_enrolment(data: object) -> EnrolmentRequest:
    body = _object(data, {**ENROL_FIELDS, AGENT_TOKEN_FIELD: None})
    values = {
        key: _text(body, key, limit, required=True) for key, (_, limit) in ENROL_FIELDS.items()
    }
    for key in ("hardwareId", "hostname"):
        if not (values[key] or "").strip():
            raise InvalidInput(f"{key} must not be blank", key)
    agent_token = body.get(AGENT_TOKEN_FIELD)
    if AGENT_TOKEN_FIELD in body and not well_formed_token(agent_token):
        raise InvalidInput("agentToken must be the agent token this agent holds", AGENT_TOKEN_FIELD)
    return EnrolmentRequest(
        hardware_id=values["hardwareId"] or "",
        hostname=values["hostname"] or "",
        os=values["os"] or "",
        agent_version=values["agentVersion"] or "",
        agent_token=agent_token,
    )


def parse_report(data: object) -> AgentReport:
    body = _object(data, REPORT_FIELDS)
    hostname = _text(body, "hostname", TEXT_MAX, required=False)
    if hostname is not None and not hostname.strip():
        raise InvalidInput("hostname must not be blank", "hostname")
    status = _text(body, "protectionStatus", 16, required=False)
    if status is not None and status not in ProtectionStatus.__members__:
        raise InvalidInput("protectionStatus must be OK, WARNING or CRITICAL", "protectionStatus")
    return AgentReport(
        hostname=hostname,
        os=_text(body, "os", TEXT_MAX, required=False),
        agent_version=_text(body, "agentVersion", 64, required=False),
        protection_status=ProtectionStatus(status) if status is not None else None,
    )


@dataclass(slots=True)
class AgentIdentity:
    """Who an agent token belongs to, with the values last known to be stored for it."""

    token_hash: str
    computer_id: int
    instance_id: int
    hostname: str
    os: str | None
    agent_version: str | None
    protection_status: ProtectionStatus | None

    def changes(self, report: AgentReport) -> AgentReport | None:
        """The reported values that differ from what is stored, or None if nothing does."""
        hostname = report.hostname if report.hostname not in (None, self.hostname) else None
        os = report.os if report.os not in (None, self.os) else None
        version = (
            report.agent_version if report.agent_version not in (None, self.agent_version) else None
        )
        status = (
            report.protection_status
            if report.protection_status not in (None, self.protection_status)
            else None
        )
        if hostname is None and os is None and version is None and status is None:
            return None
        return AgentReport(hostname, os, version, status)

    def update(self, row: Mapping[str, Any]) -> None:
        self.hostname = row["name"]
        self.os = row["os"]
        self.agent_version = row["agent_version"]
        raw = row["protection_status"]
        self.protection_status = ProtectionStatus(raw) if raw else None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AgentIdentity:
        identity = cls(row["agent_token_hash"], row["id"], row["instance_id"], "", None, None, None)
        identity.update(row)
        return identity


IDENTITY_COLUMNS = "id, instance_id, agent_token_hash, name, os, agent_version, protection_status"


async def load_agents(token_hashes: Sequence[str]) -> dict[str, AgentIdentity]:
    """The computers holding these agent token hashes (one statement per 500)."""
    found: dict[str, AgentIdentity] = {}
    for start in range(0, len(token_hashes), 500):
        chunk = list(token_hashes[start : start + 500])
        marks = ", ".join("?" for _ in chunk)
        rows = await db.fetch(
            f"SELECT {IDENTITY_COLUMNS} FROM computer WHERE agent_token_hash IN ({marks})", chunk
        )
        for row in rows:
            found[row["agent_token_hash"]] = AgentIdentity.from_row(row)
    return found


@dataclass(slots=True)
class CheckinRecord:
    """A check-in waiting to be written: the latest time and any changed reported values."""

    token_hash: str
    at: datetime
    changes: AgentReport | None = None

    def merge(self, at: datetime, changes: AgentReport | None) -> None:
        self.at = max(self.at, at)
        if changes is not None:
            old = self.changes or AgentReport()
            self.changes = AgentReport(
                changes.hostname if changes.hostname is not None else old.hostname,
                changes.os if changes.os is not None else old.os,
                changes.agent_version if changes.agent_version is not None else old.agent_version,
                changes.protection_status
                if changes.protection_status is not None
                else old.protection_status,
            )


@dataclass(slots=True)
class WrittenCheckins:
    """What a batch write found: the stored rows it updated, keyed by agent token hash."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def reconnected(self) -> list[int]:
        """Computers that were not announced CONNECTED before these check-ins."""
        return [r["id"] for r in self.rows.values() if r["announced_status"] != "CONNECTED"]


_RETURNED = (
    "id", "instance_id", "agent_token_hash", "name", "os", "agent_version", "protection_status",
    "announced_status",
)  # fmt: skip
# The computers locked in id order, as an instance's removal deletes them: in the order of the
# batch or as stored, the two could each hold a computer the other waits for.
_POSTGRES_WRITE = (
    "UPDATE computer AS c SET last_connected_at = GREATEST(c.last_connected_at, v.ts), "
    "name = COALESCE(v.name, c.name), sort_name = COALESCE(v.sort_name, c.sort_name), "
    "os = COALESCE(v.os, c.os), agent_version = COALESCE(v.agent_version, c.agent_version), "
    "protection_status = COALESCE(v.protection_status, c.protection_status) "
    "FROM (SELECT m.id, x.* FROM unnest(?::text[], ?::timestamptz[], ?::text[], ?::text[], "
    "?::text[], ?::text[], ?::text[]) AS x(token_hash, ts, name, sort_name, os, agent_version, "
    "protection_status) JOIN computer m ON m.agent_token_hash = x.token_hash "
    "ORDER BY m.id FOR NO KEY UPDATE OF m) AS v "
    "WHERE c.id = v.id RETURNING " + ", ".join(f"c.{c}" for c in _RETURNED)
)
_SQLITE_WRITE = (
    "WITH v(token_hash, ts, name, sort_name, os, agent_version, protection_status) AS "
    "(VALUES {values}) "
    "UPDATE computer SET last_connected_at = CASE WHEN computer.last_connected_at IS NULL "
    "OR v.ts > computer.last_connected_at THEN v.ts ELSE computer.last_connected_at END, "
    "name = COALESCE(v.name, computer.name), "
    "sort_name = COALESCE(v.sort_name, computer.sort_name), "
    "os = COALESCE(v.os, computer.os), "
    "agent_version = COALESCE(v.agent_version, computer.agent_version), "
    "protection_status = COALESCE(v.protection_status, computer.protection_status) "
    "FROM v WHERE computer.agent_token_hash = v.token_hash RETURNING " + ", ".join(_RETURNED)
)


def _columns(record: CheckinRecord) -> tuple[Any, ...]:
    c = record.changes or AgentReport()
    return (
        record.token_hash,
        record.at.astimezone(UTC),
        c.hostname,
        sort_name(c.hostname) if c.hostname is not None else None,
        c.os,
        c.agent_version,
        c.protection_status.value if c.protection_status is not None else None,
    )


async def _write_chunk(records: Sequence[CheckinRecord], postgres: bool) -> list[dict[str, Any]]:
    rows = [_columns(r) for r in records]
    if postgres:
        return await db.fetch(_POSTGRES_WRITE, [list(column) for column in zip(*rows, strict=True)])
    values = ", ".join("(?, ?, ?, ?, ?, ?, ?)" for _ in rows)
    return await db.fetch(_SQLITE_WRITE.format(values=values), [v for row in rows for v in row])


async def write_checkins(records: Sequence[CheckinRecord]) -> WrittenCheckins:
    """Write a batch of check-ins: last-connected times (never moved backwards) and the changed
    reported values, one statement per chunk. A record whose token was superseded in the
    meantime matches no row and is dropped. On SQLite all chunks commit together (one commit
    for the batch); on PostgreSQL each commits alone: a chunk locks its computers in id order,
    but one chunk's ids may lie above the next one's, and a writer taking them in id order (an
    instance's removal) could hold what the batch waits for while it waits for the batch. When
    a later chunk fails, the buffer writes the whole batch again: a check-in written twice comes
    out as if written once (last-connected never moves backwards)."""
    written = WrittenCheckins()
    if not records:
        return written
    postgres = db.is_postgres()
    size = POSTGRES_ROWS_PER_STATEMENT if postgres else SQLITE_ROWS_PER_STATEMENT
    chunks = [records[i : i + size] for i in range(0, len(records), size)]
    rows = []
    async with db.transaction() if len(chunks) > 1 and not postgres else nullcontext():
        for chunk in chunks:
            rows.extend(await _write_chunk(chunk, postgres))
    written.rows = {row["agent_token_hash"]: row for row in rows}
    return written


async def authenticate_agent(agent_token: str) -> AgentIdentity:
    identity = (await load_agents([token_hash(agent_token)])).get(token_hash(agent_token))
    if identity is None:
        raise AgentUnauthorized("unknown or superseded agent token")
    return identity


async def checkin(
    agent_token: str, body: object, *, settings: Settings, now: datetime | None = None
) -> int:
    """Record one check-in at once (the agent API batches them instead); returns the interval."""
    report = body if isinstance(body, AgentReport) else parse_report(body)
    identity = await authenticate_agent(agent_token)
    await write_checkins(
        [CheckinRecord(identity.token_hash, now or datetime.now(UTC), identity.changes(report))]
    )
    return settings.checkin_interval


async def enroll(
    installer_token: str,
    body: object,
    *,
    settings: Settings,
    now: datetime | None = None,
    client_address: str | None = None,
) -> Enrolment:
    """Enrol one computer, its body validated whole first (`server.domain.enrolment`)."""
    request = body if isinstance(body, EnrolmentRequest) else parse_enrolment(body)
    return await enrolment.enroll(
        installer_token, request, settings=settings, now=now, client_address=client_address
    )


async def publish_revoked_tokens(
    bus: EventBus | None, instance_id: int, token_hashes: Sequence[str]
) -> None:
    """Tell every agent runtime (after commit) which agent tokens stopped working."""
    if bus is not None and token_hashes:
        await bus.publish(
            events.AGENT_TOKENS_REVOKED,
            {"instance_id": instance_id, "token_hashes": list(token_hashes)},
        )
