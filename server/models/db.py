"""The database: Tortoise configuration, raw SQL for the queries the ORM cannot express, and
statement counting for the tests that pin how many statements an operation issues.

Raw SQL is written once with `?` placeholders; `fetch` and `execute` translate them to `$n`
for PostgreSQL, so the same statement runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import datetime
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient
from tortoise.backends.sqlite import SqliteClient
from tortoise.fields import DatetimeField
from tortoise.models import Model
from tortoise.transactions import in_transaction

from server.models import MODELS_MODULES
from server.models.checkpoints import AUTOCHECKPOINT_PAGES

M = TypeVar("M", bound=Model)
MIGRATIONS_MODULE = "server.migrations"
_STATEMENT_LOG = logging.getLogger("tortoise.db_client")
COPY_TURN = 2_000  # rows a COPY encodes between two turns of the event loop (`_in_turns`)
SQLITE_CACHE_KIB = 65536  # SQLite's page cache per connection (a negative cache_size: KiB)


def normalize_url(database_url: str) -> str:
    """Accept the usual `postgresql://` spelling as well as Tortoise's `postgres://`."""
    for prefix in ("postgresql://", "postgresql+asyncpg://", "asyncpg://"):
        if database_url.startswith(prefix):
            return "postgres://" + database_url[len(prefix) :]
    return database_url


def tortoise_config(database_url: str) -> dict[str, Any]:
    url = normalize_url(database_url)
    if url.startswith("postgres://"):
        parts = urlsplit(url)
        credentials = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 5432,
            "user": parts.username or "postgres",
            "password": parts.password or "",
            "database": parts.path.lstrip("/") or "postgres",
            "minsize": 1,
            "maxsize": 20,
        }
        connection: dict[str, Any] | str = {
            "engine": "tortoise.backends.asyncpg",
            "credentials": credentials,
        }
    else:
        # Wait for a writer in another process (the CLI's sync beside the server) instead of
        # failing with "database is locked"; WAL lets readers go on meanwhile. 64 MiB of page
        # cache (the default is 2 MiB): at 100,000 companies the company table's nine indexes
        # alone outgrow 2 MiB, and every insert of a first sync went back to the file for them.
        # The log is copied back by `checkpoints.WalCheckpointer`, not by the committing writer.
        separator = "&" if "?" in url else "?"
        connection = (
            f"{url}{separator}busy_timeout=5000&synchronous=NORMAL&cache_size={-SQLITE_CACHE_KIB}"
            f"&wal_autocheckpoint={AUTOCHECKPOINT_PAGES}"
        )
    return {
        "connections": {"default": connection},
        "apps": {
            "models": {
                "models": MODELS_MODULES,
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def connection() -> BaseDBAsyncClient:
    """The current connection: the transaction's inside `transaction()`."""
    return connections.get("default")


@asynccontextmanager
async def transaction() -> AsyncIterator[BaseDBAsyncClient]:
    """A transaction (a savepoint inside one): Tortoise's `in_transaction()`, safe to cancel.

    Tortoise takes the connection (SQLite: the lock every statement of the process waits for;
    PostgreSQL: one of the pool's) before it sends BEGIN, and gives it back in `__aexit__`
    alone, which never runs when BEGIN fails or the task is cancelled while it runs. One
    cancellation there (a worker stopping its background tasks, a client leaving) froze every
    statement of a SQLite console for good; twenty emptied a PostgreSQL worker's pool. A start
    that fails here is ended as a failed transaction is: rolled back, its connection returned."""
    context = in_transaction()
    try:
        client = await context.__aenter__()
    except BaseException as exc:
        # the outermost contexts hold their connection once they set their token
        if getattr(context, "token", None) is not None:
            with suppress(Exception):  # the rollback of a BEGIN that never ran may refuse
                await context.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    try:
        yield client
    except BaseException as exc:
        await context.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    await context.__aexit__(None, None, None)


def sqlite_file() -> str:
    """The file of the SQLite database the app is connected to."""
    client = connection()
    if not isinstance(client, SqliteClient):
        raise RuntimeError("not connected to SQLite")
    return str(client.filename)


def is_postgres(conn: BaseDBAsyncClient | None = None) -> bool:
    return (conn or connection()).capabilities.dialect == "postgres"


def _placeholders(sql: str, postgres: bool) -> str:
    if not postgres:
        return sql
    out: list[str] = []
    n = 0
    for part in sql.split("?"):
        if out:
            n += 1
            out.append(f"${n}")
        out.append(part)
    return "".join(out)


async def fetch(sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    conn = connection()
    return await conn.execute_query_dict(_placeholders(sql, is_postgres(conn)), list(params))


async def fetch_value(sql: str, params: Sequence[Any] = ()) -> Any:
    rows = await fetch(sql, params)
    return next(iter(rows[0].values())) if rows else None


async def execute(sql: str, params: Sequence[Any] = ()) -> int:
    """Run a statement; returns the number of rows it changed."""
    conn = connection()
    changed, _ = await conn.execute_query(_placeholders(sql, is_postgres(conn)), list(params))
    return changed


async def fetch_tuples(sql: str, params: Sequence[Any] = ()) -> Sequence[Any]:
    """Rows read by position, without building a dict per row (for reads of very many rows)."""
    conn = connection()
    _, rows = await conn.execute_query(_placeholders(sql, is_postgres(conn)), list(params))
    return rows


async def execute_many(sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """One statement run once per row of parameters, in one call (and counted once)."""
    conn = connection()
    # rows as given: both drivers take any sequence per row (Tortoise's annotation says list;
    # a list made of each row cost a second per million values)
    await conn.execute_many(_placeholders(sql, is_postgres(conn)), cast(list[list[Any]], rows))


async def copy_records(table: str, columns: Sequence[str], records: Sequence[Any]) -> None:
    """PostgreSQL's COPY of `records` (tuples in the order of `columns`) into `table`, on the
    current connection (the transaction's inside one); logged, so counted, as one statement.
    Fed in turns (`_in_turns`) when there are many."""
    conn = connection()
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT binary)"
    rows = _in_turns(records) if len(records) > COPY_TURN else records
    async with conn.acquire_connection() as raw:
        _STATEMENT_LOG.debug("%s: %s", sql, len(records))
        await raw.copy_records_to_table(table, columns=list(columns), records=rows)


async def _in_turns(records: Sequence[Any]) -> AsyncIterator[Any]:
    """`records`, the event loop served every `COPY_TURN` of them. asyncpg encodes rows until
    the connection's buffers are full before it awaits anything: loopback's take megabytes, so
    the first 100,000 companies of a sync held the loop 0.1-0.2 s at the start of each COPY."""
    for start in range(0, len(records), COPY_TURN):
        for record in records[start : start + COPY_TURN]:
            yield record
        await asyncio.sleep(0)


async def refresh_statistics(
    tables: Sequence[str] = ("company", "static_group", "computer", "license", "usage_line"),
) -> None:
    """Let the query planner know the tables' sizes and spreads (after a large change): without
    statistics SQLite scans a whole table where an index would serve. PostgreSQL samples the
    `tables` (names from code) and reads a large one's sample at random, each table on a
    connection of its own, so that they are sampled side by side (outside a transaction: inside
    one, in turn on its connection); SQLite's bounded analysis takes every table."""
    if is_postgres():
        if isinstance(connection(), TransactionalDBClient):
            await execute(f"ANALYZE {', '.join(tables)}")
        else:
            await asyncio.gather(*(execute(f"ANALYZE {table}") for table in tables))
    else:
        await connection().execute_script("PRAGMA analysis_limit = 1000; ANALYZE")


def from_row(model: type[M], row: dict[str, Any]) -> M:
    """A model from a row of raw SQL. SQLite hands datetimes back as text: read here by the
    standard library, which is some fifty times faster than Tortoise's ISO-8601 parser (a
    page of companies holds about 200 of them). Text it cannot read is left to Tortoise."""
    columns = _datetime_columns.get(model)
    if columns is None:
        columns = _datetime_columns[model] = tuple(
            field.source_field or name
            for name, field in model._meta.fields_map.items()
            if isinstance(field, DatetimeField)
        )
    for column in columns:
        value = row.get(column)
        if type(value) is str:
            with suppress(ValueError):
                row[column] = datetime.fromisoformat(value)
    return model._init_from_db(**row)


_datetime_columns: dict[type[Model], tuple[str, ...]] = {}


def text_order(column: str) -> str:
    """A text column compared byte-wise on every database (PostgreSQL collations differ)."""
    return f'{column} COLLATE "C"' if is_postgres() else column


_counting: contextvars.ContextVar[StatementCounter | None] = contextvars.ContextVar(
    "counting_statements", default=None
)


class StatementCounter(logging.Handler):
    """Counts SQL statements sent by the code under `count_statements()` (Tortoise logs each
    one at DEBUG). Tasks started inside inherit the count (DataLoader batches); background
    loops started elsewhere do not."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if record.msg == "%s: %s" and isinstance(args, tuple) and args and _counting.get() is self:
            self.statements.append(str(args[0]))

    @property
    def count(self) -> int:
        return len(self.statements)


@contextmanager
def count_statements() -> Iterator[StatementCounter]:
    counter = StatementCounter()
    previous = _STATEMENT_LOG.level
    token = _counting.set(counter)
    _STATEMENT_LOG.setLevel(logging.DEBUG)
    _STATEMENT_LOG.addHandler(counter)
    try:
        yield counter
    finally:
        _STATEMENT_LOG.removeHandler(counter)
        _STATEMENT_LOG.setLevel(previous)
        _counting.reset(token)


def _tortoise_orm_for_cli() -> dict[str, Any]:
    from server.settings import Settings

    return tortoise_config(Settings.from_env().database_url)


# For Tortoise's own CLI: `tortoise -c server.models.db.TORTOISE_ORM makemigrations`.
TORTOISE_ORM = _tortoise_orm_for_cli()
