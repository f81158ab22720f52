"""Applying the licenses read in a sync, inside the sync's apply transaction, with a fixed set of
statements whatever their number: one read, then at most one INSERT, one UPDATE and one DELETE
(rows travel as one JSON parameter, see `server.models.bulk`), one UPDATE of the companies'
listing digests, then the day's usage snapshot.

Each company keeps a digest of the listing the last sync applied to it (`license_digest`, NULL
when not known); only the sync writes licenses, so a company whose listing has the digest it
keeps has those licenses already. Only the other companies' licenses (and those of the
companies not listed) are read and compared: a sync in which no listing changed reads none.

Only the companies that were asked are reconciled: a license of a company missing upstream (an
unlinked company, kept) stays as it is, like its company. A key that moves to another company
moves with it. A license gone from its company's listing is deleted; the usage ledger keeps no
reference to it, so the days it was billed stay in the reports.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from server.domain import usage
from server.domain.licenses import search_text
from server.models import db
from server.models.bulk import (
    encode_ids,
    encode_rows,
    ids_source,
    insert_records,
    reserve_ids,
    rows_source,
    update_rows,
)
from server.models.enums import LicenseState
from server.offload import computed
from server.upstream.licenses import UpstreamLicense, listing_digest

STATES = {
    1: LicenseState.ACTIVE,
    2: LicenseState.SUSPENDED,
    3: LicenseState.EXPIRED,
    4: LicenseState.CANCELED,
}
_ROW = {
    "id": "int",
    "company_id": "int",
    "product_code": "int",
    "product_name": "text",
    "seats": "int",
    "activated": "int",
    "state": "text",
    "trial": "bool",
    "expires_at": "text",
    "search_text": "text",
}
_COMPARED = (
    "company_id",
    "product_code",
    "product_name",
    "seats",
    "activated",
    "state",
    "trial",
    "expires_at",
)

# a new license's columns: `_COMPARED`'s in its order (see `_wanted`), then what it adds
_NEW = (
    "id",
    *_COMPARED,
    "search_text",
    "public_license_key",
    "instance_id",
    "created_at",
    "updated_at",
)
_DIGEST_ROW = {"id": "int", "license_digest": "text"}


@dataclass(slots=True)
class LicenseChanges:
    """What a sync did to the licenses; `changed_ids` are the created and updated ones (the
    `licenseChanged` events); `held`, for `counters.shift_licenses` once the sync moved its
    companies' counters, (company id, license row, +1) for each license as written and
    (company id, license row, -1) for each as it was before an update or a removal; the new
    ones summed per company and state (`_added`)."""

    seen: int = 0
    created: int = 0
    updated: int = 0
    removed: int = 0
    changed_ids: list[int] = field(default_factory=list)
    held: list[tuple[int, dict[str, Any], int]] = field(default_factory=list)


def listing_digests(listing: Mapping[str, Sequence[UpstreamLicense]]) -> dict[str, str]:
    """`listing_digest` of each company's listing, by public id."""
    return {public_id: listing_digest(licenses) for public_id, licenses in listing.items()}


def _expiry_text(date: dt.date | None) -> str | None:
    """An expiration date as the expiry column holds it: 00:00 UTC of that day, spelled as the
    database hands a stored datetime back on SQLite (`str()` of a UTC datetime)."""
    return f"{date.isoformat()} 00:00:00+00:00" if date else None


def _stored_expiry(value: Any) -> str | None:
    """A stored expiry in `_expiry_text`'s spelling (PostgreSQL hands back a datetime)."""
    if value is None or isinstance(value, str):
        return value
    return str(value.astimezone(dt.UTC))


def _wanted(license: UpstreamLicense, company_id: int) -> tuple[Any, ...]:
    """A license as the console must hold it, in `_COMPARED` order."""
    return (
        company_id,
        license.product_code,
        license.product_name,
        license.quantity,
        license.usage,
        STATES[license.state].value,
        license.is_trial,
        _expiry_text(license.expiration_date),
    )


def _stored(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["company_id"],
        row["product_code"],
        row["product_name"],
        row["seats"],
        row["activated"],
        row["state"],
        bool(row["trial"]),
        _stored_expiry(row["expires_at"]),
    )


def _row(key: str, wanted: tuple[Any, ...], row_id: int) -> dict[str, Any]:
    return {
        "id": row_id,
        **dict(zip(_COMPARED, wanted, strict=True)),
        "search_text": search_text(key, wanted[2]),
    }


def _added(rows: Iterable[tuple[Any, ...]]) -> list[tuple[int, dict[str, Any], int]]:
    """`LicenseChanges.held` of new licenses (`_wanted` tuples): summed per company and state,
    which is all the counters read of them (a first sync adds 200,000)."""
    sums: dict[tuple[int, str], list[int]] = {}
    for row in rows:
        key = (row[0], row[5])
        total = sums.get(key)
        if total is None:
            sums[key] = [row[3], row[4]]
        else:
            total[0] += row[3]
            total[1] += row[4]
    return [
        (company_id, {"state": state, "seats": seats, "activated": activated}, 1)
        for (company_id, state), (seats, activated) in sums.items()
    ]


@functools.lru_cache(maxsize=4096)  # a first sync's 200,000 licenses share a few hundred days
def _expiry_value(text: str | None) -> dt.datetime | None:
    """`_expiry_text` as the datetime it spells (which SQLite stores in that spelling)."""
    return dt.datetime.fromisoformat(text) if text else None


def _expiry_sql(column: str) -> str:
    """JSON carries the expiry as text; PostgreSQL stores it as a timestamp."""
    return f"CAST({column} AS timestamptz)" if db.is_postgres() else column


def compared_licenses(
    instance_id: int, compared: Collection[int], unlinking: Collection[int] = ()
) -> tuple[str, list[Any]]:
    """The statement reading the licenses a sync compares with the listings. A key can come
    from a compared company (whose listing changed) or from one not listed: unlinked (missing
    upstream: before this sync, or `unlinking` by it, written or not yet) or a read-only
    ancestor; never from one whose listing has its digest. Those two are looked up as their
    partial indexes say (migration 0012_sync_upkeep), so each is read off its index, not off
    every company of the instance. (One the sync relinks may be read too: a key read and not
    listed by a compared company is left alone.)"""
    return (
        "SELECT id, public_license_key, company_id, product_code, product_name, seats, "
        "activated, state, trial, expires_at FROM license WHERE instance_id = ? "
        f"AND company_id IN ({ids_source()} "
        "UNION SELECT id FROM company WHERE instance_id = ? AND unlinked_at IS NOT NULL "
        "UNION SELECT id FROM company WHERE instance_id = ? AND read_only = TRUE)",
        [instance_id, encode_ids([*compared, *unlinking]), instance_id, instance_id],
    )


@dataclass(slots=True)
class Listed:
    """What the listings ask of the companies whose listing is compared (`stale`: public id to
    company id): every license key they list, as the console must hold it (`_wanted`)."""

    stale: dict[str, int]
    wanted: dict[str, tuple[Any, ...]]


def listed(
    listing: Mapping[str, Sequence[UpstreamLicense]],
    companies: Mapping[str, tuple[int, str | None]],
    digests: Mapping[str, str],
    inserted: Collection[str],
) -> Listed:
    """The listings of the companies `inserted` by the sync and of those whose kept digest
    (`companies`: public id to id and kept digest) differs from theirs. Plain Python over every
    listing (200,000 licenses in a first sync): for `computed` or `ahead`."""
    stale = {
        public_id: companies[public_id][0]
        for public_id, digest in digests.items()
        if public_id in inserted
        or ((held := companies.get(public_id)) is not None and held[1] != digest)
    }
    wanted: dict[str, tuple[Any, ...]] = {}
    for public_id, company_id in stale.items():
        for license in listing[public_id]:
            wanted[license.public_license_key] = _wanted(license, company_id)
    return Listed(stale, wanted)


@dataclass(slots=True)
class _Compared:
    """The listed licenses against those stored: keys to insert, rows to rewrite and to
    delete, the companies a license moved away from, the counters' moves of the rewritten and
    deleted (`LicenseChanges.held`), and the companies whose licenses change (where keys are
    added, deleted or rewritten, a moved key on both sides): only their usage lines change."""

    new_keys: list[str]
    changed: list[dict[str, Any]]
    gone: list[dict[str, Any]]
    left: set[int]
    held: list[tuple[int, dict[str, Any], int]]
    touched: set[int]


def _compare(
    wanted: Mapping[str, tuple[Any, ...]], rows: Iterable[dict[str, Any]], compared: set[int]
) -> _Compared:
    current = {row["public_license_key"]: row for row in rows}
    new_keys = [key for key in wanted if key not in current]
    changed_keys = [k for k, row in wanted.items() if k in current and _stored(current[k]) != row]
    changed = [_row(key, wanted[key], current[key]["id"]) for key in changed_keys]
    gone = [
        row for key, row in current.items() if key not in wanted and row["company_id"] in compared
    ]
    held = [(row["company_id"], row, -1) for row in gone]
    held += [(current[key]["company_id"], current[key], -1) for key in changed_keys]
    held += [(row["company_id"], row, 1) for row in changed]
    # a company a license moved away from no longer holds the listing its digest says
    left = {current[key]["company_id"] for key in wanted if key in current} - compared
    touched = {wanted[key][0] for key in (*new_keys, *changed_keys)}
    touched.update(current[key]["company_id"] for key in changed_keys)
    touched.update(row["company_id"] for row in gone)
    return _Compared(new_keys, changed, gone, left, held, touched)


def _records(
    wanted: Mapping[str, tuple[Any, ...]],
    new_keys: Sequence[str],
    ids: Sequence[int],
    fixed: tuple[Any, ...],
) -> tuple[list[tuple[Any, ...]], list[tuple[int, dict[str, Any], int]]]:
    """The rows of the new licenses (in `_NEW` order), and their `LicenseChanges.held`."""
    records = [
        (new_id, *row[:-1], _expiry_value(row[-1]), search_text(key, row[2]), key, *fixed)
        for key, new_id in zip(new_keys, ids, strict=True)
        for row in (wanted[key],)
    ]
    return records, _added(wanted[key] for key in new_keys)


@dataclass(slots=True)
class LicenseWrites:
    """The writes that make the licenses match the listings (`prepare`), and what they change
    (`changes`): worked out before they are written (`write`), so that the sync can work out
    its counters while the database takes the day's usage snapshot (`snapshot`)."""

    changes: LicenseChanges
    new: list[tuple[Any, ...]] = field(default_factory=list)  # rows in `_NEW` order, by `build`
    changed: list[dict[str, Any]] = field(default_factory=list)
    gone: list[dict[str, Any]] = field(default_factory=list)
    digests: list[dict[str, Any]] = field(default_factory=list)  # `_DIGEST_ROW`s
    touched: set[int] = field(default_factory=set)  # whose usage lines change
    unbuilt: tuple[Any, ...] | None = None  # what `build` makes the new rows of

    def build(self) -> None:
        """The new licenses' rows, and what they add to `changes.held`: plain computation (a
        first sync's 200,000 rows, 0.7 s), which the sync runs off the event loop while the
        database writes its groups (`ahead`); `write` builds what is left unbuilt."""
        if self.unbuilt is not None:
            self.new, added = _records(*self.unbuilt)
            self.changes.held += added
            self.unbuilt = None

    async def write(self, instance_id: int, now: dt.datetime) -> None:
        """At most one INSERT, UPDATE and DELETE of licenses, and one UPDATE of the companies'
        listing digests."""
        if self.unbuilt is not None:
            await computed(self.build)
        if self.new:
            await insert_records("license", _NEW, self.new)
        if self.changed:
            await db.execute(
                "UPDATE license SET company_id = x.company_id, product_code = x.product_code, "
                "product_name = x.product_name, seats = x.seats, activated = x.activated, "
                f"state = x.state, trial = x.trial, expires_at = {_expiry_sql('x.expires_at')}, "
                f"search_text = x.search_text, updated_at = ? FROM {rows_source(_ROW)} "
                "WHERE license.id = x.id",
                [now, encode_rows(self.changed)],
            )
        if self.gone:
            await db.execute(
                f"DELETE FROM license WHERE instance_id = ? AND id IN ({ids_source()})",
                [instance_id, encode_ids(row["id"] for row in self.gone)],
            )
        if self.digests:
            await update_rows("company", _DIGEST_ROW, self.digests, {})

    async def snapshot(self, instance_id: int, now: dt.datetime) -> None:
        """The day's usage snapshot after `write`: only the lines of the companies whose
        licenses it changed are rewritten, when the day has a snapshot already; the whole day
        when most of the instance's licenses are new (`rewrites_whole_day`)."""
        changed = None if self.rewrites_whole_day else self.touched
        await usage.record_snapshot(instance_id, now, changed=changed)

    @property
    def rewrites_whole_day(self) -> bool:
        """Whether most of the licenses are new: a first sync after the day's scheduled
        snapshot. PostgreSQL's statistics know nothing of rows this transaction wrote, and
        planned a list of 100,000 companies against them as a nested loop (over ten minutes);
        the whole day reads no list, and costs what the sync's inserts did."""
        return self.changes.created * 2 > self.changes.seen


async def prepare(
    instance_id: int,
    listing: Mapping[str, Sequence[UpstreamLicense]],
    asked: Listed,
    digests: Mapping[str, str],
    now: dt.datetime,
    inserted: Collection[str] = (),
    unlinking: Collection[int] = (),
) -> LicenseWrites:
    """The writes that make the licenses of the companies in `listing` (by public id) match
    it: `asked` are the `listed` ones whose licenses may differ (a company left out holds its
    listing already), `digests` the listings' `listing_digests`. Reads the licenses it
    compares (inside the sync's transaction, after its companies are written: those `inserted`
    with their digests; those it is `unlinking` maybe not yet); the comparisons run off the
    event loop, the new rows are left to `LicenseWrites.build`."""
    writes = LicenseWrites(LicenseChanges(seen=sum(map(len, listing.values()))))
    wanted = asked.wanted
    if not asked.stale:
        return writes
    # a company inserted by this sync holds no license yet: nothing of it to read
    compared = {company_id for p, company_id in asked.stale.items() if p not in inserted}
    rows = await db.fetch(*compared_licenses(instance_id, compared, unlinking))
    diff = await computed(_compare, wanted, rows, compared)
    changes = writes.changes
    changes.held += diff.held
    if diff.new_keys:
        ids = (await reserve_ids({"license": len(diff.new_keys)}))["license"]
        writes.unbuilt = (wanted, diff.new_keys, ids, (instance_id, now, now))
        changes.created = len(ids)
        changes.changed_ids += ids
    writes.changed, writes.gone = diff.changed, diff.gone
    changes.updated, changes.removed = len(diff.changed), len(diff.gone)
    changes.changed_ids += [row["id"] for row in diff.changed]
    writes.digests = [
        {"id": company_id, "license_digest": digests[public_id]}
        for public_id, company_id in asked.stale.items()
        if public_id not in inserted  # inserted with it
    ]
    writes.digests += [{"id": company_id, "license_digest": None} for company_id in diff.left]
    writes.touched = diff.touched
    return writes
