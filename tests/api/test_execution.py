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

from server.api.execution import SHORTCUT, Executor, direct, install_shortcuts
from server.api.schema import schema as console_schema


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


async def later(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


@strawberry.type
class Person:
    name: str

    @strawberry.field
    @direct
    def initial(self, info: Info) -> str:
        return self.name[:1]


@strawberry.type
class Row:
    name: str
    nickname: str | None
    colour: Colour
    seen: dt.datetime | None
    size: int
    owner: Person | None

    @strawberry.field
    @direct
    def doubled(self, info: Info, times: int = 2) -> int:
        return self.size * times * info.context["factor"]

    @strawberry.field
    @direct
    async def shout(self, info: Info) -> str:
        return await later(self.name.upper())

    @strawberry.field
    @direct
    def partner(self, info: Info) -> Person | None:
        return info.context["partners"].get(self.name)

    @strawberry.field
    def tags(self) -> list[str]:
        return [self.name, self.colour.value]


class Shout(SchemaExtension):
    """Field middleware: upper-cases every string it sees."""

    def resolve(self, _next, root, info, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = _next(root, info, *args, **kwargs)
        return result.upper() if isinstance(result, str) else result


def rows() -> list[Row]:
    return [
        Row(
            name="a",
            nickname=None,
            colour=Colour.RED,
            seen=dt.datetime(2026, 1, 2),
            size=1,
            owner=Person(name="Olga"),
        ),
        Row(name="b", nickname="bee", colour=Colour.BLUE, seen=None, size=2, owner=None),
    ]


PARTNERS = {"a": Person(name="Pat")}
BROKEN: dict[str, Any] = {
    "null name": {"name": None},
    "exception": {"name": ValueError("stored exception")},
    "awaitable": {"nickname": "later"},  # a coroutine, made for each execution
    "uncoercible enum": {"colour": "green"},
    "uncoercible int": {"size": "many"},
    "null name in a nested object": {"owner": Person(name=None)},  # type: ignore[arg-type]
    "exception in a direct resolver": {"owner": Person(name=5)},  # type: ignore[arg-type]
    "awaitable object": {"owner": "later person"},
}
QUERY = """{ rows { name nickname colour seen size doubled(times: 3) shout twice: doubled
  owner { name initial } partner { ...named } tags } }
fragment named on Person { name initial }"""


def build(
    rows: Callable[[], list[Row]],
    *,
    shortcuts: bool,
    extensions: tuple[Any, ...] = (),
    executor: type = Executor,
) -> Any:
    @strawberry.type
    class Query:
        @strawberry.field
        def rows(self) -> list[Row]:
            return rows()

    built = strawberry.Schema(
        query=Query,
        extensions=list(extensions),
        execution_context_class=executor if shortcuts else None,
    )
    if shortcuts:
        install_shortcuts(built._schema)
    return built


async def run(schema: Any) -> tuple[Any, list[Any]]:
    result = await schema.execute(QUERY, context_value={"factor": 10, "partners": PARTNERS})
    return result.data, [(e.message, e.path) for e in result.errors or []]


async def results(rows: Callable[[], list[Row]], **options: Any) -> tuple[Any, Any]:
    """(with the shortcuts, without them), each as data and errors."""
    return (
        await run(build(rows, shortcuts=True, **options)),
        await run(build(rows, shortcuts=False, **options)),
    )


def test_fields_with_a_shortcut_read_an_attribute_or_call_a_direct_resolver():
    company = console_schema._schema.type_map["Company"].fields
    assert company["name"].extensions[SHORTCUT].attribute == "name"
    assert company["customerStatus"].extensions[SHORTCUT].leaf
    parent = company["parent"].extensions[SHORTCUT]
    assert parent.resolver is company["parent"].resolve and not parent.leaf
    for strawberrys in ("ancestors", "children", "computers"):
        assert SHORTCUT not in company[strawberrys].extensions


async def test_the_same_data_with_and_without_the_shortcuts():
    with_shortcuts, without = await results(rows)
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
        "owner": {"name": "Olga", "initial": "O"},
        "partner": {"name": "Pat", "initial": "P"},
        "tags": ["a", "red"],
    }
    assert data["rows"][1]["owner"] is None and data["rows"][1]["partner"] is None


async def test_an_ordinary_row_is_built_without_graphql_cores_field_machinery():
    class Counting(Executor):
        fields = 0

        def execute_field(self, *args: Any) -> Any:
            Counting.fields += 1
            return super().execute_field(*args)

    schema = build(rows, shortcuts=True, executor=Counting)
    context = {"factor": 10, "partners": PARTNERS}
    plain = "{ rows { name colour doubled owner { name initial } partner { name } } }"
    result = await schema.execute(plain, context_value=context)
    assert not result.errors and result.data["rows"][0]["partner"] == {"name": "Pat"}
    assert Counting.fields == 1  # `rows` itself: the shortcut built both rows whole

    Counting.fields = 0
    data, errors = await run(schema)
    assert errors == [] and len(data["rows"]) == 2
    # `shout` (async) and `tags` (a list) send each row back to graphql-core, which walks its
    # 11 fields; it still hands `owner` and `partner` to the shortcut
    assert Counting.fields == 1 + 2 * 11


@pytest.mark.parametrize("case", list(BROKEN))
async def test_the_same_errors_with_and_without_the_shortcuts(case):
    def broken() -> list[Row]:
        row = Row(
            name="x", nickname=None, colour=Colour.RED, seen=None, size=1, owner=Person(name="O")
        )
        for attribute, value in BROKEN[case].items():
            if value in ("later", "later person"):  # a coroutine for each execution
                value = later("late" if value == "later" else Person(name="L"))
            setattr(row, attribute, value)
        return [row, rows()[1]]

    with_shortcuts, without = await results(broken)
    assert with_shortcuts == without
    data, errors = with_shortcuts
    if case == "awaitable":
        assert errors == [] and data["rows"][0]["nickname"] == "late"
    elif case == "awaitable object":
        assert errors == [] and data["rows"][0]["owner"] == {"name": "L", "initial": "L"}
    else:
        assert len(errors) == 1, errors
        assert errors[0][1][:2] == ["rows", 0]


async def test_field_middleware_still_sees_every_field():
    data, errors = (await results(rows, extensions=(Shout,)))[0]
    assert errors == []
    assert data["rows"][1]["name"] == "B"
    assert data["rows"][1]["nickname"] == "BEE"
    assert data["rows"][0]["owner"]["name"] == "OLGA"


class Never(BasePermission):
    message = "never"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return False


def refused(field: Any) -> str:
    @strawberry.type
    class Query:
        value: int = field

    with pytest.raises(TypeError) as raised:
        install_shortcuts(strawberry.Schema(query=Query)._schema)
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
