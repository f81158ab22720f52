"""Maintained subtree counters: companies per static group subtree, by type and customer status.

A company's path lists the ids of its group and of every group above it, so a company counts in
the `subtree_count` row of each of those groups. Writes keep the rows right in their own
transaction: a customer action shifts the rows of its path (`shift`, one upsert), the sync
moves the counts of the companies it wrote (`placed` before and after its writes, then
`relocate`: one upsert, whatever the size of the tree), and `msp-console recount` recounts an
instance (`recount`: one read of the companies, only the rows that differ written). Reads
(`Totals` for a viewer) then cost one row per minimal scope prefix, however large the tree.
Computers are not counted here: check-ins and enrolments would all queue on the top group's
row, and the pages count computers over small subtrees.

On PostgreSQL, the top group's row is the counters' lock: a shift (and a relocate) takes its
path's rows in id order (the top first), and a recount takes the top row before it reads the
companies, so a recount never overwrites a shift it did not see. Shifts and relocates add to
the rows: they cannot overwrite each other.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.domain import tree_paths
from server.domain.access import Scope
from server.models import Company, db
from server.models.bulk import encode_ids, encode_rows, ids_source, rows_source
from server.models.enums import CompanyType, CustomerStatus, SetupState

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
COLUMNS = (*TYPE_COLUMNS.values(), *STATUS_COLUMNS.values())


def status_of(setup_state: str | SetupState, unlinked: bool) -> CustomerStatus:
    if unlinked:
        return CustomerStatus.UNLINKED
    if SetupState(setup_state) == SetupState.PENDING:
        return CustomerStatus.NOT_SET_UP
    return CustomerStatus.NORMAL


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


def _upsert_sql(add: bool) -> str:
    """Insert rows read from one JSON parameter; on an existing row, add to it or replace it."""
    names = ("group_id", "instance_id", *COLUMNS)
    source = rows_source(dict.fromkeys(names, "int"))
    update = ", ".join(
        f"{c} = subtree_count.{c} + excluded.{c}" if add else f"{c} = excluded.{c}" for c in COLUMNS
    )
    # ORDER BY: PostgreSQL takes the rows' locks in this order, the top group first
    return (
        f"INSERT INTO subtree_count ({', '.join(names)}) SELECT {', '.join(names)} "
        f"FROM {source} WHERE 1=1 ORDER BY group_id "
        f"ON CONFLICT (group_id) DO UPDATE SET {update}"
    )


def _add(deltas: dict[int, dict[str, int]], path: str, column: str | None, sign: int) -> None:
    """Count a company in (sign 1) or out of (-1) `column` of every row of its path."""
    if column is None:
        return
    for group_id in tree_paths.path_ids(path):
        row = deltas.get(group_id)
        if row is None:
            row = deltas[group_id] = dict.fromkeys(COLUMNS, 0)
        row[column] += sign


async def _write_deltas(instance_id: int, deltas: dict[int, dict[str, int]]) -> None:
    rows = [
        _row(group_id, instance_id, row) for group_id, row in deltas.items() if any(row.values())
    ]
    if rows:
        await db.execute(_upsert_sql(add=True), [encode_rows(rows)])


async def shift(instance_id: int, moves: Iterable[tuple[str, str | None, str | None]]) -> None:
    """Apply (path, column left, column entered) for each company that changed, to every row of
    its path, in one statement. None: the company was not counted before (or is no longer)."""
    deltas: dict[int, dict[str, int]] = {}
    for path, left, entered in moves:
        if left != entered:
            _add(deltas, path, left, -1)
            _add(deltas, path, entered, 1)
    await _write_deltas(instance_id, deltas)


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


async def relocate(instance_id: int, before: Placed, after: Placed) -> None:
    """Move companies' counts from where they were (`before`, none for new companies) to where
    they are (`after`), in one statement: for a sync that moved, added, unlinked or retyped a
    few companies, instead of a `recount` of all of them."""
    deltas: dict[int, dict[str, int]] = {}
    for company_id in before.keys() | after.keys():
        was, now = before.get(company_id), after.get(company_id)
        if was == now:
            continue
        if was is not None:
            _add(deltas, was[0], was[1], -1)
        if now is not None:
            _add(deltas, now[0], now[1], 1)
    await _write_deltas(instance_id, deltas)


async def _lock_top(instance_id: int) -> None:
    if db.is_postgres():
        await db.fetch(
            "SELECT s.group_id FROM subtree_count s JOIN static_group g ON g.id = s.group_id "
            "WHERE g.instance_id = ? AND g.kind = 'all' FOR UPDATE OF s",
            [instance_id],
        )


async def recount(instance_id: int) -> int:
    """Make the instance's counters match its companies; returns how many rows it wrote. For
    the sync (once, after the tree is written, in its transaction) and `msp-console recount`.
    One read of the companies and one of the counters, then only the rows that differ."""
    await _lock_top(instance_id)
    companies = await db.fetch(
        "SELECT path, type, setup_state, unlinked_at IS NOT NULL AS unlinked FROM company "
        "WHERE instance_id = ?",
        [instance_id],
    )
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
    wanted = {
        int(path[path.rindex("/", 0, len(path) - 1) + 1 : -1]): row for path, row in totals.items()
    }
    stored = {
        row["group_id"]: [int(row[name]) for name in COLUMNS]
        for row in await db.fetch(
            f"SELECT group_id, {', '.join(COLUMNS)} FROM subtree_count WHERE instance_id = ?",
            [instance_id],
        )
    }
    changed = [
        _row(group_id, instance_id, dict(zip(COLUMNS, row, strict=True)))
        for group_id, row in wanted.items()
        if stored.get(group_id) != row
    ]
    gone = [group_id for group_id in stored if group_id not in wanted]
    if changed:
        await db.execute(_upsert_sql(add=False), [encode_rows(changed)])
    if gone:
        await db.execute(
            f"DELETE FROM subtree_count WHERE group_id IN ({ids_source()})", [encode_ids(gone)]
        )
    return len(changed) + len(gone)


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


async def descendant_counts(scope: Scope, company: Company) -> Counts:
    """What the viewer sees below `company` (itself left out)."""
    counts = await visible_counts(scope, company.path)
    if scope.allows(company.path):
        counts.add({company_column(company): 1}, sign=-1)
    return counts
