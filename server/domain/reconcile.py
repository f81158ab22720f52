"""Applying an upstream snapshot to an instance's company and group trees, in one transaction.

Loads the instance's rows, has `reconcile_plan` work out the difference in memory, and writes
it with a fixed set of batched statements (the count does not grow with the number of
companies): new companies and their groups inserted, changed rows rewritten by one UPDATE per
table, computers and installers following their groups by reference. Companies missing upstream
are unlinked, never deleted (their installers revoked, the native users living in them disabled
and signed out); those that come back are relinked unless a user unlinked them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from tortoise.transactions import in_transaction

from server.domain.license_reconcile import apply_licenses
from server.domain.reconcile_plan import (
    COMPANY_COLUMNS,
    GROUP_COLUMNS,
    Changes,
    CompanyRow,
    GroupRow,
    Plan,
    Planner,
    users_to_disable,
    wanted_companies,
)
from server.models import db
from server.models.bulk import (
    encode_ids,
    encode_rows,
    ids_source,
    reserve_ids,
    rows_source,
    typed_param,
)
from server.models.enums import GroupKind, UnlinkReason
from server.upstream.licenses import UpstreamLicense
from server.upstream.records import UpstreamSnapshot

__all__ = ["Changes", "Hook", "apply_snapshot"]

Hook = Callable[[], Awaitable[None]]
"""Called once, inside the transaction, right after an apply's first write (tests use it to
fail or stop an apply half way)."""

_COMPANY_ROW = {
    "id": "int",
    "name": "text",
    "sort_name": "text",
    "type": "text",
    "parent_id": "int",
    "path": "text",
    "sort_key": "text",
    "depth": "int",
    "upstream_status": "int",
    "email": "text",
    "custom_identifier": "text",
    "read_only": "bool",
}
_NEW_COMPANY = {**_COMPANY_ROW, "public_id": "text"}
_GROUP_ROW = {
    "id": "int",
    "name": "text",
    "parent_id": "int",
    "path": "text",
    "sort_key": "text",
    "depth": "int",
}
_NEW_GROUP = {**_GROUP_ROW, "kind": "text", "company_id": "int"}
_USER_UNLINK = {"id": "int", "company_id": "int"}


class _Writer:
    """Writes one plan; statements run on the transaction's connection."""

    def __init__(self, instance_id: int, now: dt.datetime, after_first_write: Hook | None) -> None:
        self.instance_id = instance_id
        self.now = now
        self.after_first_write = after_first_write

    async def write(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        rows = await db.fetch(sql, params)
        if self.after_first_write is not None:
            hook, self.after_first_write = self.after_first_write, None
            await hook()
        return rows

    async def load(self) -> tuple[list[CompanyRow], list[GroupRow]]:
        companies = await db.fetch(
            f"SELECT {COMPANY_COLUMNS} FROM company WHERE instance_id = ?", [self.instance_id]
        )
        groups = await db.fetch(
            f"SELECT {GROUP_COLUMNS} FROM static_group WHERE instance_id = ? AND kind <> ?",
            [self.instance_id, GroupKind.COMPANY.value],
        )
        return [CompanyRow.of(row) for row in companies], [GroupRow.of(row) for row in groups]

    async def rows(self, plan: Plan) -> None:
        """Insert the new companies and groups, rewrite the changed ones: a statement each."""
        if plan.new_companies:
            await self.write(
                "INSERT INTO company (id, instance_id, public_id, name, sort_name, type, "
                "parent_id, path, sort_key, depth, upstream_status, email, custom_identifier, "
                "read_only, setup_state, created_at, updated_at) "
                f"SELECT x.id, {typed_param('int')}, x.public_id, x.name, x.sort_name, x.type, "
                "x.parent_id, x.path, x.sort_key, x.depth, x.upstream_status, x.email, "
                "x.custom_identifier, x.read_only, 'pending', "
                f"{typed_param('timestamp')}, {typed_param('timestamp')} "
                f"FROM {rows_source(_NEW_COMPANY)}",
                [self.instance_id, self.now, self.now, encode_rows(plan.new_companies)],
            )
        if plan.changed_companies:
            await self.write(
                "UPDATE company SET name = x.name, sort_name = x.sort_name, type = x.type, "
                "parent_id = x.parent_id, path = x.path, sort_key = x.sort_key, depth = x.depth, "
                "upstream_status = x.upstream_status, email = x.email, "
                "custom_identifier = x.custom_identifier, read_only = x.read_only, "
                f"updated_at = ? FROM {rows_source(_COMPANY_ROW)} WHERE company.id = x.id",
                [self.now, encode_rows(plan.changed_companies)],
            )
        if plan.new_groups:
            await self.write(
                "INSERT INTO static_group (id, instance_id, name, kind, parent_id, company_id, "
                "path, sort_key, depth, description, created_at) "
                f"SELECT x.id, {typed_param('int')}, x.name, x.kind, x.parent_id, x.company_id, "
                f"x.path, x.sort_key, x.depth, '', {typed_param('timestamp')} "
                f"FROM {rows_source(_NEW_GROUP)}",
                [self.instance_id, self.now, encode_rows(plan.new_groups)],
            )
        if plan.changed_groups:
            await self.write(
                "UPDATE static_group SET name = x.name, parent_id = x.parent_id, path = x.path, "
                "sort_key = x.sort_key, depth = x.depth "
                f"FROM {rows_source(_GROUP_ROW)} WHERE static_group.id = x.id",
                [encode_rows(plan.changed_groups)],
            )

    async def unlink(self, gone: list[CompanyRow], changes: Changes) -> None:
        """Companies gone upstream: unlinked (kept with their groups and computers), their
        installers revoked and the native users living in their groups disabled."""
        if not gone:
            return
        ids = encode_ids(c.id for c in gone)
        await self.write(
            "UPDATE company SET unlinked_at = ?, unlink_reason = ?, updated_at = ? "
            f"WHERE instance_id = ? AND unlinked_at IS NULL AND id IN ({ids_source()})",
            [self.now, UnlinkReason.UPSTREAM.value, self.now, self.instance_id, ids],
        )
        await self.write(
            "UPDATE installer SET revoked_at = ? "
            f"WHERE instance_id = ? AND revoked_at IS NULL AND company_id IN ({ids_source()})",
            [self.now, self.instance_id, ids],
        )
        users = await db.fetch(
            "SELECT u.id AS id, g.path AS path FROM console_user u "
            "JOIN static_group g ON g.id = u.home_group_id "
            "WHERE u.instance_id = ? AND u.account_id IS NULL AND u.enabled = ?",
            [self.instance_id, True],
        )
        rows = users_to_disable(users, gone)
        if rows:
            await self.write(
                "UPDATE console_user SET enabled = ?, disabled_by_unlink_id = x.company_id "
                f"FROM {rows_source(_USER_UNLINK)} WHERE console_user.id = x.id",
                [False, encode_rows(rows)],
            )
            # ended, not merely refused while disabled: a relink must not revive old tokens
            user_ids = [row["id"] for row in rows]
            await self.write(
                f"DELETE FROM session WHERE user_id IN ({ids_source()})", [encode_ids(user_ids)]
            )
            changes.disabled_users += user_ids

    async def relink(self, back: list[CompanyRow]) -> None:
        """Companies back upstream: linked again, their users enabled."""
        if not back:
            return
        ids = encode_ids(c.id for c in back)
        await self.write(
            "UPDATE company SET unlinked_at = NULL, unlink_reason = NULL, updated_at = ? "
            f"WHERE instance_id = ? AND unlink_reason = ? AND id IN ({ids_source()})",
            [self.now, self.instance_id, UnlinkReason.UPSTREAM.value, ids],
        )
        await self.write(
            "UPDATE console_user SET enabled = ?, disabled_by_unlink_id = NULL "
            f"WHERE instance_id = ? AND disabled_by_unlink_id IN ({ids_source()})",
            [True, self.instance_id, ids],
        )


async def apply_snapshot(
    instance_id: int,
    snapshot: UpstreamSnapshot,
    *,
    now: dt.datetime | None = None,
    after_first_write: Hook | None = None,
    licenses: Mapping[str, Sequence[UpstreamLicense]] | None = None,
) -> Changes:
    """Make the instance's trees (and, given them, the licenses of the companies read, with
    the day's usage snapshot: `license_reconcile`) match the snapshot, all or nothing."""
    wanted = wanted_companies(snapshot)
    writer = _Writer(instance_id, now or dt.datetime.now(dt.UTC), after_first_write)
    async with in_transaction():
        planner = Planner(wanted, *await writer.load())
        needed = planner.ids_needed()
        ids = await reserve_ids(needed) if any(needed.values()) else {}
        plan = planner.plan(ids)
        await writer.rows(plan)
        await writer.unlink(plan.unlink, plan.changes)
        await writer.relink(plan.relink)
        if licenses is not None:
            ids_of = {public_id: row.id for public_id, row in planner.companies.items()}
            plan.changes.licenses = await apply_licenses(instance_id, licenses, ids_of, writer.now)
        return plan.changes
