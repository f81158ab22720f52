"""Keyset pagination over raw SQL: cursors hold the sort key of a row, so they stay valid while
rows are inserted or deleted around them, and every page is one indexed statement."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
from tortoise.models import Model

from server.domain.errors import InvalidInput
from server.models import db

M = TypeVar("M", bound=Model)
T = TypeVar("T")  # what a page holds: model rows, or rows a report computes
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
MAX_CURSOR_LENGTH = 4096


class InvalidPageRequest(InvalidInput):
    """first/last out of range, both given, or a cursor this API did not make."""


def sql_in(column: str, values: Sequence[Any]) -> tuple[Any, ...]:
    """`column IN (?, ...)` followed by its values, to splat into `Listing.filter`."""
    return (f"{column} IN ({', '.join('?' for _ in values)})", *values)


@dataclass(frozen=True, slots=True)
class PageRequest:
    first: int | None = None
    after: tuple[Any, ...] | None = None
    last: int | None = None
    before: tuple[Any, ...] | None = None

    @classmethod
    def parse(
        cls,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        *,
        key_length: int,
    ) -> PageRequest:
        for name, value in (("first", first), ("last", last)):
            if value is not None and not 0 <= value <= MAX_PAGE_SIZE:
                raise InvalidPageRequest(f"{name} must be between 0 and {MAX_PAGE_SIZE}", name)
        if first is not None and last is not None:
            raise InvalidPageRequest("pass first or last, not both", "last")
        if first is None and last is None:
            first = DEFAULT_PAGE_SIZE
        return cls(
            first,
            decode_cursor(after, key_length, "after"),
            last,
            decode_cursor(before, key_length, "before"),
        )

    @property
    def backwards(self) -> bool:
        return self.last is not None

    @property
    def size(self) -> int:
        return self.last if self.last is not None else (self.first or 0)


def encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def decode_cursor(cursor: str | None, key_length: int, name: str) -> tuple[Any, ...] | None:
    if cursor is None:
        return None
    if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR_LENGTH:
        raise InvalidPageRequest(f"malformed cursor in {name}", name)
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidPageRequest(f"malformed cursor in {name}", name) from None
    if (
        not isinstance(values, list)
        or len(values) != key_length
        or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values)
    ):
        raise InvalidPageRequest(f"malformed cursor in {name}", name)
    return tuple(values)


@dataclass(slots=True)
class Page(Generic[T]):
    items: list[T]
    cursors: list[str]
    has_next: bool
    has_previous: bool


@dataclass(slots=True)
class Listing(Generic[M]):
    """A filtered, ordered set of rows of one model: `SELECT <alias>.* FROM <source> WHERE ...`.

    `order` are SQL expressions (ascending, the last one unique); `key` the row attributes
    that carry the same values, for cursors. `text_keys` marks keys compared byte-wise.
    """

    model: type[M]
    source: str
    alias: str
    order: tuple[str, ...]
    key: tuple[str, ...]
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    text_keys: frozenset[str] = frozenset()
    descending: bool = False  # newest first, for instance
    low_end: tuple[int, int] | None = None  # where `between` put its condition and its low end

    def filter(self, condition: str, *params: Any) -> Listing[M]:
        self.where.append(condition)
        self.params.extend(params)
        return self

    def between(self, low: str, high: str) -> Listing[M]:
        """The first order key strictly between `low` and `high`: an index range. A page after
        a cursor inside it starts the range at the cursor: SQLite walks an index from one lower
        bound of a column (the first written), so with the row comparison alone every page
        would read the range from `low` to the cursor, and a whole walk would be quadratic."""
        self.low_end = (len(self.where), len(self.params))
        first = self.order[0]
        return self.filter(f"{first} > ? AND {first} < ?", low, high)

    def _where_sql(self, extra: Sequence[str] = (), where: Sequence[str] | None = None) -> str:
        conditions = [*(self.where if where is None else where), *extra]
        return " AND ".join(conditions) if conditions else "1=1"

    def _ordered(self) -> list[str]:
        return [db.text_order(expr) if expr in self.text_keys else expr for expr in self.order]

    def _after(self, values: tuple[Any, ...], op: str, name: str) -> tuple[str, list[Any]]:
        for key, value in zip(self.key, values, strict=True):
            field = self.model._meta.fields_map.get(key)
            wanted = getattr(field, "field_type", None)
            # a text where a number goes (or the reverse) would reach the driver and fail there
            if wanted in (int, str) and type(value) is not wanted:
                raise InvalidPageRequest(f"malformed cursor in {name}", name)
        columns = ", ".join(self._ordered())
        marks = ", ".join("?" for _ in values)
        return f"({columns}) {op} ({marks})", list(values)

    def _key_of(self, item: M) -> tuple[Any, ...]:
        return tuple(getattr(item, name) for name in self.key)

    def cursor_of(self, item: M) -> str:
        return encode_cursor([getattr(item, name) for name in self.key])

    def page_sql(self, request: PageRequest) -> tuple[str, list[Any]]:
        """The one statement of a page (for `page`, and for the query-plan tests)."""
        extra: list[str] = []
        where, params = list(self.where), list(self.params)
        if self.low_end is not None and request.after is not None and not self.descending:
            at, low_at = self.low_end
            start = request.after[0]
            # a cursor outside the range (made up, or from another listing) keeps `low`
            if isinstance(start, str) and start > params[low_at]:
                first = self.order[0]
                where[at], params[low_at] = f"{first} >= ? AND {first} < ?", start
        later, earlier = ("<", ">") if self.descending else (">", "<")
        if request.after is not None:
            condition, values = self._after(request.after, later, "after")
            extra.append(condition)
            params += values
        if request.before is not None:
            condition, values = self._after(request.before, earlier, "before")
            extra.append(condition)
            params += values
        direction = "DESC" if request.backwards != self.descending else "ASC"
        order_sql = ", ".join(f"{expr} {direction}" for expr in self._ordered())
        sql = (
            f"SELECT {self.alias}.* FROM {self.source} WHERE {self._where_sql(extra, where)} "
            f"ORDER BY {order_sql} LIMIT ?"
        )
        return sql, [*params, request.size + 1]

    async def page(self, request: PageRequest) -> Page[M]:
        rows = await db.fetch(*self.page_sql(request))
        more = len(rows) > request.size
        rows = rows[: request.size]
        if request.backwards:
            rows.reverse()
        items = [db.from_row(self.model, row) for row in rows]
        return Page(
            items=items,
            cursors=[self.cursor_of(item) for item in items],
            has_next=more if not request.backwards else request.before is not None,
            has_previous=more if request.backwards else request.after is not None,
        )

    async def count(self) -> int:
        value = await db.fetch_value(
            f"SELECT COUNT(*) AS n FROM {self.source} WHERE {self._where_sql()}", self.params
        )
        return int(value or 0)

    async def count_capped(self, cap: int) -> tuple[int, bool]:
        """The count up to `cap`, and whether it is exact: reads at most cap + 1 rows."""
        value = await db.fetch_value(
            f"SELECT COUNT(*) AS n FROM (SELECT 1 FROM {self.source} "
            f"WHERE {self._where_sql()} LIMIT {int(cap) + 1}) t",
            self.params,
        )
        n = int(value or 0)
        return min(n, cap), n <= cap

    def pages_by_sql(
        self, column: str, values: Sequence[Any], request: PageRequest
    ) -> tuple[str, list[Any]]:
        """One statement for `pages_by`: for each value (a JSON parameter read as a table), a
        limited, ordered subquery, so each page reads its rows off an index and stops (a
        LATERAL join on PostgreSQL; on SQLite, a correlated `IN` driving key lookups)."""
        size = request.first or 0
        direction = "DESC" if self.descending else "ASC"
        order = ", ".join(f"{expr} {direction}" for expr in self._ordered())
        conditions, params = [f"{column} = v.value"], list(self.params)
        if request.after is not None:
            condition, after = self._after(request.after, "<" if self.descending else ">", "after")
            conditions.append(condition)
            params += after
        where = self._where_sql(conditions)
        values_json = orjson.dumps(list(values)).decode()
        if db.is_postgres():
            where = where.replace(f"{column} = v.value", f"{column} = CAST(v.value AS integer)")
            return (
                "SELECT x.* FROM jsonb_array_elements_text(CAST(CAST(? AS text) AS jsonb)) v "
                f"CROSS JOIN LATERAL (SELECT {self.alias}.*, {column} AS partition_value "
                f"FROM {self.source} WHERE {where} ORDER BY {order} LIMIT ?) x",
                [values_json, *params, size + 1],
            )
        table = self.model._meta.db_table
        return (
            f"SELECT o.*, v.value AS partition_value FROM json_each(?) v, {table} o "
            f"WHERE o.id IN (SELECT {self.alias}.id FROM {self.source} WHERE {where} "
            f"ORDER BY {order} LIMIT ?)",
            [values_json, *params, size + 1],
        )

    async def pages_by(
        self, column: str, values: Sequence[Any], request: PageRequest
    ) -> dict[Any, Page[M]]:
        """The same page of this listing for many values of `column` (children of many
        parents), in one statement."""
        size = request.first or 0
        grouped: dict[Any, list[M]] = {value: [] for value in values}
        if values:
            for row in await db.fetch(*self.pages_by_sql(column, values, request)):
                value = row.pop("partition_value")
                grouped[value].append(db.from_row(self.model, row))
            for items in grouped.values():  # code-point order is UTF-8 byte order
                items.sort(key=self._key_of, reverse=self.descending)
        return {
            value: Page(
                items[:size],
                [self.cursor_of(item) for item in items[:size]],
                len(items) > size,
                request.after is not None,
            )
            for value, items in grouped.items()
        }

    async def counts_by(self, column: str, values: Sequence[Any]) -> dict[Any, int]:
        """How many rows of this listing each value of `column` has, in one statement."""
        where = self._where_sql([sql_in(column, values)[0]])
        rows = await db.fetch(
            f"SELECT {column} AS value, COUNT(*) AS n FROM {self.source} WHERE {where} "
            f"GROUP BY {column}",
            [*self.params, *values],
        )
        counts = dict.fromkeys(values, 0)
        counts.update({row["value"]: int(row["n"]) for row in rows})
        return counts

    async def rows_with(self, extra_sql: str, name: str) -> list[tuple[M, Any]]:
        """The rows (unordered) each with the value of one more column of the source, such as
        the path of a joined parent: `SELECT <alias>.*, <extra_sql> AS <name>`."""
        rows = await db.fetch(
            f"SELECT {self.alias}.*, {extra_sql} AS {name} FROM {self.source} "
            f"WHERE {self._where_sql()}",
            self.params,
        )
        pairs = []
        for row in rows:
            value = row.pop(name)  # not a field of the model
            pairs.append((db.from_row(self.model, row), value))
        return pairs

    async def rows(self, limit: int | None = None) -> list[M]:
        direction = "DESC" if self.descending else "ASC"
        order = ", ".join(f"{expr} {direction}" for expr in self._ordered())
        sql = f"SELECT {self.alias}.* FROM {self.source} WHERE {self._where_sql()} ORDER BY {order}"
        params = list(self.params)
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [db.from_row(self.model, row) for row in await db.fetch(sql, params)]
