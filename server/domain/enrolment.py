"""Enrolling computers with an installer token, many at once.

`enroll_batch` takes the enrolments that arrived together (the agent API's writer collects
them for a few milliseconds) and writes them in one transaction with a fixed number of
statements, whatever their number: one read of every installer, original and token holder
concerned; then at most one insert of new originals, one of duplicates, one update of the
computers continued, one count per installer, one shift of the subtree counters of the new
computers' groups and one audit insert. `enroll` is a batch of one.
This is the one place an enrolment is written.

The rules are those of one enrolment at a time, applied in arrival order within the batch:
the same hardwareId in the same company continues its computer (a new agent token, refreshed
details) only for the request carrying that computer's current agent token; any other is a
new computer marked `duplicateOf` the original (an original made earlier in the same batch
counts), and the conflict is audited where the original lives. Each enrolment counts against
its installer's cap; a revoked, expired, used-up installer, or one of an unlinked customer,
refuses. When another writer got in between the read and the writes (a first enrolment of
the same hardware, a re-enrolment taking the token, an installer used up or revoked), the
batch is rolled back and decided again from what is now stored.

Longer than most on purpose: the batch's one read, its decisions and its few writes are one
piece, each write shaped by what the decisions produced; apart, the rule that an enrolment is
written only here would span modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from tortoise.exceptions import IntegrityError

from server.domain import audit, counters, global_ids
from server.domain.errors import DomainError
from server.domain.secrets import hashes_match, new_token, token_hash
from server.domain.tree_paths import sort_name
from server.models import db
from server.models.bulk import encode_rows, rows_source, typed_param
from server.models.computers import Computer
from server.models.enums import ConnectionStatus
from server.settings import Settings

AGENT_TOKEN_PREFIX = "agt"  # noqa: S105 - a prefix, not a secret
DUPLICATE_ENROLMENT = "enrollDuplicate"  # the audit action of a conflict
ATTEMPTS = 3


class AgentUnauthorized(DomainError):
    """The bearer token does not (or no longer) authorise this request (HTTP 401)."""

    code = "UNAUTHENTICATED"


@dataclass(frozen=True, slots=True)
class EnrolmentRequest:
    hardware_id: str
    hostname: str
    os: str
    agent_version: str
    agent_token: str | None = field(default=None, repr=False)  # the agent's current token


class Enrolment(NamedTuple):
    computer: Computer
    agent_token: str  # shown once; only its hash is stored
    interval: int  # seconds until the first check-in
    superseded_token_hash: str | None = None  # the agent token a re-enrolment replaced


@dataclass(frozen=True, slots=True)
class Pending:
    """One enrolment of a batch: the installer token it came with, and from where."""

    installer_token: str = field(repr=False)
    request: EnrolmentRequest
    client_address: str | None = None


class _RaceLost(Exception):
    """Another writer changed what the batch was decided on: decide again."""


# The installer (with its group's path), the hardware's original computer (if any) and the
# computer holding the agent token the request carries (if any, and only of this hardware
# in this company), for every request of the batch.
_LOOKUP = (
    "SELECT x.idx, i.id, i.instance_id, i.company_id, i.group_id, i.expires_at, i.revoked_at, "
    "i.max_enrolments, i.enrolments, co.unlinked_at, ig.path AS group_path, "
    "o.id AS original_id, og.path AS original_group_path, "
    "t.id AS holder_id, t.agent_token_hash AS holder_token_hash "
    "FROM {source} JOIN installer i ON i.token_hash = x.installer_hash "
    "JOIN instance n ON n.id = i.instance_id JOIN company co ON co.id = i.company_id "
    "JOIN static_group ig ON ig.id = i.group_id "
    "LEFT JOIN computer o ON o.instance_id = i.instance_id AND o.company_id = i.company_id "
    "AND o.hardware_id = x.hardware_id AND o.duplicate_of_id IS NULL "
    "LEFT JOIN static_group og ON og.id = o.group_id "
    "LEFT JOIN computer t ON t.agent_token_hash = x.presented AND t.instance_id = i.instance_id "
    "AND t.company_id = i.company_id AND t.hardware_id = x.hardware_id"
)
_LOOKUP_COLUMNS = {
    "idx": "int",
    "installer_hash": "text",
    "hardware_id": "text",
    "presented": "text",
}
_NEW_COLUMNS = {
    "instance_id": "int", "company_id": "int", "group_id": "int", "installer_id": "int",
    "hardware_id": "text", "duplicate_of_id": "int", "name": "text", "sort_name": "text",
    "os": "text", "agent_version": "text", "agent_token_hash": "text",
}  # fmt: skip
_CONTINUE_COLUMNS = {
    "cid": "int", "holder": "text", "installer": "int", "new_hash": "text", "new_name": "text",
    "new_sort_name": "text", "new_os": "text", "new_agent_version": "text",
}  # fmt: skip
_COUNT_COLUMNS = {"iid": "int", "n": "int"}


# every column of `computer` (RETURNING * of an UPDATE ... FROM would add the source's columns)
COMPUTER_COLUMNS = (
    "id, instance_id, group_id, company_id, installer_id, duplicate_of_id, name, sort_name, "
    "hardware_id, os, agent_version, protection_status, agent_token_hash, enrolled_at, "
    "last_connected_at, announced_status"
)


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _refuse_unusable(installer: Mapping[str, Any], now: datetime) -> None:
    """401 for a revoked, expired, used-up installer, or one of an unlinked customer."""
    expires_at = _as_datetime(installer["expires_at"])
    if installer["revoked_at"] is not None:
        raise AgentUnauthorized("the installer is revoked")
    if expires_at is not None and expires_at <= now:
        raise AgentUnauthorized("the installer has expired")
    if installer["unlinked_at"] is not None:
        raise AgentUnauthorized("the installer's customer is unlinked")
    cap = installer["max_enrolments"]
    if cap is not None and installer["enrolments"] >= cap:
        raise AgentUnauthorized("the installer has made all the enrolments it may")


@dataclass(slots=True)
class _Plan:
    """What one request of the batch becomes."""

    index: int
    found: Mapping[str, Any]
    agent_token: str
    continues: int | None = None  # the computer continued, whose token is `superseded`
    superseded: str | None = None
    duplicate_of: int | None = None  # a stored original's id
    duplicate_of_plan: _Plan | None = None  # or an original made by this batch
    computer: Computer | None = None


async def enroll(
    installer_token: str,
    request: EnrolmentRequest,
    *,
    settings: Settings,
    now: datetime | None = None,
    client_address: str | None = None,
) -> Enrolment:
    """Enrol one computer (a batch of one); raises AgentUnauthorized when refused."""
    pending = Pending(installer_token, request, client_address)
    (result,) = await enroll_batch([pending], settings=settings, now=now)
    if isinstance(result, Exception):
        raise result
    return result


async def enroll_batch(
    batch: Sequence[Pending], *, settings: Settings, now: datetime | None = None
) -> list[Enrolment | AgentUnauthorized]:
    """Enrol every request of `batch` in one transaction: an Enrolment each, or the
    AgentUnauthorized that refuses it (nothing of a refused one is written)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    tokens = [new_token(AGENT_TOKEN_PREFIX) for _ in batch]
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with db.transaction():
                return await _enroll(batch, tokens, settings, now)
        except (IntegrityError, _RaceLost):
            if attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def _enroll(
    batch: Sequence[Pending], tokens: list[str], settings: Settings, now: datetime
) -> list[Enrolment | AgentUnauthorized]:
    found = await _lookup(batch)
    results: list[Enrolment | AgentUnauthorized | None] = [None] * len(batch)
    plans = _decide(batch, tokens, found, now, results)
    await _write(batch, plans, now)
    for plan in plans:
        assert plan.computer is not None
        results[plan.index] = Enrolment(
            plan.computer, plan.agent_token, settings.checkin_interval, plan.superseded
        )
    done = [r for r in results if r is not None]
    assert len(done) == len(results), "every enrolment of a batch is decided"
    return done


async def _lookup(batch: Sequence[Pending]) -> dict[int, dict[str, Any]]:
    rows = [
        {
            "idx": n,
            "installer_hash": token_hash(p.installer_token),
            "hardware_id": p.request.hardware_id,
            "presented": token_hash(p.request.agent_token) if p.request.agent_token else None,
        }
        for n, p in enumerate(batch)
    ]
    source = rows_source(_LOOKUP_COLUMNS)
    # the instance's row taken before anything else (KEY SHARE), as `instances.remove_instance`
    # asks: after a removal under way, the installer is unknown
    lock = " FOR KEY SHARE OF n" if db.is_postgres() else ""
    found = await db.fetch(_LOOKUP.format(source=source) + lock, [encode_rows(rows)])
    return {row["idx"]: row for row in found}


def _decide(
    batch: Sequence[Pending],
    tokens: list[str],
    found: Mapping[int, Mapping[str, Any]],
    now: datetime,
    results: list[Any],
) -> list[_Plan]:
    """Apply the rules to each request in turn, as if they had come one after the other."""
    plans: list[_Plan] = []
    used: dict[int, int] = {}  # installer id -> enrolments counted so far
    taken: set[str] = set()  # holders' tokens a request of this batch has superseded
    originals: dict[tuple[int, int, str], _Plan] = {}  # made by this batch
    for n, pending in enumerate(batch):
        row = found.get(n)
        if row is None:
            results[n] = AgentUnauthorized("unknown installer token")
            continue
        counted = used.get(row["id"], row["enrolments"])
        try:
            _refuse_unusable({**row, "enrolments": counted}, now)
        except AgentUnauthorized as refused:
            results[n] = refused
            continue
        used[row["id"]] = counted + 1
        plan = _Plan(n, row, tokens[n])
        request, holder = pending.request, row["holder_token_hash"]
        key = (row["instance_id"], row["company_id"], request.hardware_id)
        if (
            request.agent_token
            and holder
            and holder not in taken
            and hashes_match(holder, request.agent_token)
        ):
            plan.continues, plan.superseded = row["holder_id"], holder
            taken.add(holder)
        elif row["original_id"] is not None:
            plan.duplicate_of = row["original_id"]
        elif key in originals:
            plan.duplicate_of_plan = originals[key]
        else:
            originals[key] = plan
        plans.append(plan)
    return plans


async def _write(batch: Sequence[Pending], plans: list[_Plan], now: datetime) -> None:
    originals = [p for p in plans if p.continues is None and not _is_duplicate(p)]
    duplicates = [p for p in plans if _is_duplicate(p)]
    continued = [p for p in plans if p.continues is not None]
    await _insert(batch, originals, now)
    await _insert(batch, duplicates, now)  # after their originals: they refer to them
    await _continue(batch, continued, now)
    await _count(plans)  # the installers locked before the counters, as an unlink does
    await counters.shift_held(  # new computers are announced NEVER_CONNECTED: not protected
        (p.found["instance_id"], p.found["group_path"], counters.COMPUTERS, 1)
        for p in [*originals, *duplicates]
    )
    await audit.record_all([_conflict(batch[p.index], p) for p in duplicates])


def _is_duplicate(plan: _Plan) -> bool:
    return plan.duplicate_of is not None or plan.duplicate_of_plan is not None


def _details(request: EnrolmentRequest) -> dict[str, Any]:
    return {
        "name": request.hostname,
        "sort_name": sort_name(request.hostname),
        "os": request.os,
        "agent_version": request.agent_version,
    }


async def _insert(batch: Sequence[Pending], plans: list[_Plan], now: datetime) -> None:
    if not plans:
        return
    rows = []
    for plan in plans:
        original = plan.duplicate_of
        if plan.duplicate_of_plan is not None:
            assert plan.duplicate_of_plan.computer is not None
            original = plan.duplicate_of_plan.computer.id
        rows.append(
            {
                "instance_id": plan.found["instance_id"],
                "company_id": plan.found["company_id"],
                "group_id": plan.found["group_id"],
                "installer_id": plan.found["id"],
                "hardware_id": batch[plan.index].request.hardware_id,
                "duplicate_of_id": original,
                "agent_token_hash": token_hash(plan.agent_token),
                **_details(batch[plan.index].request),
            }
        )
    columns = list(_NEW_COLUMNS)
    stamp = typed_param("timestamp")
    inserted = await db.fetch(
        f"INSERT INTO computer ({', '.join(columns)}, last_connected_at, enrolled_at, "
        f"announced_status) SELECT {', '.join(f'x.{c}' for c in columns)}, {stamp}, {stamp}, "
        f"{typed_param('text')} "
        f"FROM {rows_source(_NEW_COLUMNS)} RETURNING {COMPUTER_COLUMNS}",
        [now, now, ConnectionStatus.NEVER_CONNECTED.value, encode_rows(rows)],
    )
    by_hash = {row["agent_token_hash"]: db.from_row(Computer, row) for row in inserted}
    for plan in plans:
        plan.computer = by_hash[token_hash(plan.agent_token)]


async def _continue(batch: Sequence[Pending], plans: list[_Plan], now: datetime) -> None:
    """The same computers for the agents holding their tokens: new tokens, fresh details."""
    if not plans:
        return
    rows = []
    for plan in plans:
        details = _details(batch[plan.index].request)
        rows.append(
            {
                "cid": plan.continues,
                "holder": plan.superseded,
                "installer": plan.found["id"],
                "new_hash": token_hash(plan.agent_token),
                **{f"new_{k}": v for k, v in details.items()},
            }
        )
    updated = await db.fetch(
        "UPDATE computer SET name = x.new_name, sort_name = x.new_sort_name, os = x.new_os, "
        "agent_version = x.new_agent_version, agent_token_hash = x.new_hash, "
        "last_connected_at = ?, installer_id = x.installer "
        f"FROM {rows_source(_CONTINUE_COLUMNS)} "
        "WHERE computer.id = x.cid AND computer.agent_token_hash = x.holder "
        f"RETURNING {COMPUTER_COLUMNS}",  # unqualified: no column of x bears these names
        [now, encode_rows(rows)],
    )
    if len(updated) != len(plans):
        raise _RaceLost  # a token changed meanwhile
    by_id = {row["id"]: db.from_row(Computer, row) for row in updated}
    for plan in plans:
        plan.computer = by_id[plan.continues]


async def _count(plans: list[_Plan]) -> None:
    """Count the enrolments against their installers, unless one was revoked or used up
    meanwhile (then the batch is decided again): one conditional statement, so concurrent
    writers never pass a cap."""
    per_installer: dict[int, int] = {}
    for plan in plans:
        per_installer[plan.found["id"]] = per_installer.get(plan.found["id"], 0) + 1
    if not per_installer:
        return
    counted = await db.fetch(
        "UPDATE installer SET enrolments = installer.enrolments + x.n "
        f"FROM {rows_source(_COUNT_COLUMNS)} WHERE installer.id = x.iid "
        "AND installer.revoked_at IS NULL AND (installer.max_enrolments IS NULL "
        "OR installer.enrolments + x.n <= installer.max_enrolments) RETURNING id",
        [encode_rows({"iid": i, "n": n} for i, n in per_installer.items())],
    )
    if len(counted) != len(per_installer):
        raise _RaceLost


def _conflict(pending: Pending, plan: _Plan) -> Any:
    """The audit entry of a duplicate, filed where the enrolled computer lives."""
    original = plan.duplicate_of_plan
    original_id = original.computer.id if original and original.computer else plan.duplicate_of
    group_path = (
        original.found["group_path"] if original is not None else plan.found["original_group_path"]
    )
    assert plan.computer is not None
    return audit.entry(
        plan.found["instance_id"],
        DUPLICATE_ENROLMENT,
        "Computer",
        plan.computer.id,
        group_path,
        {
            "duplicateOf": global_ids.encode("Computer", original_id or 0),
            "hardwareId": pending.request.hardware_id,
            "hostname": pending.request.hostname,
            "installerId": global_ids.encode("Installer", plan.found["id"]),
            "agentTokenPresented": pending.request.agent_token is not None,
            "clientAddress": pending.client_address,
        },
    )
