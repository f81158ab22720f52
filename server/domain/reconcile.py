"""Applying an upstream snapshot to an instance's company and group trees, in one transaction.

Finds the companies whose rows differ from the snapshot's, loads those and what lies around
them (`reconcile_scope`), has `reconcile_plan` work out the difference in
memory, and writes it with a fixed set of batched statements (the count does not grow with the
number of companies): new companies and their groups inserted, changed rows rewritten by one
UPDATE per table, computers and installers following their groups by reference. Companies
missing upstream are unlinked, never deleted (their installers revoked, the native users living
in them disabled and signed out); those that come back are relinked unless a user unlinked them.

A sync drafts the plan before the transaction, while it waits on the upstream for the licenses
(`draft`); the apply keeps it when it reads, in its transaction, the rows it was made from.

Every company row keeps the fingerprint of what the upstream decided of it (`Wanted.digest`):
compared with the snapshot's over one index read, they single out the rows a sync must load,
and when none differs, that one statement shows that nothing but licenses can have changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from server.domain import counters, reconcile_scope
from server.domain.instances import keep_from_removal
from server.domain.license_reconcile import (
    LicenseWrites,
    Listed,
    listed,
    listing_digests,
    prepare,
)
from server.domain.reconcile_input import CompanyRow, GroupRow, Wanted
from server.domain.reconcile_plan import Changes, Plan, Planner, users_to_disable
from server.models import db
from server.models.bulk import (
    encode_ids,
    encode_rows,
    ids_source,
    insert_rows,
    reserve_ids,
    rows_source,
    update_rows,
)
from server.models.enums import CompanyType, SetupState, UnlinkReason
from server.offload import ahead, computed
from server.upstream.licenses import UpstreamLicense

__all__ = ["Changes", "Draft", "Hook", "apply_snapshot", "draft"]

T = TypeVar("T")
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
    "upstream_digest": "text",
}
_NEW_COMPANY = {**_COMPANY_ROW, "public_id": "text", "license_digest": "text"}
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
_NEW_SETUP_STATE = SetupState.PENDING.value


class _Writer:
    """Writes one plan; statements run on the transaction's connection."""

    def __init__(self, instance_id: int, now: dt.datetime, after_first_write: Hook | None) -> None:
        self.instance_id = instance_id
        self.now = now
        self.after_first_write = after_first_write

    async def write(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        return await self.written(db.fetch(sql, params))

    async def written(self, statement: Awaitable[T]) -> T:
        """Await a writing statement (the first one calls the hook)."""
        result = await statement
        if self.after_first_write is not None:
            hook, self.after_first_write = self.after_first_write, None
            await hook()
        return result

    async def companies(self, plan: Plan) -> None:
        """Insert the new companies, rewrite the changed ones: a statement each."""
        if plan.new_companies:
            await self.written(
                insert_rows(
                    "company",
                    _NEW_COMPANY,
                    plan.new_companies,
                    {
                        "instance_id": self.instance_id,
                        "setup_state": _NEW_SETUP_STATE,
                        "created_at": self.now,
                        "updated_at": self.now,
                    },
                )
            )
        if plan.changed_companies:
            await self.written(
                update_rows(
                    "company", _COMPANY_ROW, plan.changed_companies, {"updated_at": self.now}
                )
            )

    async def groups(self, plan: Plan) -> None:
        """Insert the new groups, rewrite the changed ones: a statement each."""
        if plan.new_groups:
            await self.written(
                insert_rows(
                    "static_group",
                    _NEW_GROUP,
                    plan.new_groups,
                    {"instance_id": self.instance_id, "description": "", "created_at": self.now},
                )
            )
        if plan.changed_groups:
            await self.written(update_rows("static_group", _GROUP_ROW, plan.changed_groups, {}))

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
    wanted: Mapping[str, Wanted],
    *,
    now: dt.datetime | None = None,
    after_first_write: Hook | None = None,
    licenses: Mapping[str, Sequence[UpstreamLicense]] | None = None,
    draft: Draft | None = None,
) -> Changes:
    """Make the instance's trees (and, given them, the licenses of the companies read, with
    the day's usage snapshot: `license_reconcile`) match the companies a snapshot asks for
    (`wanted_companies`, which checked them), all or nothing. What is written next is worked
    out while the database writes (`ahead`): the license listing during the company rows, the
    new licenses' rows during the group rows, the counters' deltas during the usage snapshot.
    A `draft` of the same `wanted` saves the plan when what it was planned from is unchanged."""
    digests = await computed(listing_digests, licenses) if licenses is not None else {}
    writer = _Writer(instance_id, now or dt.datetime.now(dt.UTC), after_first_write)
    async with db.transaction():
        found = await reconcile_scope.differing(instance_id, wanted, digests)
        held = {d.public_id: (d.id, d.license_digest) for d in found if d.id is not None}
        changed = [d for d in found if d.row]
        if changed or licenses is not None:  # something to write: before any row is locked
            await keep_from_removal(instance_id)
        if not changed:  # nothing to plan: only the licenses may have changed
            changes = Changes()
            if licenses is not None:
                asked = await computed(listed, licenses, held, digests, ())
                licensed = await prepare(instance_id, licenses, asked, digests, writer.now)
                await licensed.write(instance_id, writer.now)
                await licensed.snapshot(instance_id, writer.now)
                changes.licenses = licensed.changes
                await counters.shift_licenses(instance_id, changes.licenses.held)
            return changes
        companies, groups = await reconcile_scope.load(instance_id, wanted, changed)
        if draft is not None and await computed(draft.holds, wanted, changed, companies, groups):
            planner, planned = draft.planner, draft.planned
        else:
            planner, planned = await _plan(wanted, companies, groups, changed)
        plan = planned.plan
        await computed(_with_listings, plan.new_companies, digests)
        before = await counters.placed(instance_id, planned.rewritten, lock=True)
        groups_before = await counters.group_paths(planned.moved_groups)
        with ahead(_listed, licenses or {}, held, planner, digests, planned.inserted) as listing:
            await writer.companies(plan)
            asked = await listing
        writes: LicenseWrites | None = None
        if licenses is not None:  # compared now, its new rows built while the groups are written
            writes = await prepare(
                instance_id,
                licenses,
                asked,
                digests,
                writer.now,
                planned.inserted,
                unlinking=[company.id for company in plan.unlink],
            )
            plan.changes.licenses = writes.changes
        with ahead(writes.build) if writes else nullcontext() as building:
            await writer.groups(plan)
            await writer.unlink(plan.unlink, plan.changes)
            await writer.relink(plan.relink)
            if building is not None:
                await building
        if writes is not None:
            await writes.write(instance_id, writer.now)
        # the subtree counters follow, the licenses' along the paths as they are now
        after = await counters.placed(instance_id, planned.rewritten)
        after.update(planned.placed_new)
        moves = plan.changes.licenses.held
        paths = await counters.license_paths(moves, after)
        # worked out while the database takes the usage snapshot: a statement of its own (the
        # COPY of the licenses needs the interpreter to encode their rows)
        with ahead(counters.relocation, instance_id, before, after, moves, paths) as deltas:
            if writes is not None:
                await writes.snapshot(instance_id, writer.now)
            await counters.relocate(
                instance_id, await deltas, groups_before, planned.moved_groups, planned.new_groups
            )
        return plan.changes


@dataclass(slots=True)
class Draft:
    """A plan worked out before the apply's transaction, while a sync waits on the upstream for
    the licenses (`draft`). The apply reads again what the plan was made from, inside its
    transaction, and keeps the plan only if it reads the same (`holds`): the plan is a function
    of those rows alone (`reconcile_plan`). Otherwise it plans again; the ids the draft
    reserved are then left unused."""

    wanted: Mapping[str, Wanted]
    read: _Read  # what the plan was made from
    planner: Planner
    planned: _Planned

    def holds(
        self,
        wanted: Mapping[str, Wanted],
        changed: Sequence[reconcile_scope.Differing],
        companies: Sequence[CompanyRow],
        groups: Sequence[GroupRow],
    ) -> bool:
        """Whether the plan is still the plan of these rows (read in the apply's transaction)."""
        return wanted is self.wanted and _read(changed, companies, groups) == self.read


_Read = tuple[set[tuple[str, int | None]], dict[int, CompanyRow], dict[int, GroupRow]]


def _read(
    changed: Sequence[reconcile_scope.Differing],
    companies: Sequence[CompanyRow],
    groups: Sequence[GroupRow],
) -> _Read:
    """What a plan is made from, in any order: the companies to plan (public id, id), the rows
    loaded around them."""
    return (
        {(d.public_id, d.id) for d in changed},
        {c.id: c for c in companies},
        {g.id: g for g in groups},
    )


async def draft(instance_id: int, wanted: Mapping[str, Wanted]) -> Draft | None:
    """The plan of an apply of `wanted`, read and worked out outside any transaction (None when
    no company row differs): at 100,000 new companies, a second the apply no longer spends
    while it holds the instance."""
    found = await reconcile_scope.differing(instance_id, wanted, {})
    changed = [d for d in found if d.row]
    if not changed:
        return None
    companies, groups = await reconcile_scope.load(instance_id, wanted, changed)
    planner, planned = await _plan(wanted, companies, groups, changed)
    return Draft(wanted, _read(changed, companies, groups), planner, planned)


async def _plan(
    wanted: Mapping[str, Wanted],
    companies: list[CompanyRow],
    groups: list[GroupRow],
    changed: list[reconcile_scope.Differing],
) -> tuple[Planner, _Planned]:
    """The plan of the `changed` companies from the rows loaded, with fresh ids reserved."""
    planner = await computed(_planner, wanted, companies, groups, changed)
    needed = planner.ids_needed()
    ids = await reserve_ids(needed) if any(needed.values()) else {}
    return planner, await computed(_planned, planner, ids)


def _planner(
    wanted: Mapping[str, Wanted],
    companies: list[CompanyRow],
    groups: list[GroupRow],
    changed: list[reconcile_scope.Differing],
) -> Planner:
    """A planner of the companies loaded and the new ones, its fresh ids counted."""
    keep = {c.public_id for c in companies}
    keep.update(d.public_id for d in changed if d.id is None)
    planner = Planner({p: w for p, w in wanted.items() if p in keep}, companies, groups)
    planner.ids_needed()  # kept by the planner: counted here, off the event loop
    return planner


@dataclass(slots=True)
class _Planned:
    """A plan, and what the apply reads of it (worked out with it, off the event loop)."""

    plan: Plan
    rewritten: list[int]  # the companies whose place in the counters may change
    moved_groups: dict[int, str]  # group id: its new path
    new_groups: set[int]
    inserted: set[str]  # the public ids of the new companies
    placed_new: counters.Placed  # where the new companies count


def _planned(planner: Planner, ids: Mapping[str, list[int]]) -> _Planned:
    """The plan (its new companies' license listing digests are the apply's to fill in)."""
    plan = planner.plan(ids)
    rewritten = [row["id"] for row in plan.changed_companies]
    rewritten += [company.id for company in (*plan.unlink, *plan.relink)]
    return _Planned(
        plan,
        rewritten,
        {row["id"]: row["path"] for row in plan.changed_groups},
        {row["id"] for row in plan.new_groups},
        {row["public_id"] for row in plan.new_companies},
        _placed_new(plan),
    )


def _with_listings(new_companies: list[dict[str, Any]], digests: Mapping[str, str]) -> None:
    """The new companies' rows, with their license listings' digests."""
    for row in new_companies:
        row["license_digest"] = digests.get(row["public_id"])


def _listed(
    licenses: Mapping[str, Sequence[UpstreamLicense]],
    held: Mapping[str, tuple[int, str | None]],
    planner: Planner,
    digests: Mapping[str, str],
    inserted: Collection[str],
) -> Listed:
    """The listings to compare (`license_reconcile.listed`): of the companies planned (loaded
    or new) and of the others as held."""
    planned = {c.public_id: (c.id, c.license_digest) for c in planner.companies.values()}
    return listed(licenses, {**held, **planned}, digests, inserted)


def _placed_new(plan: Plan) -> counters.Placed:
    """Where the new companies count (as `_Writer.rows` inserts them: not set up yet)."""
    column = {t.value: counters.column_of(t, _NEW_SETUP_STATE, False) for t in CompanyType}
    return {row["id"]: (row["path"], column[row["type"]]) for row in plan.new_companies}
