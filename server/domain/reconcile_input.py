"""What a reconcile plan starts from: the companies an upstream snapshot asks for (`Wanted`,
checked to fit the columns) and the instance's rows as loaded (`CompanyRow`, `GroupRow`: what
the upstream decides, not the layout, which follows from it)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import orjson

from server.models import Company
from server.models.enums import CompanyType
from server.upstream.codes import COMPANY_TYPE
from server.upstream.errors import UpstreamProtocolError
from server.upstream.records import UpstreamCompany, UpstreamCompanyRef, UpstreamSnapshot


@dataclass(slots=True)
class Wanted:
    """A company as the snapshot wants it; ancestors carry no status or details (kept)."""

    public_id: str
    name: str
    type: CompanyType
    parent: str | None
    read_only: bool
    status: int | None
    email: str | None
    custom_identifier: str | None
    details: bool
    digest: str
    """What the upstream decides of the company, fingerprinted (`_digest`): stored with its
    row, so a sync sees the company unchanged without reading the row (`upstream_digest`)."""


def _digest(values: tuple[object, ...]) -> str:
    """(name, type, parent, read-only), then, unless an ancestor's (kept as they are), status,
    email and custom identifier."""
    return hashlib.blake2b(orjson.dumps(values), digest_size=8).hexdigest()


_TYPES = {kind.value: kind for kind in CompanyType}


@dataclass(slots=True)
class CompanyRow:
    """A company as stored (or, `new`, as it will be inserted), without its layout."""

    id: int
    public_id: str
    name: str
    type: CompanyType
    parent_id: int | None
    status: int
    email: str | None
    custom_identifier: str | None
    read_only: bool
    unlinked: bool
    unlink_reason: str | None
    group_id: int
    upstream_digest: str | None = None  # as stored: `Wanted.digest` when last written
    license_digest: str | None = None  # as stored: see `license_reconcile`
    new: bool = False

    @classmethod
    def of(cls, row: Sequence[Any]) -> CompanyRow:
        """From a row of `COMPANY_COLUMNS`."""
        return cls(
            row[0],
            row[1],
            row[2],
            _TYPES[row[3]],
            row[4],
            row[5],
            row[6],
            row[7],
            bool(row[8]),
            bool(row[9]),
            row[10],
            row[11],
            row[12],
            row[13],
        )


@dataclass(slots=True)
class GroupRow:
    """A static group that is not a company's own group (those follow their companies)."""

    id: int
    name: str
    kind: str
    parent_id: int | None
    company_id: int | None = None

    @classmethod
    def of(cls, row: Sequence[Any]) -> GroupRow:
        """From a row of `GROUP_COLUMNS`."""
        return cls(row[0], row[1], row[2], row[3], row[4])


COMPANY_COLUMNS = (
    "c.id, c.public_id, c.name, c.type, c.parent_id, c.upstream_status, c.email, "
    "c.custom_identifier, c.read_only, c.unlinked_at IS NOT NULL, c.unlink_reason, g.id, "
    "c.upstream_digest, c.license_digest"
)
"""What `CompanyRow.of` reads, from `company c` joined to its own group `g`."""
GROUP_COLUMNS = "g.id, g.name, g.kind, g.parent_id, g.company_id"
"""What `GroupRow.of` reads of a group row `g` (every group but the companies' own)."""

_STORED_TEXT = {
    "public_id": "publicId",
    "name": "name",
    "email": "email",
    "custom_identifier": "customIdentifier",
}
_REF_TEXT = ("public_id", "name")  # what an `UpstreamCompanyRef` holds of those
_TYPE_VALUES = {code: kind.value for code, kind in COMPANY_TYPE.items()}


def check_fits(snapshot: UpstreamSnapshot) -> None:
    """Refuse, before any write, a company with a value longer than its column holds (SQLite
    would keep it whole, PostgreSQL would fail mid-apply)."""
    fields = Company._meta.fields_map
    companies = snapshot.companies
    for name, label in _STORED_TEXT.items():
        limit = int(fields[name].constraints["max_length"])
        held: tuple[UpstreamCompanyRef | UpstreamCompany, ...] = companies
        if name in _REF_TEXT:  # ancestors are named in passing: these two only
            held = (*snapshot.ancestors, *companies)
        if max(map(len, filter(None, map(attrgetter(name), held))), default=0) <= limit:
            continue
        company = next(c for c in held if len(getattr(c, name) or "") > limit)
        raise UpstreamProtocolError(
            f"MSP Administrator company {company.public_id[:64]} has a {label} of "
            f"{len(getattr(company, name))} characters; the console holds at most {limit}"
        )


def wanted_companies(snapshot: UpstreamSnapshot, *, checked: bool = False) -> dict[str, Wanted]:
    """The companies a snapshot asks for, top first: ancestors (read-only), the account's own
    company, then its descendants, each parent before its children; refused, before anything
    is asked or written, when a value does not fit its column (`check_fits`, unless the caller
    did: a sync checks before it asks for licenses, and builds these while it reads them)."""
    if not checked:
        check_fits(snapshot)
    wanted: dict[str, Wanted] = {}
    parent: str | None = None
    for ref in snapshot.ancestors:
        kind = COMPANY_TYPE[ref.type]
        wanted[ref.public_id] = Wanted(
            ref.public_id,
            ref.name,
            kind,
            parent,
            True,
            None,
            None,
            None,
            False,
            _digest((ref.name, kind.value, parent, True)),
        )
        parent = ref.public_id
    types, values, root = COMPANY_TYPE, _TYPE_VALUES, snapshot.root
    for company in snapshot.companies:
        name, code = company.name, company.type
        email, custom = company.email, company.custom_identifier
        above = parent if company is root else company.parent_id
        digest = _digest((name, values[code], above, False, company.status, email, custom))
        wanted[company.public_id] = Wanted(
            company.public_id,
            name,
            types[code],
            above,
            False,
            company.status,
            email,
            custom,
            True,
            digest,
        )
    return wanted
