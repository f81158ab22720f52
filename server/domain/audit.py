"""The audit log: who did what, on which object, when, with what outcome.

A success is written in the transaction of the change it records (no change without its entry,
no entry without its change); a failure after the rollback, with the error's code. Each entry
carries the group path where it happened, so reading it goes through the one scope filter
(AUDIT area): a viewer reads what happened within its groups.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from server.domain import global_ids
from server.domain.access import Scope
from server.domain.errors import DomainError, InstanceRemoved
from server.domain.groups import all_group_path
from server.domain.instances import keep_from_removal
from server.domain.listing import Listing, sql_in
from server.models import AuditEntry, db
from server.models.enums import Area, Level

SUCCESS = "SUCCESS"
UNEXPECTED = "INTERNAL_ERROR"
DETAIL_LIMIT = 2000  # characters of any one string in `detail`


def _object_id(object_type: str, object_id: int | str | None) -> str:
    if object_id is None or object_id == "":
        return ""
    if isinstance(object_id, int) and object_type in global_ids.NODE_TYPES:
        return global_ids.encode(object_type, object_id)
    return printable(str(object_id))[:64]


def _clean(detail: dict[str, Any] | None) -> dict[str, Any]:
    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return printable(value)[:DETAIL_LIMIT]
        if isinstance(value, dict):
            return {printable(str(k))[:100]: clean(v) for k, v in list(value.items())[:50]}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in list(value)[:100]]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return printable(str(value))[:DETAIL_LIMIT]

    return clean(detail or {})


def printable(value: str) -> str:
    """Control characters (NUL among them, which PostgreSQL text refuses) and lone surrogates
    (which JSON can carry and no UTF-8 encoder takes) as `?`."""
    return "".join(
        "?" if (ord(ch) < 32 and ch not in "\t\n") or "\ud800" <= ch <= "\udfff" else ch
        for ch in value
    )


def _instance_of(scope: Scope | None, instance_id: int | None) -> int | None:
    """The instance an entry belongs to: `instance_id`, else the scope's; None without one
    (`NO_SCOPE`'s is negative)."""
    instance = instance_id if instance_id is not None else (scope.instance_id if scope else None)
    return instance if instance is not None and instance >= 0 else None


async def record(
    scope: Scope | None,
    actor: int | None,
    action: str,
    object_type: str = "",
    object_id: int | str | None = None,
    group_path: str = "",
    outcome: str = SUCCESS,
    detail: dict[str, Any] | None = None,
    *,
    instance_id: int | None = None,
    actor_email: str | None = None,
) -> AuditEntry | None:
    """Write one entry (in the caller's transaction, if any). `actor` is a console user id;
    `object_id` a key (encoded as the type's global id) or a global id. Without a group path
    the entry belongs to the whole instance (its `All` group). Nothing is written without an
    instance."""
    instance = _instance_of(scope, instance_id)
    if instance is None:
        return None
    if actor_email is None and actor is not None:
        actor_email = await db.fetch_value("SELECT email FROM console_user WHERE id = ?", [actor])
    if not group_path:
        group_path = await all_group_path(instance) or ""
    return await AuditEntry.create(
        instance_id=instance,
        actor_id=actor,
        actor_email=printable(actor_email or "")[:254],
        action=action[:64],
        object_type=object_type[:32],
        object_id=_object_id(object_type, object_id),
        group_path=group_path,
        outcome=outcome[:32],
        detail=_clean(detail),
    )


def entry(
    instance_id: int,
    action: str,
    object_type: str,
    object_id: int | str | None,
    group_path: str,
    detail: dict[str, Any] | None = None,
    *,
    actor_email: str = "",
    outcome: str = SUCCESS,
) -> AuditEntry:
    """An entry by no console user (an agent, say), not yet written: for `record_all`."""
    return AuditEntry(
        instance_id=instance_id,
        actor_id=None,
        actor_email=printable(actor_email)[:254],
        action=action[:64],
        object_type=object_type[:32],
        object_id=_object_id(object_type, object_id),
        group_path=group_path,
        outcome=outcome[:32],
        detail=_clean(detail),
    )


async def record_all(entries: list[AuditEntry]) -> None:
    """Write entries made by `entry` in one statement (in the caller's transaction)."""
    if entries:
        await AuditEntry.bulk_create(entries)


@dataclass
class Pending:
    """An entry being recorded: the change fills in what it learns (object, group, detail)."""

    scope: Scope | None
    actor: int | None
    action: str
    object_type: str = ""
    object_id: int | str | None = None
    group_path: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    instance_id: int | None = None
    actor_email: str | None = None
    failure_group_path: str = ""  # where a failure is filed when no object was resolved

    async def write(self, outcome: str) -> AuditEntry | None:
        path = self.group_path or (self.failure_group_path if outcome != SUCCESS else "")
        return await record(
            self.scope,
            self.actor,
            self.action,
            self.object_type,
            self.object_id,
            path,
            outcome,
            self.detail,
            instance_id=self.instance_id,
            actor_email=self.actor_email,
        )


@contextlib.asynccontextmanager
async def recorded(
    scope: Scope | None,
    actor: int | None,
    action: str,
    object_type: str = "",
    object_id: int | str | None = None,
    *,
    group_path: str = "",
    failure_group_path: str = "",
    detail: dict[str, Any] | None = None,
    instance_id: int | None = None,
    actor_email: str | None = None,
) -> AsyncIterator[Pending]:
    """Run a change in one transaction that ends with its success entry; on a domain error,
    roll back, record the failure (its code) and re-raise. The instance is kept from removal
    from the start (`instances.keep_from_removal`): the entry's foreign key would take that lock
    only at the end, after the change's."""
    pending = Pending(
        scope,
        actor,
        action,
        object_type,
        object_id,
        group_path,
        dict(detail or {}),
        instance_id,
        actor_email,
        failure_group_path,
    )
    instance = _instance_of(scope, instance_id)
    try:
        async with db.transaction():
            if instance is not None:  # before the change locks anything
                await keep_from_removal(instance)
            yield pending
            await pending.write(SUCCESS)
    except InstanceRemoved:
        raise  # nothing left to file the failure in
    except DomainError as exc:
        await pending.write(exc.code)
        raise
    except Exception:
        with contextlib.suppress(Exception):
            await pending.write(UNEXPECTED)
        raise


def visible(scope: Scope) -> Listing[AuditEntry]:
    """Entries filed within the viewer's AUDIT scope (READ), newest first."""
    listing = Listing(AuditEntry, "audit_entry a", "a", ("a.id",), ("id",), descending=True)
    condition, params = scope.sql("a.group_path", Area.AUDIT, Level.READ)
    return listing.filter("a.instance_id = ?", scope.instance_id).filter(condition, *params)


async def by_ids(scope: Scope, ids: Iterable[int]) -> dict[int, AuditEntry]:
    values: list[Any] = list(set(ids))
    found = await visible(scope).filter(*sql_in("a.id", values)).rows() if values else []
    return {e.id: e for e in found}


async def record_failed_login(email: object, outcome: str, via: str | None) -> None:
    """A refused sign-in, filed with the user the email names (none: nothing to file)."""
    if not isinstance(email, str) or printable(email) != email:
        return
    rows = await db.fetch(
        "SELECT u.id, u.instance_id, g.path FROM console_user u "
        "JOIN static_group g ON g.id = u.home_group_id WHERE u.email = ?",
        [email.strip().lower()[:254]],
    )
    if rows:
        row = rows[0]
        await record(
            None,
            None,
            "login",
            "User",
            row["id"],
            row["path"],
            outcome,
            {"via": via},
            instance_id=row["instance_id"],
            actor_email=email.strip().lower()[:254],
        )
