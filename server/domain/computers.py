"""Computers through a viewer's scope (the COMPUTERS area on their group's path): reading them,
filtered and counted by connection status in SQL, and removing them, among them the duplicates
an enrolment without the agent's token makes (`resolve_duplicate`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from server.domain import counters, tree_paths
from server.domain import search as name_search
from server.domain.access import ANYWHERE, Scope
from server.domain.connections import connection_status_filter_sql
from server.domain.errors import InvalidTransition, NotFound
from server.domain.listing import Listing, sql_in
from server.models import Computer, StaticGroup, db
from server.models.enums import Area, ConnectionStatus, DuplicateResolution, Level
from server.settings import Settings

SOURCE = "computer m JOIN static_group g ON g.id = m.group_id"


def visible(scope: Scope) -> Listing[Computer]:
    listing = Listing(
        Computer,
        SOURCE,
        "m",
        ("m.sort_name", "m.id"),
        ("sort_name", "id"),
        text_keys=frozenset({"m.sort_name"}),
    )
    condition, params = scope.sql("g.path", Area.COMPUTERS)
    return listing.filter("m.instance_id = ?", scope.instance_id).filter(condition, *params)


# how many computers a subtree may hold to be read group by group and sorted for a page
SMALL_SUBTREE = 10_000


async def in_group(
    listing: Listing[Computer], group: StaticGroup, recursive: bool
) -> Listing[Computer]:
    """The computers of `group`, or of its whole subtree, by name.

    A subtree's page has two plans, and the database cannot tell which is cheap (SQLite keeps
    no statistics of path ranges, and PostgreSQL falls for the LIMIT's usual trap): a subtree
    of few computers is read group by group off the group index and sorted; a larger one is
    read off the name index, where its computers are dense enough for the page to stop early.
    The subtree's counter row (`counters`) picks, which bounds either plan near SMALL_SUBTREE
    rows whatever the instance's size.
    """
    if not recursive:
        return listing.filter("m.group_id = ?", group.id)
    if tree_paths.is_top(group.path):  # the whole instance: a page by name off its index
        return listing
    held = await counters.sums(group.instance_id, counters.COMPUTERS, {group.id: [group.id]})
    sql, bounds = tree_paths.subtree_sql("g.path", group.path)
    if held[group.id] > SMALL_SUBTREE:
        if not db.is_postgres():  # SQLite's unary `+` keeps the path off an index: names drive
            sql, bounds = tree_paths.subtree_sql("+g.path", group.path)
        return listing.filter(sql, *bounds)
    _read_then_sorted(listing)  # the groups' computers
    # the subtree's group ids, read once before the computers (PostgreSQL: an init plan)
    groups = f"SELECT g.id FROM static_group g WHERE g.instance_id = ? AND {sql}"
    ids = f"= ANY(ARRAY({groups}))" if db.is_postgres() else f"IN ({groups})"
    return listing.filter(f"m.group_id {ids}", group.instance_id, *bounds)


def _read_then_sorted(listing: Listing[Computer]) -> None:
    """Order the page by an expression no index serves, so that the database reads the
    computers its filters select off their own index and sorts them: the caller knows from
    the counters that they are few, so the page costs what they cost, not the instance."""
    by_name = "(m.sort_name || '')"
    listing.order, listing.text_keys = (by_name, "m.id"), frozenset({by_name})


async def narrow(
    listing: Listing[Computer],
    instance_id: int,
    settings: Settings,
    statuses: Sequence[ConnectionStatus] | None = None,
    search: str | None = None,
    now: dt.datetime | None = None,
    duplicates: bool | None = None,
) -> Listing[Computer]:
    """Keep the computers of `statuses`, whose name contains `search`, duplicates or not.

    A page of statuses has two plans, as a subtree's has (`in_group`): walking the name index
    and keeping the computers of those statuses stops early when they are many, and reads up to
    the whole instance when they are few (a healthy fleet's NOT_CONNECTED ones: 89 ms for 51 of
    1,000 in 1,000,000 on a synthetic SQLite table, up to a walk of all of them); reading them
    off the check-in index and sorting costs what they are. The instance's counter row tells
    how many they can be (`_at_most`)."""
    if duplicates is not None:
        listing.filter(f"m.duplicate_of_id IS {'NOT ' if duplicates else ''}NULL")
    if statuses is not None:
        moment = now or dt.datetime.now(dt.UTC)
        condition, params = connection_status_filter_sql("m.", statuses, moment, settings)
        listing.filter(condition, *params)
        if await _at_most(instance_id, statuses) <= SMALL_SUBTREE:
            _read_then_sorted(listing)
    match = name_search.contains("m.sort_name", search)
    if match:
        listing.filter(match[0], *match[1])
    return listing


async def _at_most(instance_id: int, statuses: Sequence[ConnectionStatus]) -> int:
    """How many of the instance's computers can be in `statuses`, from its top counter row:
    the protected ones (announced CONNECTED or DELAYED) or the others. The watcher announces
    within seconds, so a fleet that just changed may be misjudged for that long: the plan is
    then slower, never wrong."""
    held = await counters.instance_held(instance_id)
    wanted = {ConnectionStatus(status).value for status in statuses}
    at_most = held.protected if wanted & counters.PROTECTING else 0
    if wanted - counters.PROTECTING:
        at_most += held.computers - held.protected
    return at_most


def narrows(
    statuses: Sequence[ConnectionStatus] | None, search: str | None, duplicates: bool | None
) -> bool:
    """Whether `narrow` with these filters may keep fewer computers than it is given: no
    counter holds their count (`count`)."""
    return (
        statuses is not None
        or duplicates is not None
        or name_search.contains("m.sort_name", search) is not None
    )


async def by_ids(scope: Scope, ids: Iterable[int]) -> dict[int, Computer]:
    values: list[Any] = list(set(ids))
    computers = await visible(scope).filter(*sql_in("m.id", values)).rows() if values else []
    return {c.id: c for c in computers}


async def by_ids_with_paths(scope: Scope, ids: Iterable[int]) -> dict[int, tuple[Computer, str]]:
    """Computers with their group's path (what a scope check needs), in one statement."""
    values: list[Any] = list(set(ids))
    if not values:
        return {}
    listing = visible(scope).filter(*sql_in("m.id", values))
    rows = await listing.rows_with("g.path", "group_path")
    return {computer.id: (computer, path) for computer, path in rows}


async def counts_in_groups(
    scope: Scope, groups: Sequence[StaticGroup], recursive: bool
) -> dict[int, int]:
    """Computers per group (with subgroups when recursive) that the viewer sees, from the
    counters in one statement, however many computers: a subtree's are the `computers` of the
    minimal prefixes of the viewer's COMPUTERS scope inside it; a group's own are all visible
    or none (they lie on its path), its `own_computers`."""
    if recursive:
        prefixes = {g.id: scope.within(g.path, Area.COMPUTERS) for g in groups}
        ids = {key: [tree_paths.path_ids(p)[-1] for p in found] for key, found in prefixes.items()}
        return await counters.sums(scope.instance_id, counters.COMPUTERS, ids)
    own = {g.id: [g.id] if scope.allows(g.path, Area.COMPUTERS) else [] for g in groups}
    return await counters.sums(scope.instance_id, counters.OWN_COMPUTERS, own)


async def count(
    scope: Scope,
    listing: Listing[Computer],
    group: StaticGroup | None,
    recursive: bool,
    filtered: bool,
) -> tuple[int, bool]:
    """How many `listing` (the viewer's computers in `group`, or everywhere) holds, and whether
    exactly: from the counters; under a search or a filter, which no counter holds, counted
    up to COUNT_CAP."""
    if filtered:
        return await listing.count_capped(counters.COUNT_CAP)
    if group is not None:
        return (await counts_in_groups(scope, [group], recursive))[group.id], True
    prefixes = scope.paths(Area.COMPUTERS)
    if ANYWHERE in prefixes:  # read on behalf of nobody (no user holds this grant): counted
        return await listing.count(), True
    ids = [tree_paths.path_ids(prefix)[-1] for prefix in prefixes]
    return (await counters.sums(scope.instance_id, counters.COMPUTERS, {None: ids}))[None], True


@dataclass(frozen=True, slots=True)
class Located:
    """A computer with the path of its group (what decides who may see and change it)."""

    computer: Computer
    group_path: str


@dataclass(frozen=True, slots=True)
class Removal:
    """What a removal or a resolution did: the computer kept (if any) and those removed."""

    kept: Located | None
    removed: list[Located]

    @property
    def dead_token_hashes(self) -> list[str]:
        return [r.computer.agent_token_hash for r in self.removed if r.computer.agent_token_hash]


async def _located(scope: Scope | None, computer_id: int, *, lock: bool = True) -> Located | None:
    """The computer (through the viewer's COMPUTERS scope when given), locked until the end of
    the transaction on PostgreSQL (SQLite runs one writing transaction at a time anyway)."""
    condition, params = ("1=1", []) if scope is None else scope.sql("g.path", Area.COMPUTERS)
    instance = [] if scope is None else [scope.instance_id]
    rows = await db.fetch(
        "SELECT m.*, g.path AS group_path FROM computer m "
        "JOIN static_group g ON g.id = m.group_id WHERE m.id = ? "
        f"{'AND m.instance_id = ? ' if scope is not None else ''}AND {condition}"
        f"{' FOR UPDATE OF m' if lock and db.is_postgres() else ''}",
        [computer_id, *instance, *params],
    )
    if not rows:
        return None
    row = rows[0]
    path = str(row.pop("group_path"))
    return Located(db.from_row(Computer, row), path)


async def _writable(scope: Scope, computer_id: int, *, lock: bool = True) -> Located:
    found = await _located(scope, computer_id, lock=lock)
    if found is None:
        raise NotFound("no such computer", "computerId")
    scope.require(found.group_path, Area.COMPUTERS, Level.WRITE)
    return found


def _held(found: Located, delta: int, path: str | None = None) -> list[counters.Held]:
    """The computer added to the group at `path` (its own group's when None; -1: taken)."""
    computer = found.computer
    return counters.computer_held(
        computer.instance_id, path or found.group_path, delta, computer.announced_status
    )


async def _delete(removed: Located, *moved: counters.Held) -> None:
    """Delete the computer, and shift the counters in one statement: out of its group, and
    what the other computers `moved` took along."""
    await db.execute("DELETE FROM computer WHERE id = ?", [removed.computer.id])
    await counters.shift_held([*_held(removed, -1), *moved])


async def remove_computer(scope: Scope, computer_id: int) -> Removal:
    """Remove a computer (its agent token dies with it). One that has duplicates waits until a
    user settles them: which of them is the real machine is not ours to guess. In a
    transaction of its own (a savepoint in the caller's): the computer stays locked from the
    read of its announced status to the counters' shift, so the connection watcher cannot
    announce it in between (the watcher's shift and ours would both count the change)."""
    async with db.transaction():
        found = await _writable(scope, computer_id)
        if await Computer.filter(duplicate_of_id=computer_id).exists():
            raise InvalidTransition(
                "the computer has duplicates: settle them first (resolveDuplicateComputer)",
                "computerId",
            )
        await _delete(found)
        return Removal(None, [found])


async def resolve_duplicate(scope: Scope, duplicate_id: int, keep: DuplicateResolution) -> Removal:
    """Settle a duplicate: KEEP_EXISTING removes it; KEEP_NEW removes the enrolled computer and
    puts the duplicate in its place (its group, no longer a duplicate; the enrolled computer's
    other duplicates become the kept one's). In a transaction of its own, as a removal."""
    async with db.transaction():
        seen = await _writable(scope, duplicate_id, lock=False)
        existing_id = seen.computer.duplicate_of_id
        if existing_id is None:
            raise InvalidTransition("the computer is not a duplicate", "computerId")
        # Lock the enrolled computer first, then the duplicate: every resolution of its duplicates
        # takes the locks in that order.
        existing = await _located(None, existing_id)
        duplicate = await _writable(scope, duplicate_id)
        if existing is None or duplicate.computer.duplicate_of_id != existing_id:
            raise InvalidTransition("the duplicate was settled meanwhile", "computerId")
        if keep is DuplicateResolution.KEEP_EXISTING:
            await _delete(duplicate)
            return Removal(existing, [duplicate])
        scope.require(existing.group_path, Area.COMPUTERS, Level.WRITE)
        # At no moment two originals: the enrolled one first becomes a duplicate of the kept one.
        await db.execute(
            "UPDATE computer SET duplicate_of_id = ? "
            "WHERE (duplicate_of_id = ? OR id = ?) AND id <> ?",
            [duplicate_id, existing_id, existing_id, duplicate_id],
        )
        group_id = existing.computer.group_id
        await db.execute(
            "UPDATE computer SET duplicate_of_id = NULL, group_id = ? WHERE id = ?",
            [group_id, duplicate_id],
        )
        # the kept computer moves from its group to the removed one's
        await _delete(existing, *_held(duplicate, -1), *_held(duplicate, 1, existing.group_path))
        kept = duplicate.computer
        kept.duplicate_of_id, kept.group_id = None, group_id
        return Removal(Located(kept, existing.group_path), [existing])
