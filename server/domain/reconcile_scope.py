"""What of an instance a sync must read: the companies whose stored fingerprints differ from
what the snapshot wants, then only the rows a plan of them needs.

`differing` reads every company's fingerprints (`Wanted.digest`, the license listing's digest,
how it is unlinked) from one index and keeps the companies that differ: new, to rewrite, to
unlink or relink, or whose license listing changed. When none but licenses differ, nothing
else is read. Otherwise `load` reads what `reconcile_plan` needs to plan them (its docstring):
every company and group above each differing company (itself included) and above the parents
the snapshot gives them, the whole subtree of each one moved or renamed (its layout follows),
the two top groups and the Shared Objects groups of the companies loaded. The loaded set holds
every ancestor of every row in it, and every row below a group whose layout may change;
whatever else is stored matches the snapshot already.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.domain import tree_paths
from server.domain.reconcile_input import (
    COMPANY_COLUMNS,
    GROUP_COLUMNS,
    CompanyRow,
    GroupRow,
    Wanted,
)
from server.models import db
from server.models.bulk import encode_rows, rows_source
from server.models.companies import top_group
from server.models.enums import GroupKind, UnlinkReason
from server.offload import computed

_RANGE = {"low": "text", "high": "text"}
_TEXT = {"value": "text"}
_ID = {"id": "int"}


@dataclass(slots=True)
class Differing:
    """A company stored otherwise than the snapshot wants it: `row` when its row must be planned
    (new: no `id`; rewritten, unlinked or relinked), else only its license listing."""

    public_id: str
    id: int | None
    license_digest: str | None
    row: bool


async def differing(
    instance_id: int, wanted: Mapping[str, Wanted], listings: Mapping[str, str]
) -> list[Differing]:
    """The companies whose stored row or license listing differ from the snapshot's (`listings`:
    each listed company's `listing_digest`): the wanted ones missing, stored with another
    fingerprint or unlinked by a sync, and the linked ones not wanted. One read of one index
    (`path` left out: only the differing need it, `load` reads it). Comparing in SQL instead,
    the wanted fingerprints handed over as one JSON parameter, measured two to four times
    slower on SQLite at 100,000 companies (parsing the JSON and indexing it cost more than
    handing the rows over)."""
    rows = await db.fetch_tuples(*fingerprints_sql(instance_id))
    return await computed(_compare, rows, wanted, listings)


def fingerprints_sql(instance_id: int) -> tuple[str, list[Any]]:
    """The statement `differing` reads: every company's fingerprints, off the index that holds
    them with the public id (on PostgreSQL its unique key's INCLUDE columns, migration 0019)."""
    return (
        "SELECT public_id, upstream_digest, unlink_reason, id, license_digest FROM company "
        "WHERE instance_id = ?",
        [instance_id],
    )


def _compare(
    rows: Sequence[tuple[Any, ...]], wanted: Mapping[str, Wanted], listings: Mapping[str, str]
) -> list[Differing]:
    """`differing`, from the stored fingerprints."""
    found: list[Differing] = []
    stored = 0  # wanted companies that have a row
    upstream = UnlinkReason.UPSTREAM.value
    for public_id, digest, unlink_reason, company_id, license_digest in rows:
        company = wanted.get(public_id)
        if company is None:
            if unlink_reason is None:  # to unlink
                found.append(Differing(public_id, company_id, license_digest, True))
            continue
        stored += 1
        row = digest != company.digest or unlink_reason == upstream
        listing = listings.get(public_id)
        if row or (listing is not None and listing != license_digest):
            found.append(Differing(public_id, company_id, license_digest, row))
    if stored < len(wanted):  # public ids are unique per instance: some are new
        held = {row[0] for row in rows}
        found += [Differing(p, None, None, True) for p in wanted if p not in held]
    return found


def _tops(paths: Iterable[str]) -> list[str]:
    """The paths not below another of them."""
    tops: list[str] = []
    for path in sorted(set(paths)):
        if not tops or not path.startswith(tops[-1]):
            tops.append(path)
    return tops


async def load(
    instance_id: int, wanted: Mapping[str, Wanted], changed: Iterable[Differing]
) -> tuple[list[CompanyRow], list[GroupRow]]:
    """The rows a plan of the `changed` companies (`Differing.row`) starts from, in three
    statements: where they and the parents the snapshot gives them are, then the companies,
    then the groups (see the module's docstring)."""
    changed = list(changed)
    new = {d.public_id for d in changed if d.id is None}
    parents = {
        parent
        for d in changed
        if (w := wanted.get(d.public_id)) is not None
        and (parent := w.parent) is not None
        and parent not in new
    }
    # Each statement walks its JSON parameter and seeks the index for every item (CROSS JOIN
    # keeps SQLite from scanning the whole instance and probing the JSON for every row).
    placed = "SELECT c.id, c.public_id, c.path, c.name, p.public_id FROM {} CROSS JOIN company c "
    placed += "LEFT JOIN company p ON p.id = c.parent_id WHERE c.instance_id = ? AND {}"
    found = await db.fetch_tuples(
        placed.format(rows_source(_ID), "c.id = x.id")
        + " UNION ALL "
        + placed.format(rows_source(_TEXT), "c.public_id = x.value"),
        [
            encode_rows({"id": d.id} for d in changed if d.id is not None),
            instance_id,
            encode_rows({"value": p} for p in sorted(parents)),
            instance_id,
        ],
    )
    ids = {d.id for d in changed}
    group_ids: set[int] = set()
    moved: list[str] = []  # the paths of the companies moved or renamed: their subtrees follow
    for company_id, public_id, path, name, parent in found:
        group_ids.update(tree_paths.path_ids(path))
        w = wanted.get(public_id)
        if company_id in ids and w is not None and (w.name != name or w.parent != parent):
            moved.append(path)
    heads = _tops(moved)
    ancestors = encode_rows({"id": group_id} for group_id in sorted(group_ids))
    ranges = encode_rows(
        {"low": low, "high": high} for low, high in map(tree_paths.subtree_bounds, heads)
    )
    company = GroupKind.COMPANY.value
    company_rows = await db.fetch_tuples(
        f"SELECT {COMPANY_COLUMNS} FROM {rows_source(_ID)} CROSS JOIN static_group g "
        "JOIN company c ON c.id = g.company_id WHERE g.id = x.id AND g.kind = ? "
        f"AND c.instance_id = ? UNION ALL SELECT {COMPANY_COLUMNS} FROM {rows_source(_RANGE)} "
        "CROSS JOIN company c JOIN static_group g ON g.company_id = c.id AND g.kind = ? "
        "WHERE c.instance_id = ? AND c.path >= x.low AND c.path < x.high",
        [ancestors, company, instance_id, ranges, company, instance_id],
    )
    companies = {row[0]: row for row in company_rows}
    # the loaded companies' Shared Objects groups, the top two levels (All, off its own index,
    # and Companies) and the subtrees
    group_rows = await db.fetch_tuples(
        f"SELECT {GROUP_COLUMNS} FROM {rows_source(_ID)} CROSS JOIN static_group g "
        "WHERE g.company_id = x.id AND g.kind = ? "
        f"UNION ALL SELECT {GROUP_COLUMNS} FROM static_group t CROSS JOIN static_group g "
        f"WHERE {top_group('t')} AND (g.id = t.id OR g.parent_id = t.id) "
        f"AND g.kind <> ? UNION ALL SELECT {GROUP_COLUMNS} FROM {rows_source(_RANGE)} "
        "CROSS JOIN static_group g WHERE g.instance_id = ? AND g.path >= x.low "
        "AND g.path < x.high AND g.kind <> ?",
        [
            encode_rows({"id": company_id} for company_id in companies),
            GroupKind.SHARED_OBJECTS.value,
            instance_id,
            company,
            ranges,
            instance_id,
            company,
        ],
    )
    groups = {row[0]: row for row in group_rows}
    return [CompanyRow.of(r) for r in companies.values()], [GroupRow.of(r) for r in groups.values()]
