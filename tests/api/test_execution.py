"""The execution shortcuts give exactly what Strawberry and graphql-core give without them:
same data, same errors, and nothing skipped that must run (permissions, field middleware)."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
from collections.abc import Callable
from typing import Any

import pytest
import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.permission import BasePermission
from strawberry.types import Info

from server.api.execution import (
    PLAIN_LEAF,
    Executor,
    direct,
    install_direct_resolvers,
    mark_plain_leaf_fields,
)
from server.api.schema import schema as console_schema


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


async def later(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


@strawberry.type
class Row:
    name: str
    nickname: str | None
    colour: Colour
    seen: dt.datetime | None
    size: int

    @strawberry.field
    @direct
    def doubled(self, info: Info, times: int = 2) -> int:
        return self.size * times * info.context["factor"]

    @strawberry.field
    @direct
    async def shout(self, info: Info) -> str:
        return await later(self.name.upper())


class Shout(SchemaExtension):
    """Field middleware: upper-cases every string it sees."""

    def resolve(self, _next, root, info, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = _next(root, info, *args, **kwargs)
        return result.upper() if isinstance(result, str) else result


ROWS = [
    Row(name="a", nickname=None, colour=Colour.RED, seen=dt.datetime(2026, 1, 2), size=1),
    Row(name="b", nickname="bee", colour=Colour.BLUE, seen=None, size=2),
]
BROKEN: dict[str, Any] = {
    "null name": {"name": None},
    "exception": {"name": ValueError("stored exception")},
    "awaitable": {"nickname": "later"},  # a coroutine, made for each execution
    "uncoercible enum": {"colour": "green"},
    "uncoercible int": {"size": "many"},
}


def build(
    rows: Callable[[], list[Row]], *, shortcuts: bool, extensions: tuple[Any, ...] = ()
) -> Any:
    @strawberry.type
    class Query:
        @strawberry.field
        def rows(self) -> list[Row]:
            return rows()

    built = strawberry.Schema(
        query=Query,
        extensions=list(extensions),
        execution_context_class=Executor if shortcuts else None,
    )
    if shortcuts:
        mark_plain_leaf_fields(built._schema)
        install_direct_resolvers(built._schema)
    return built


QUERY = "{ rows { name nickname colour seen size doubled(times: 3) shout twice: doubled } }"


async def results(rows: Callable[[], list[Row]], **options: Any) -> tuple[Any, Any]:
    """(with the shortcuts, without them), each as data and errors."""

    async def run(shortcuts: bool) -> Any:
        result = await build(rows, shortcuts=shortcuts, **options).execute(
            QUERY, context_value={"factor": 10}
        )
        errors = [(e.message, e.path) for e in result.errors or []]
        return result.data, errors

    return await run(True), await run(False)


def test_plain_leaf_fields_are_the_attribute_reading_scalars_and_enums():
    company = console_schema._schema.type_map["Company"].fields
    assert PLAIN_LEAF in company["name"].extensions
    assert PLAIN_LEAF in company["customerStatus"].extensions
    for resolved in ("parent", "computerCount", "children"):
        assert PLAIN_LEAF not in company[resolved].extensions


async def test_the_same_data_with_and_without_the_shortcuts():
    with_shortcuts, without = await results(lambda: ROWS)
    assert with_shortcuts == without
    data, errors = with_shortcuts
    assert errors == []
    assert data["rows"][0] == {
        "name": "a",
        "nickname": None,
        "colour": "RED",
        "seen": "2026-01-02T00:00:00",
        "size": 1,
        "doubled": 30,
        "shout": "A",
        "twice": 20,
    }


@pytest.mark.parametrize("case", list(BROKEN))
async def test_the_same_errors_with_and_without_the_shortcuts(case):
    def broken() -> list[Row]:
        row = Row(name="x", nickname=None, colour=Colour.RED, seen=None, size=1)
        for attribute, value in BROKEN[case].items():
            setattr(row, attribute, later("late") if value == "later" else value)
        return [row, ROWS[1]]

    with_shortcuts, without = await results(broken)
    assert with_shortcuts == without
    data, errors = with_shortcuts
    if case == "awaitable":
        assert errors == [] and data["rows"][0]["nickname"] == "late"
    else:
        assert len(errors) == 1, errors
        assert errors[0][1][:2] == ["rows", 0]


async def test_field_middleware_still_sees_every_field():
    data, errors = (await results(lambda: ROWS, extensions=(Shout,)))[0]
    assert errors == []
    assert data["rows"][1]["name"] == "B"
    assert data["rows"][1]["nickname"] == "BEE"


class Never(BasePermission):
    message = "never"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return False


def refused(field: Any) -> str:
    @strawberry.type
    class Query:
        value: int = field

    with pytest.raises(TypeError) as raised:
        install_direct_resolvers(strawberry.Schema(query=Query)._schema)
    return str(raised.value)


def test_a_direct_resolver_that_needs_strawberry_is_refused():
    def guarded(self, info: Info) -> int:
        return 1

    def listed(self, info: Info, values: list[int]) -> int:
        return 1

    def renamed(self, info: Info, page_size: int) -> int:
        return 1

    assert "permissions" in refused(strawberry.field(direct(guarded), permission_classes=[Never]))
    assert "values needs converting" in refused(strawberry.field(direct(listed)))
    assert "page_size needs converting" in refused(strawberry.field(direct(renamed)))


def test_the_console_installs_its_direct_resolvers():
    company = console_schema._schema.type_map["Company"].fields
    assert company["parent"].resolve.__name__ == "parent"
    assert company["children"].resolve.__name__ != "children"  # Strawberry's wrapper
