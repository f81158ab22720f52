"""Applying the licenses read in a sync, inside the sync's apply transaction, with a fixed set of
statements whatever their number: one read, then at most one INSERT, one UPDATE and one DELETE
(rows travel as one JSON parameter, see `server.models.bulk`), then the day's usage snapshot.

Only the companies that were asked are reconciled: a license of a company missing upstream (an
unlinked company, kept) stays as it is, like its company. A key that moves to another company
moves with it. A license gone from its company's listing is deleted; the usage ledger keeps no
reference to it, so the days it was billed stay in the reports.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from server.domain import usage
from server.domain.licenses import search_text
from server.models import db
from server.models.bulk import encode_ids, encode_rows, ids_source, reserve_ids, rows_source
from server.models.enums import LicenseState
from server.upstream.licenses import UpstreamLicense

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
_NEW = {**_ROW, "public_license_key": "text"}
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


@dataclass(slots=True)
class LicenseChanges:
    """What a sync did to the licenses; `changed_ids` are the created and updated ones (the
    `licenseChanged` events)."""

    seen: int = 0
    created: int = 0
    updated: int = 0
    removed: int = 0
    changed_ids: list[int] = field(default_factory=list)


def expires_at(date: dt.date | None) -> dt.datetime | None:
    return dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC) if date else None


def _stored_time(value: Any) -> str | None:
    """A stored or wanted expiry as one comparable text, spelled as the database keeps it
    (SQLite compares the text: `str()` of a UTC datetime, like every stored datetime)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return str(value.astimezone(dt.UTC))


def _wanted_row(license: UpstreamLicense, company_id: int) -> dict[str, Any]:
    return {
        "company_id": company_id,
        "product_code": license.product_code,
        "product_name": license.product_name,
        "seats": license.quantity,
        "activated": license.usage,
        "state": STATES[license.state].value,
        "trial": license.is_trial,
        "expires_at": _stored_time(expires_at(license.expiration_date)),
        "search_text": search_text(license.public_license_key, license.product_name),
    }


def _expiry_sql(column: str) -> str:
    """JSON carries the expiry as text; PostgreSQL stores it as a timestamp."""
    return f"CAST({column} AS timestamptz)" if db.is_postgres() else column


async def apply_licenses(
    instance_id: int,
    listing: Mapping[str, Sequence[UpstreamLicense]],
    company_ids: Mapping[str, int],
    now: dt.datetime,
) -> LicenseChanges:
    """Make the licenses of the companies in `listing` (by public id; `company_ids` maps them
    to the console's ids) match it, then take the day's usage snapshot. Call inside the
    sync's transaction, after its companies are written."""
    changes = LicenseChanges()
    rows = await db.fetch(
        "SELECT id, public_license_key, company_id, product_code, product_name, seats, "
        "activated, state, trial, expires_at FROM license WHERE instance_id = ?",
        [instance_id],
    )
    current = {row["public_license_key"]: row for row in rows}
    asked = {company_ids[public_id] for public_id in listing}
    wanted: dict[str, dict[str, Any]] = {}
    for public_id, licenses in listing.items():
        for license in licenses:
            wanted[license.public_license_key] = _wanted_row(license, company_ids[public_id])
    changes.seen = len(wanted)
    new_keys = [key for key in wanted if key not in current]
    changed: list[dict[str, Any]] = []
    for key, row in wanted.items():
        before = current.get(key)
        if before is None:
            continue
        stored = {
            **{name: before[name] for name in _COMPARED},
            "trial": bool(before["trial"]),
            "expires_at": _stored_time(before["expires_at"]),
        }
        if any(stored[name] != row[name] for name in _COMPARED):
            changed.append({**row, "id": before["id"]})
    gone = [
        row["id"]
        for key, row in current.items()
        if key not in wanted and row["company_id"] in asked
    ]
    if new_keys:
        ids = (await reserve_ids({"license": len(new_keys)}))["license"]
        created = [
            {**wanted[key], "id": new_id, "public_license_key": key}
            for key, new_id in zip(new_keys, ids, strict=True)
        ]
        await db.execute(
            "INSERT INTO license (id, instance_id, company_id, public_license_key, product_code, "
            "product_name, seats, activated, state, trial, expires_at, search_text, created_at, "
            "updated_at) SELECT x.id, ?, x.company_id, x.public_license_key, x.product_code, "
            f"x.product_name, x.seats, x.activated, x.state, x.trial, "
            f"{_expiry_sql('x.expires_at')}, x.search_text, ?, ? FROM {rows_source(_NEW)}",
            [instance_id, now, now, encode_rows(created)],
        )
        changes.created = len(created)
        changes.changed_ids += ids
    if changed:
        await db.execute(
            "UPDATE license SET company_id = x.company_id, product_code = x.product_code, "
            "product_name = x.product_name, seats = x.seats, activated = x.activated, "
            f"state = x.state, trial = x.trial, expires_at = {_expiry_sql('x.expires_at')}, "
            f"search_text = x.search_text, updated_at = ? FROM {rows_source(_ROW)} "
            "WHERE license.id = x.id",
            [now, encode_rows(changed)],
        )
        changes.updated = len(changed)
        changes.changed_ids += [row["id"] for row in changed]
    if gone:
        await db.execute(
            f"DELETE FROM license WHERE instance_id = ? AND id IN ({ids_source()})",
            [instance_id, encode_ids(gone)],
        )
        changes.removed = len(gone)
    await usage.record_snapshot(instance_id, now)
    return changes
