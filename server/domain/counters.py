"""Maintained subtree counters: companies per static group subtree, by type and customer status,
and what groups hold (`HELD`: computers, the protected ones among them, the seats and
activations of the licenses in force), per subtree and per group.

A company's path lists the ids of its group and of every group above it, so a company counts in
the `subtree_count` row of each of those groups; a computer likewise, through its group's path,
and once more in its own group's `own_computers` (a license in its company's group's
`own_seats`, `own_activated`). Writes keep the rows right in their own transaction: a customer
action shifts the rows of its path (`shift`, one upsert), an enrolment, removal, resolution,
announced connection transition or license change those of its groups' paths (`shift_held`,
one upsert), the sync moves the counts of the companies it wrote and what the groups it moved
hold (`placed` and `group_paths` before its writes, `relocation` worked out while it writes its
licenses, then `relocate`: one upsert, whatever the size of the tree), and `msp-console
recount` recounts an instance (`recount`: one read of the companies, what groups hold rolled up
from the `own_` columns, only the rows that differ written).
Reads (`Totals` for a viewer) then cost one row per minimal scope prefix, however large the
tree.

On PostgreSQL, the top group's row is the counters' lock: a shift takes its path's rows in id
order (the top first), and a recount or a relocate that moves computers takes the top row before
it reads them, so neither overwrites nor misses a shift. Writers that lock other rows too take
them before the counters (an enrolment its installers; an unlink, the sync's included, the
customers' rows and installers). Before all of them, a writer an instance's removal could meet
holds the instance's row (KEY SHARE: the enrolment's lookup, the watcher's claim, the sync's
`instances.keep_from_removal`), the lock the removal takes first (FOR UPDATE): one of the two
waits for the other from the start, not half way.

Longer than most on purpose: the shifts, the sync's relocate, the recount and the reads share
the rows' layout and the lock order above; apart, a writer could take the rows in another order
than the others.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.domain import tree_paths
from server.domain.access import Scope
from server.models import Company, db
from server.models.bulk import encode_ids, ids_source, insert_records
from server.models.companies import top_group
from server.models.enums import (
    CompanyType,
    ConnectionStatus,
    CustomerStatus,
    LicenseState,
    SetupState,
)
from server.offload import computed, no_collection

TYPE_COLUMNS = {
    CompanyType.DISTRIBUTOR: "distributors",
    CompanyType.DIVISION: "divisions",
    CompanyType.MSP_MANAGER: "msp_managers",
    CompanyType.MSP: "msps",
    CompanyType.MANAGED_MSP: "managed_msps",
}
STATUS_COLUMNS = {
    CustomerStatus.NOT_SET_UP: "customers_not_set_up",
    CustomerStatus.NORMAL: "customers_normal",
    CustomerStatus.UNLINKED: "customers_unlinked",
}
COUNT_CAP = 1000  # counted under a search (no counter answers one): then at least this many
COMPUTERS = "computers"
# of the computers, those announced CONNECTED or DELAYED (`connections.announce_transitions`)
PROTECTED = "protected"
PROTECTING = frozenset({ConnectionStatus.CONNECTED.value, ConnectionStatus.DELAYED.value})
SEATS, ACTIVATED = "seats", "activated"  # of the licenses in force
IN_FORCE = LicenseState.ACTIVE  # the state whose seats count as ordered
# what a group holds itself, by the column that rolls it up over the group's subtree; the `own_`
# columns are stored, not rolled up: what the group's row adds to the rows above
HELD = {
    COMPUTERS: "own_computers",
    PROTECTED: "own_protected",
    SEATS: "own_seats",
    ACTIVATED: "own_activated",
}
OWN_COMPUTERS = HELD[COMPUTERS]
# the columns counted over a whole subtree (rolled up to every group above), then every column
COLUMNS = (*TYPE_COLUMNS.values(), *STATUS_COLUMNS.values(), *HELD)
STORED = (*COLUMNS, *HELD.values())


def status_of(setup_state: str | SetupState, unlinked: bool) -> CustomerStatus:
    if unlinked:
        return CustomerStatus.UNLINKED
    if SetupState(setup_state) == SetupState.PENDING:
        return CustomerStatus.NOT_SET_UP
    return CustomerStatus.NORMAL


@functools.cache  # a dozen inputs, asked once per company written (100,000 in a first sync)
def column_of(type: str | CompanyType, setup_state: str | SetupState, unlinked: bool) -> str:
    """The one column a company counts in."""
    kind = CompanyType(type)
    if kind == CompanyType.CUSTOMER:
        return STATUS_COLUMNS[status_of(setup_state, unlinked)]
    return TYPE_COLUMNS[kind]


def company_column(company: Company) -> str:
    return column_of(company.type, company.setup_state, company.unlinked_at is not None)


@dataclass(slots=True)
class Counts:
    distributors: int = 0
    divisions: int = 0
    msp_managers: int = 0
    msps: int = 0
    managed_msps: int = 0
    customers_not_set_up: int = 0
    customers_normal: int = 0
    customers_unlinked: int = 0
    computers: int = 0
    protected: int = 0
    seats: int = 0
    activated: int = 0

    def add(self, row: Mapping[str, Any], sign: int = 1) -> None:
        for name in COLUMNS:
            setattr(self, name, getattr(self, name) + sign * int(row.get(name) or 0))

    def statuses(self) -> dict[CustomerStatus, int]:
        return {status: getattr(self, column) for status, column in STATUS_COLUMNS.items()}

    def matching(
        self,
        types: Sequence[CompanyType] | None = None,
        statuses: Sequence[CustomerStatus] | None = None,
    ) -> int:
        """How many companies of `types` (any when None) and, when given, customers of
        `statuses`: the filters of the company listings."""
        kinds = set(CompanyType) if types is None else set(types)
        if statuses is not None:
            kinds &= {CompanyType.CUSTOMER}
        total = sum(getattr(self, TYPE_COLUMNS[k]) for k in kinds if k in TYPE_COLUMNS)
        if CompanyType.CUSTOMER in kinds:
            wanted = set(CustomerStatus) if statuses is None else set(statuses)
            total += sum(getattr(self, STATUS_COLUMNS[s]) for s in wanted)
        return total


def _row(group_id: int, instance_id: int, counts: dict[str, int]) -> dict[str, int]:
    return {"group_id": group_id, "instance_id": instance_id, **counts}


_NAMES = ("group_id", "instance_id", *STORED)


async def _upsert(rows: Sequence[Mapping[str, int]], *, add: bool) -> None:
    """Insert these rows in one statement; on an existing row, add to it or replace it. SQLite
    runs it once per row (`execute_many`: reading JSON costs a parse per column per row there),
    PostgreSQL reads one integer array per column."""
    update = ", ".join(
        f"{c} = subtree_count.{c} + excluded.{c}" if add else f"{c} = excluded.{c}" for c in STORED
    )
    insert = f"INSERT INTO subtree_count ({', '.join(_NAMES)})"
    conflict = f"ON CONFLICT (group_id) DO UPDATE SET {update}"
    if db.is_postgres():
        # ORDER BY: PostgreSQL takes the rows' locks in this order, the top group first
        arrays = ", ".join("CAST(? AS integer[])" for _ in _NAMES)
        await db.execute(
            f"{insert} SELECT * FROM unnest({arrays}) ORDER BY 1 {conflict}",
            [[row[name] for row in rows] for name in _NAMES],
        )
        return
    marks = ", ".join("?" for _ in _NAMES)
    await db.execute_many(
        f"{insert} VALUES ({marks}) {conflict}", [tuple(map(row.get, _NAMES)) for row in rows]
    )


def _gather(deltas: dict[Any, dict[str, int]], key: Any, column: str, delta: int) -> None:
    gathered = deltas.get(key)
    if gathered is None:
        deltas[key] = {column: delta}
    else:
        gathered[column] = gathered.get(column, 0) + delta


class _Deltas:
    """Changes to add to counter rows, gathered per path and per group, then written in one
    statement (and one more for the rows of groups the transaction created)."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, int]] = {}
        # (instance id, path) -> column -> delta for every row of the path, rolled up at `write`
        self.paths: dict[tuple[int, str], dict[str, int]] = {}
        # (instance id, path) -> column -> delta for the path's own group alone
        self.owned: dict[tuple[int, str], dict[str, int]] = {}

    def _row_of(self, instance_id: int, group_id: int) -> dict[str, int]:
        row = self.rows.get(group_id)
        if row is None:
            row = self.rows[group_id] = _row(group_id, instance_id, dict.fromkeys(STORED, 0))
        return row

    def along(self, instance_id: int, path: str, column: str | None, delta: int) -> None:
        """Add `delta` to `column` of every row of `path` (the group's and those above it);
        nothing for None (not counted there)."""
        if column is not None:
            _gather(self.paths, (instance_id, path), column, delta)

    def own(self, instance_id: int, path: str, column: str, delta: int) -> None:
        """Add `delta` to `column` of the row of `path`'s group alone."""
        _gather(self.owned, (instance_id, path), column, delta)

    def roll_up(self) -> None:
        """Each path's deltas to its group's row, then to its parent's path, deepest first: the
        rows above many changed groups (a first sync's) are added to once per child path, not
        once per company below them, and each path is split once, whatever its columns."""
        levels: dict[int, dict[tuple[int, str], None]] = defaultdict(dict)  # ordered sets
        for key in (*self.owned, *self.paths):
            levels[key[1].count("/")][key] = None
        for depth in range(max(levels, default=0), 0, -1):
            for key in levels.pop(depth, {}):
                instance_id, path = key
                parent, group_id = tree_paths.split_last(path)
                row = self._row_of(instance_id, group_id)
                deltas = self.paths.pop(key, {})
                for column, delta in (*deltas.items(), *self.owned.pop(key, {}).items()):
                    row[column] += delta
                if parent and deltas:
                    up = (instance_id, parent)
                    gathered = self.paths.get(up)
                    if gathered is None:  # passed up whole: no longer this path's
                        self.paths[up] = deltas
                        levels[depth - 1][up] = None
                    else:
                        for column, delta in deltas.items():
                            gathered[column] = gathered.get(column, 0) + delta

    def _rows(self, new: Collection[int]) -> tuple[list[tuple[Any, ...]], list[dict[str, int]]]:
        """The rows of `new` groups to insert, and the other rows' changes to add."""
        self.roll_up()
        rows = [row for row in self.rows.values() if any(row[c] for c in STORED)]
        fresh = [tuple(map(row.get, _NAMES)) for row in rows if row["group_id"] in new]
        return fresh, [row for row in rows if row["group_id"] not in new]

    async def write(self, new: Collection[int] = (), *, large: bool = False) -> None:
        """One upsert of the rows that change (moves may cancel out: a computer that changes
        groups under the same parent leaves the parent's count as it was). The rows of `new`
        groups (inserted by this transaction, so no row of theirs can exist) are inserted
        instead: a first sync's 100,000 rows cost half as much on PostgreSQL without the
        conflict checks and the arrays. `large` (a sync's): rolled up off the event loop."""
        if large:
            fresh, rows = await computed(self._rows, new)
        else:
            with no_collection():
                fresh, rows = self._rows(new)
        if fresh:
            await insert_records("subtree_count", _NAMES, fresh)
        if rows:
            await _upsert(rows, add=True)


async def shift(instance_id: int, moves: Iterable[tuple[str, str | None, str | None]]) -> None:
    """Apply (path, column left, column entered) for each company that changed, to every row of
    its path, in one statement. None: the company was not counted before (or is no longer)."""
    deltas = _Deltas()
    for path, left, entered in moves:
        if left != entered:
            deltas.along(instance_id, path, left, -1)
            deltas.along(instance_id, path, entered, 1)
    await deltas.write()


Held = tuple[int, str, str, int]
"""(instance id, a group's path, a column of HELD, how much the group holds more or, negative,
less)."""


def computer_held(
    instance_id: int, path: str, delta: int, announced: str | ConnectionStatus
) -> list[Held]:
    """A computer (announced as `announced`) added to the group at `path` (-1: taken from it)."""
    protected = ConnectionStatus(announced).value in PROTECTING
    columns = (COMPUTERS, PROTECTED) if protected else (COMPUTERS,)
    return [(instance_id, path, column, delta) for column in columns]


async def shift_held(moves: Iterable[Held]) -> None:
    """Apply each move to its column on every row of the path and to the group's own column, in
    one statement."""
    moves = [move for move in moves if move[3]]
    await _held_deltas(moves).write()
    if moves:
        await _follow_moved_groups(moves)


def _held_deltas(moves: Iterable[Held], deltas: _Deltas | None = None) -> _Deltas:
    deltas = deltas or _Deltas()
    for instance_id, path, column, delta in moves:
        deltas.along(instance_id, path, column, delta)
        deltas.own(instance_id, path, HELD[column], delta)
    return deltas


async def _follow_moved_groups(moves: list[Held]) -> None:
    """The paths were read before the shift took the top row; on PostgreSQL a sync that moved a
    group in between committed first (else its recount would wait for the top row and then see
    this shift), so its recount missed these moves, shifted here along the old path: move them
    to the new one. No sync commits a move while the top row is held: the check holds.
    (SQLite runs one writer at a time, so it finds nothing there; one indexed read is cheaper
    than a second way of shifting.)"""
    now = await group_paths({tree_paths.path_ids(path)[-1] for _, path, _, _ in moves})
    moved: list[Held] = []
    for instance_id, path, column, delta in moves:
        current = now.get(tree_paths.path_ids(path)[-1], path)
        if current != path:
            moved += [(instance_id, path, column, -delta), (instance_id, current, column, delta)]
    await _held_deltas(moved).write()


LicenseMoves = Iterable[tuple[int, Mapping[str, Any], int]]
"""(company id, license row with `seats`, `activated` and `state`, +1 added or -1 taken away)
for each license a sync wrote or removed."""


async def license_paths(moves: LicenseMoves, known: Collection[int]) -> dict[int, str]:
    """The paths of the companies of license `moves` but those `known` (whose paths the caller
    has), read in one statement."""
    missing = await computed(_unknown, moves, known)
    if not missing:
        return {}
    rows = await db.fetch_tuples(
        f"SELECT id, path FROM company WHERE id IN ({ids_source()})", [encode_ids(missing)]
    )
    return dict(rows)


def _unknown(moves: LicenseMoves, known: Collection[int]) -> set[int]:
    return {company_id for company_id, _, _ in moves if company_id not in known}


async def license_held(
    instance_id: int, moves: LicenseMoves, known: Mapping[int, str]
) -> list[Held]:
    """The `Held` moves of license `moves` along their companies' paths as they are now:
    `known` paths, the others read. Summed off the event loop (a first sync adds 200,000)."""
    paths = await license_paths(moves, known)
    return await computed(_license_held, instance_id, moves, known, paths)


def _license_held(
    instance_id: int, moves: LicenseMoves, known: Mapping[int, str], paths: Mapping[int, str]
) -> list[Held]:
    """Seats and activations of the licenses in force, summed per company (fewer moves)."""
    held: Counter[tuple[int, str]] = Counter()
    for company_id, row, sign in moves:
        if row["state"] == IN_FORCE.value:
            held[(company_id, SEATS)] += sign * int(row[SEATS])
            held[(company_id, ACTIVATED)] += sign * int(row[ACTIVATED])
    return [
        (instance_id, known.get(company_id) or paths[company_id], column, delta)
        for (company_id, column), delta in held.items()
        if delta
    ]


async def shift_licenses(
    instance_id: int, moves: Iterable[tuple[int, Mapping[str, Any], int]]
) -> None:
    """`license_held` shifted, in one statement (and one read)."""
    await shift_held(await license_held(instance_id, moves, {}))


Placed = dict[int, tuple[str, str]]
"""Company id -> (path, the column it counts in)."""


async def placed(instance_id: int, company_ids: Collection[int], *, lock: bool = False) -> Placed:
    """Where these companies count now, in one read. `lock` (PostgreSQL): their rows stay as
    read until the transaction ends, so a customer action on one of them cannot fall between
    this read and a later one (its own shift and this transaction's would both count it)."""
    if not company_ids:
        return {}
    rows = await db.fetch_tuples(
        "SELECT id, path, type, setup_state, unlinked_at IS NOT NULL FROM company "
        f"WHERE instance_id = ? AND id IN ({ids_source()}) ORDER BY id"
        + (" FOR UPDATE" if lock and db.is_postgres() else ""),
        [instance_id, encode_ids(company_ids)],
    )
    return {row[0]: (row[1], column_of(row[2], row[3], bool(row[4]))) for row in rows}


async def group_paths(group_ids: Collection[int]) -> dict[int, str]:
    """Where these groups are now, in one read: a sync's groups before it moves them."""
    if not group_ids:
        return {}
    rows = await db.fetch_tuples(
        f"SELECT id, path FROM static_group WHERE id IN ({ids_source()})", [encode_ids(group_ids)]
    )
    return {row[0]: row[1] for row in rows}


def relocation(
    instance_id: int,
    before: Placed,
    after: Placed,
    licenses: LicenseMoves = (),
    paths: Mapping[int, str] | None = None,
) -> _Deltas:
    """A sync's deltas, rolled up (plain Python over the whole instance in a first sync: for
    `computed` or `ahead`): companies moved from where they counted `before` to `after` (none
    for new companies), and what its license writes changed (`licenses`, along the paths of
    their companies as they are now: `after`'s, else `paths`, see `license_paths`)."""
    known = {company_id: path for company_id, (path, _) in after.items()}
    held = _license_held(instance_id, licenses, known, paths or {})
    deltas = _held_deltas(held)
    for company_id in before.keys() | after.keys():
        was, now = before.get(company_id), after.get(company_id)
        if was == now:
            continue
        if was is not None:
            deltas.along(instance_id, *was, -1)
        if now is not None:
            deltas.along(instance_id, *now, 1)
    deltas.roll_up()
    return deltas


async def relocate(
    instance_id: int,
    deltas: _Deltas,
    groups_before: Mapping[int, str],
    groups_after: Mapping[int, str],
    new_groups: Collection[int] = (),
) -> None:
    """Write a sync's `relocation`, and move what each group holds from its path
    `groups_before` to its path `groups_after`, in one upsert: for a sync that moved, added,
    unlinked or retyped a few companies, instead of a `recount` of all of them. What the groups
    hold is read under the top row's lock, after the sync's other writes: a shift along a path
    read earlier then either came first (and moves with the rest) or waits, and follows the
    group. (The licenses' moves are not in the stored rows yet, so they are not moved twice.)
    `new_groups`: the groups the sync inserted, whose rows are inserted whole."""
    moved = {
        group_id: (path, groups_after[group_id])
        for group_id, path in groups_before.items()
        if groups_after.get(group_id, path) != path
    }
    if moved:
        await _lock_top(instance_id)
        own = await totals(instance_id, HELD.values(), {g: [g] for g in moved})
        for group_id, (was_at, now_at) in moved.items():
            for column, own_column in HELD.items():
                deltas.along(instance_id, was_at, column, -own[group_id][own_column])
                deltas.along(instance_id, now_at, column, own[group_id][own_column])
    await deltas.write(new_groups, large=True)


async def _lock_top(instance_id: int) -> None:
    if db.is_postgres():
        await db.fetch(
            "SELECT s.group_id FROM subtree_count s JOIN static_group g ON g.id = s.group_id "
            f"WHERE {top_group('g')} FOR UPDATE OF s",
            [instance_id],
        )


async def recount(instance_id: int, *, count_held: bool = False) -> int:
    """Make the instance's counters match its companies; returns how many rows it wrote. For
    `msp-console recount`, and after rows were written behind the counters' back (a restore,
    a test's fixtures). One read of the companies and one of the counters, then only the rows
    that differ.

    What each group holds over its subtree is the roll-up of the groups' `own_` columns along
    the current paths: as stored, or, with `count_held` (the repair), counted from the
    computers and the licenses first (two more reads)."""
    await _lock_top(instance_id)
    companies = await db.fetch(
        "SELECT path, type, setup_state, unlinked_at IS NOT NULL AS unlinked FROM company "
        "WHERE instance_id = ?",
        [instance_id],
    )
    stored_rows = await db.fetch(
        f"SELECT s.group_id, g.path, {', '.join(f's.{c}' for c in STORED)} FROM subtree_count s "
        "LEFT JOIN static_group g ON g.id = s.group_id WHERE s.instance_id = ?",
        [instance_id],
    )
    stored = {row["group_id"]: [int(row[name]) for name in STORED] for row in stored_rows}
    if count_held:
        own_rows = await _count_held(instance_id)
    else:
        own_rows = [
            {"path": row["path"], **{c: row[own] for c, own in HELD.items()}}
            for row in stored_rows
            if row["path"] is not None and any(row[own] for own in HELD.values())
        ]
    # each company counted in its own group, then every group's counts added to its parent's,
    # deepest first: N + groups additions, not one per company and level
    column_at = {name: n for n, name in enumerate(COLUMNS)}
    index_of: dict[tuple[str, str, bool], int] = {}
    totals: dict[str, list[int]] = {}
    for company in companies:
        key = (company["type"], company["setup_state"], bool(company["unlinked"]))
        at = index_of.get(key)
        if at is None:
            at = index_of[key] = column_at[column_of(*key)]
        row = totals.get(company["path"])
        if row is None:
            row = totals[company["path"]] = [0] * len(COLUMNS)
        row[at] += 1
    own: dict[str, list[int]] = {}
    for group in own_rows:
        held = own.setdefault(group["path"], [0] * len(HELD))
        for n, column in enumerate(HELD):
            held[n] += int(group.get(column) or 0)
    for path, held in own.items():
        row = totals.get(path)
        if row is None:
            row = totals[path] = [0] * len(COLUMNS)
        for column, value in zip(HELD, held, strict=True):
            row[column_at[column]] += value
    by_depth: dict[int, list[str]] = {}
    for path in totals:
        by_depth.setdefault(path.count("/"), []).append(path)
    for depth in range(max(by_depth, default=0), 2, -1):
        for path in by_depth.get(depth, ()):
            parent = path[: path.rindex("/", 0, len(path) - 1) + 1]
            above = totals.get(parent)
            if above is None:
                above = totals[parent] = [0] * len(COLUMNS)
                by_depth.setdefault(depth - 1, []).append(parent)
            for n, value in enumerate(totals[path]):
                above[n] += value
    nothing = [0] * len(HELD)
    wanted = {
        tree_paths.path_ids(path)[-1]: [*row, *own.get(path, nothing)]
        for path, row in totals.items()
    }
    changed = [
        _row(group_id, instance_id, dict(zip(STORED, row, strict=True)))
        for group_id, row in wanted.items()
        if stored.get(group_id) != row
    ]
    # a row of zeros (the last computer of a group removed) says what no row says: kept
    gone = [group_id for group_id, row in stored.items() if group_id not in wanted and any(row)]
    if changed:
        await _upsert(changed, add=False)
    if gone:
        await db.execute(
            f"DELETE FROM subtree_count WHERE group_id IN ({ids_source()})", [encode_ids(gone)]
        )
    return len(changed) + len(gone)


async def _count_held(instance_id: int) -> list[dict[str, Any]]:
    """What each group holds, counted from the computers and the licenses (a company's
    licenses in its group, which shares its path): rows of a path and HELD's columns."""
    protecting = ", ".join(f"'{status}'" for status in sorted(PROTECTING))
    computers = await db.fetch(
        f"SELECT g.path, COUNT(*) AS {COMPUTERS}, SUM(CASE WHEN m.announced_status IN "
        f"({protecting}) THEN 1 ELSE 0 END) AS {PROTECTED} FROM computer m "
        "JOIN static_group g ON g.id = m.group_id WHERE m.instance_id = ? "
        "GROUP BY m.group_id, g.path",
        [instance_id],
    )
    licenses = await db.fetch(
        f"SELECT c.path, SUM(l.seats) AS {SEATS}, SUM(l.activated) AS {ACTIVATED} FROM license l "
        "JOIN company c ON c.id = l.company_id WHERE l.instance_id = ? AND l.state = ? "
        "GROUP BY c.id, c.path",
        [instance_id, IN_FORCE.value],
    )
    return [*computers, *licenses]


async def visible_counts(scope: Scope, path: str | None = None) -> Counts:
    """What the viewer sees of the subtree at `path` (the whole instance when None), counted
    from one row per minimal scope prefix, in one statement."""
    ids = [tree_paths.path_ids(prefix)[-1] for prefix in scope.within(path)]
    counts = Counts()
    if not ids:
        return counts
    rows = await db.fetch(
        f"SELECT {', '.join(COLUMNS)} FROM subtree_count WHERE instance_id = ? "
        f"AND group_id IN ({', '.join('?' for _ in ids)})",
        [scope.instance_id, *ids],
    )
    for row in rows:
        counts.add(row)
    return counts


async def instance_held(instance_id: int) -> Counts:
    """What the whole instance counts, off its top group's row: one row, whatever its size."""
    counts = Counts()
    for row in await db.fetch(
        f"SELECT {', '.join(f's.{c}' for c in COLUMNS)} FROM subtree_count s "
        f"JOIN static_group g ON g.id = s.group_id WHERE {top_group('g')}",
        [instance_id],
    ):
        counts.add(row)
    return counts


async def totals(
    instance_id: int, columns: Iterable[str], groups_of: Mapping[Any, Sequence[int]]
) -> dict[Any, dict[str, int]]:
    """For each key, `columns` added up over the rows of its group ids, in one statement."""
    columns = list(columns)
    ids = {group_id for group_ids in groups_of.values() for group_id in group_ids}
    found: dict[int, dict[str, Any]] = {}
    if ids:
        rows = await db.fetch(
            f"SELECT group_id, {', '.join(columns)} FROM subtree_count WHERE instance_id = ? "
            f"AND group_id IN ({ids_source()})",
            [instance_id, encode_ids(ids)],
        )
        found = {row["group_id"]: row for row in rows}
    return {
        key: {c: sum(int(found[i][c]) for i in group_ids if i in found) for c in columns}
        for key, group_ids in groups_of.items()
    }


async def sums(
    instance_id: int, column: str, groups_of: Mapping[Any, Sequence[int]]
) -> dict[Any, int]:
    """For each key, `column` added up over the rows of its group ids, in one statement."""
    found = await totals(instance_id, [column], groups_of)
    return {key: counts[column] for key, counts in found.items()}


async def descendant_counts(scope: Scope, company: Company) -> Counts:
    """What the viewer sees below `company` (itself left out)."""
    counts = await visible_counts(scope, company.path)
    if scope.allows(company.path):
        counts.add({company_column(company): 1}, sign=-1)
    return counts
