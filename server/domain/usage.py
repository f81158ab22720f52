"""The usage ledger an MSP bills from: daily snapshots of the seats licenses order, and the
monthly report read from them.

A snapshot writes, for one instance and day, the seats of the billable licenses (ACTIVE, not
trial) per company and product, replacing what the day held: a day's seat-days are the seats
of its last snapshot. One is taken after every sync (in the sync's transaction) and one a day
at `MSP_CONSOLE_USAGE_SNAPSHOT_AT` by whichever process first inserts the day's `usage_day`
row (unique per instance and day: a claim that holds across workers and hosts). A day nobody
snapshotted stays missing; the report counts only the days it has.

The report pages through companies in tree order that have usage in the month, one statement
per page whatever the month's size; the CSV streams the same pages.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Any

from server.domain.access import Scope
from server.domain.counters import COUNT_CAP
from server.domain.errors import InvalidInput
from server.domain.instances import keep_from_removal
from server.domain.listing import Page, PageRequest, encode_cursor
from server.models import db
from server.models.bulk import encode_ids, ids_source, typed_param
from server.models.enums import Area, LicenseState

MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")  # ASCII digits only
SCHEDULED, AFTER_SYNC = "schedule", "sync"
CSV_PAGE = 500  # companies per statement of the CSV export
CSV_HEADER = (
    "company_public_id",
    "company",
    "custom_identifier",
    "product_code",
    "product",
    "seat_days",
    "average_seats",
    "peak_seats",
)


def parse_month(month: str) -> tuple[dt.date, dt.date]:
    """[first day, first day of the next month) of a `YYYY-MM` month."""
    found = MONTH.fullmatch(month) if isinstance(month, str) else None
    if found is None or int(found.group(1)) < 1:
        raise InvalidInput("month must be YYYY-MM, e.g. 2026-11", "month")
    year, number = int(found.group(1)), int(found.group(2))
    start = dt.date(year, number, 1)
    if number == 12:
        return start, dt.date(year + 1, 1, 1) if year < 9999 else dt.date.max
    return start, dt.date(year, number + 1, 1)


def _date(param: str = "?") -> str:
    """A date parameter in a SELECT list (PostgreSQL cannot infer its type there)."""
    return f"CAST({param} AS date)" if db.is_postgres() else param


# -- snapshots --------------------------------------------------------------------------------


async def _write_lines(
    instance_id: int, day: dt.date, company_ids: Collection[int] | None = None
) -> None:
    """The day's lines as the licenses stand now: of every company, or of `company_ids`."""

    def only(column: str) -> str:
        return "" if company_ids is None else f" AND {column} IN ({ids_source()})"

    chosen = [] if company_ids is None else [encode_ids(company_ids)]
    await db.execute(
        f"DELETE FROM usage_line WHERE instance_id = ? AND day = ?{only('company_id')}",
        [instance_id, day, *chosen],
    )
    await db.execute(
        "INSERT INTO usage_line (instance_id, day, company_id, product_code, product_name, "
        "seats, activated, licenses) "
        f"SELECT l.instance_id, {_date()}, l.company_id, l.product_code, MAX(l.product_name), "
        "SUM(l.seats), SUM(l.activated), COUNT(*) FROM license l "
        f"WHERE l.instance_id = ? AND l.state = ? AND l.trial = ?{only('l.company_id')} "
        "GROUP BY l.instance_id, l.company_id, l.product_code",
        [day, instance_id, LicenseState.ACTIVE.value, False, *chosen],
    )


async def record_snapshot(
    instance_id: int, now: dt.datetime, *, changed: Collection[int] | None = None
) -> None:
    """The day's snapshot as the licenses stand now, replacing the day's earlier one; runs in
    the caller's transaction (the sync's). A sync says which companies' licenses it `changed`:
    when the day has a snapshot already, only their lines are rewritten (the others' would
    come out the same: only the sync writes licenses), so a sync costs what it changed, not
    the instance's size."""
    day = now.astimezone(dt.UTC).date()
    if changed is not None:
        marked = await db.execute(
            "UPDATE usage_day SET taken_at = ?, trigger = ? WHERE instance_id = ? AND day = ?",
            [now, AFTER_SYNC, instance_id, day],
        )
        if marked:
            if changed:
                await _write_lines(instance_id, day, changed)
            return
    await db.execute(
        "INSERT INTO usage_day (instance_id, day, taken_at, trigger) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (instance_id, day) DO UPDATE SET taken_at = excluded.taken_at, "
        "trigger = excluded.trigger",
        [instance_id, day, now, AFTER_SYNC],
    )
    await _write_lines(instance_id, day)


async def take_scheduled_snapshot(instance_id: int, now: dt.datetime) -> bool:
    """The day's scheduled snapshot, if no process (nor a sync) took one today; returns
    whether this call took it. The claim and the lines commit together, while the instance is
    kept from its removal (InstanceRemoved once it is gone)."""
    day = now.astimezone(dt.UTC).date()
    async with db.transaction():
        await keep_from_removal(instance_id)
        claimed = await db.fetch(
            "INSERT INTO usage_day (instance_id, day, taken_at, trigger) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (instance_id, day) DO NOTHING RETURNING id",
            [instance_id, day, now, SCHEDULED],
        )
        if not claimed:
            return False
        await _write_lines(instance_id, day)
    return True


async def instances_without_snapshot(now: dt.datetime) -> list[int]:
    """Connected instances whose day (UTC) has no snapshot yet."""
    rows = await db.fetch(
        "SELECT i.id AS id FROM instance i WHERE i.upstream_url IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM usage_day d WHERE d.instance_id = i.id AND d.day = ?) ORDER BY i.id",
        [now.astimezone(dt.UTC).date()],
    )
    return [row["id"] for row in rows]


def snapshot_due(now: dt.datetime, at: dt.time) -> bool:
    """Whether today's scheduled snapshot time (UTC) has come."""
    now = now.astimezone(dt.UTC)
    return now.time().replace(tzinfo=None) >= at


# -- the report -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One company and product over a month."""

    company_id: int
    company_sort_key: str
    company_public_id: str
    company_name: str
    custom_identifier: str | None
    product_code: int
    product_name: str
    seat_days: int
    peak_seats: int
    days: int  # days of the month with a snapshot

    @property
    def average_seats(self) -> float:
        return self.seat_days / self.days if self.days else 0.0

    @property
    def cursor(self) -> str:
        return encode_cursor([self.company_sort_key, self.company_id, self.product_code])


def _cursor_values(after: tuple[Any, ...] | None) -> tuple[str, int, int] | None:
    if after is None:
        return None
    sort_key, company_id, product_code = after
    if not isinstance(sort_key, str) or not isinstance(company_id, int):
        raise InvalidInput("malformed cursor in after", "after")
    if not isinstance(product_code, int):
        raise InvalidInput("malformed cursor in after", "after")
    return sort_key, company_id, product_code


def _companies(
    scope: Scope, start: dt.date, end: dt.date, after: tuple[str, int, int] | None, limit: int
) -> tuple[str, list[Any]]:
    """The `page` of up to `limit` companies in tree order (from `after`'s on) with usage in
    the month, as a WITH clause: a walk in tree order, one probe of the ledger index each,
    that stops at `limit`; no walk at all when one probe finds the month empty. A company's
    probe is a scalar subquery, not EXISTS: PostgreSQL makes an EXISTS a join that first reads
    every company of the month's ledger."""
    condition, params = scope.sql("c.path", Area.LICENSES)
    sort_key = db.text_order("c.sort_key")
    keyset, keyset_params = "", []
    if after is not None:
        keyset = f"AND ({sort_key}, c.id) >= (?, ?) "
        keyset_params = [after[0], after[1]]
    # the instance, or NULL (an index range of nothing) when none of its companies has usage
    # in the month: a month before the instance, or without a license yet, walked them all
    instance = (
        "CASE WHEN EXISTS (SELECT 1 FROM usage_line e WHERE e.instance_id = ? AND e.day >= ? "
        f"AND e.day < ?) THEN {typed_param('int')} END"
    )
    sql = (
        "WITH page AS (SELECT c.id AS id FROM company c "
        f"WHERE c.instance_id = ({instance}) AND {condition} {keyset}AND (SELECT 1 "
        "FROM usage_line u WHERE u.company_id = c.id AND u.day >= ? AND u.day < ? LIMIT 1) "
        f"IS NOT NULL ORDER BY {sort_key}, c.id LIMIT ?) "
    )
    month = [scope.instance_id, start, end, scope.instance_id]
    return sql, [*month, *params, *keyset_params, start, end, limit]


def _sums_sql(
    scope: Scope, start: dt.date, end: dt.date, after: tuple[str, int, int] | None, limit: int
) -> tuple[str, list[Any]]:
    """A row per company and product of up to `limit` companies (`_companies`), with the
    month's sums, read off the ledger's (company, day, product, seats, name) index: no ledger
    row is read. On PostgreSQL a LATERAL subquery has each company drive its own index range:
    as a join, the planner may read the month's ledger first."""
    page, params = _companies(scope, start, end, after, limit)
    month = "u.day >= ? AND u.day < ?"
    sums = (
        "u.product_code AS product_code, MAX(u.product_name) AS product_name, "
        "SUM(u.seats) AS seat_days, MAX(u.seats) AS peak_seats"
    )
    if db.is_postgres():
        columns = "u.product_code, u.product_name, u.seat_days, u.peak_seats"
        source = (
            f"CROSS JOIN LATERAL (SELECT {sums} FROM usage_line u WHERE u.company_id = p.id "
            f"AND {month} GROUP BY u.product_code) u "
        )
        group = ""
    else:
        columns, source = sums, f"JOIN usage_line u ON u.company_id = p.id AND {month} "
        group = (
            "GROUP BY c.id, c.sort_key, c.public_id, c.name, c.custom_identifier, u.product_code "
        )
    sql = (
        f"{page}SELECT c.id AS company_id, c.sort_key AS sort_key, c.public_id AS public_id, "
        f"c.name AS name, c.custom_identifier AS custom_identifier, {columns}, "
        "(SELECT COUNT(*) FROM usage_day d WHERE d.instance_id = ? AND d.day >= ? "
        "AND d.day < ?) AS days "
        f"FROM page p JOIN company c ON c.id = p.id {source}{group}"
    )
    return sql, [*params, scope.instance_id, start, end, start, end]


def page_sql(
    scope: Scope, start: dt.date, end: dt.date, after: tuple[str, int, int] | None, size: int
) -> tuple[str, list[Any]]:
    """The statement of a page: every product of `size` + 2 companies (the cursor's company
    may have nothing left after the cursor), in order."""
    sql, params = _sums_sql(scope, start, end, after, size + 2)
    return f"{sql}ORDER BY {db.text_order('c.sort_key')}, c.id, u.product_code", params


async def _rows(
    scope: Scope, start: dt.date, end: dt.date, after: tuple[str, int, int] | None, size: int
) -> tuple[list[UsageRow], bool]:
    """Up to `size` rows after `after`, and whether more follow: one statement."""
    found = await db.fetch(*page_sql(scope, start, end, after, size))
    rows = [
        UsageRow(
            company_id=int(row["company_id"]),
            company_sort_key=row["sort_key"],
            company_public_id=row["public_id"],
            company_name=row["name"],
            custom_identifier=row["custom_identifier"],
            product_code=int(row["product_code"]),
            product_name=row["product_name"],
            seat_days=int(row["seat_days"]),
            peak_seats=int(row["peak_seats"]),
            days=int(row["days"]),
        )
        for row in found
    ]
    if after is not None:
        rows = [r for r in rows if r.company_id != after[1] or r.product_code > after[2]]
    return rows[:size], len(rows) > size


async def report_page(scope: Scope, month: str, request: PageRequest) -> Page[UsageRow]:
    """A page of the month's report for the viewer (forwards only)."""
    start, end = parse_month(month)
    after = _cursor_values(request.after)
    size = request.first if request.first is not None else 0
    rows, more = await _rows(scope, start, end, after, size)
    return Page(rows, [r.cursor for r in rows], more, after is not None)


def count_sql(scope: Scope, start: dt.date, end: dt.date) -> tuple[str, list[Any]]:
    """The rows of at most COUNT_CAP + 1 companies (each has one at least), up to one more
    than COUNT_CAP, counted."""
    sql, params = _sums_sql(scope, start, end, None, COUNT_CAP + 1)
    return f"SELECT COUNT(*) AS n FROM ({sql}LIMIT {COUNT_CAP + 1}) x", params


async def report_count(scope: Scope, month: str) -> tuple[int, bool]:
    """Rows (company and product) of the month's report the viewer may see, counted up to
    COUNT_CAP, and whether exactly: no counter holds them, and counting them all read the
    month's whole ledger."""
    start, end = parse_month(month)
    n = int(await db.fetch_value(*count_sql(scope, start, end)) or 0)
    return min(n, COUNT_CAP), n <= COUNT_CAP


async def report_rows(
    scope: Scope, month: str, page_size: int = CSV_PAGE
) -> AsyncIterator[UsageRow]:
    """Every row of the month's report, `page_size` at a time (the CSV export): what is held
    in memory is one page, whatever the month's size."""
    start, end = parse_month(month)
    after: tuple[str, int, int] | None = None
    while True:
        rows, more = await _rows(scope, start, end, after, page_size)
        for row in rows:
            yield row
        if not more or not rows:
            return
        last = rows[-1]
        after = (last.company_sort_key, last.company_id, last.product_code)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str | None) -> str:
    """Text from the upstream as a spreadsheet cell that is never run as a formula (OWASP's
    CSV injection advice: a leading quote)."""
    text = text or ""
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def csv_values(row: UsageRow) -> list[Any]:
    """A report row as the CSV export spells it (`CSV_HEADER`)."""
    return [
        _cell(row.company_public_id),
        _cell(row.company_name),
        _cell(row.custom_identifier),
        row.product_code,
        _cell(row.product_name),
        row.seat_days,
        f"{row.average_seats:.2f}",
        row.peak_seats,
    ]


async def csv_chunks(scope: Scope, month: str, page_size: int = CSV_PAGE) -> AsyncIterator[str]:
    """The month's report as CSV text (RFC 4180, header first), one chunk per page of rows."""
    parse_month(month)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    written = 0
    async for row in report_rows(scope, month, page_size):
        writer.writerow(csv_values(row))
        written += 1
        if written % page_size == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
