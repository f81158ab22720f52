"""What a reconcile plan starts from: the companies an upstream snapshot asks for (`Wanted`,
checked to fit the columns) and the instance's rows as loaded (`CompanyRow`, `GroupRow`: what
the upstream decides, not the layout, which follows from it)."""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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


@contextmanager
def no_collection() -> Iterator[None]:
    """No cyclic garbage collection during a stretch of plain Python that builds a few hundred
    thousand objects and no cycles: collections triggered by the allocations would walk the
    growing heap again and again (a quarter of a 100,000-company plan). Never across an await."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_holding_full_collections = 0  # syncs of this process running under `no_full_collection`
_full_collection_threshold = 0  # the oldest generation's threshold before the first of them


@contextmanager
def no_full_collection() -> Iterator[None]:
    """No full (oldest-generation) cyclic garbage collection while a sync holds a snapshot in
    memory: each one walks every object of it, and one ran whenever the heap had grown by a
    quarter (5 during the three syncs of the sync benchmark at 20,000 companies, holding the
    worker's other requests up to 0.19 s each time, more the larger the instance). The young
    generations are still collected, so the cycles a request leaves behind go as they come;
    once the last sync ends, the threshold is back. Across awaits (unlike `no_collection`)."""
    global _holding_full_collections, _full_collection_threshold
    young, middle, oldest = gc.get_threshold()
    if _holding_full_collections == 0:
        _full_collection_threshold = oldest
        gc.set_threshold(young, middle, 1 << 30)  # young collections between two full ones
    _holding_full_collections += 1
    try:
        yield
    finally:
        _holding_full_collections -= 1
        if _holding_full_collections == 0:
            young, middle, _ = gc.get_threshold()
            gc.set_threshold(young, middle, _full_collection_threshold)


def wanted_companies(snapshot: UpstreamSnapshot) -> dict[str, Wanted]:
    """The companies a snapshot asks for, top first: ancestors (read-only), the account's own
    company, then its descendants, each parent before its children; refused, before anything
    is asked or written, when a value does not fit its column (`check_fits`)."""
    wanted: dict[str, Wanted] = {}
    for _ in wanting(snapshot, wanted):
        pass
    return wanted


COMPANIES_PER_TURN = 2_000
"""Companies a sync handles between two turns of the event loop: some 10 ms of work."""


def wanting(
    snapshot: UpstreamSnapshot, wanted: dict[str, Wanted], per_turn: int = COMPANIES_PER_TURN
) -> Iterator[None]:
    """`wanted_companies` into `wanted`, in turns: the first checks every value (`check_fits`)
    and takes the ancestors, each next one `per_turn` companies. Between turns an async caller
    lets other tasks run: a sync builds 100,000 companies (half a second of CPU) between its
    license reads, instead of holding the worker's other requests that long."""
    check_fits(snapshot)
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
    yield
    types, values = COMPANY_TYPE, _TYPE_VALUES
    root, companies = snapshot.root, snapshot.companies
    for start in range(0, len(companies), per_turn):
        with no_collection():
            for company in companies[start : start + per_turn]:
                name, code, email, custom = (
                    company.name,
                    company.type,
                    company.email,
                    company.custom_identifier,
                )
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
        yield
