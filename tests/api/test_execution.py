"""The execution shortcuts give exactly what Strawberry and graphql-core give without them:
same data, same errors, and nothing skipped that must run (permissions, field extensions,
field middleware); they are really taken on a page, a setting turns them off, and a schema
is not built on a Strawberry or graphql-core that lacks what they rely on."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import functools
import os
import subprocess
import sys
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
from graphql.execution.collect_fields import CollectedFields, FieldDetails
from strawberry.extensions import FieldExtension, SchemaExtension
from strawberry.permission import BasePermission
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types import Info
from strawberry.types.arguments import StrawberryArgument
from strawberry.types.field import StrawberryField
from strawberry.types.fields.resolver import StrawberryResolver

import graphql
from graphql import GraphQLEnumType, GraphQLString, MiddlewareManager
from server.api import execution
from server.api.execution import (
    RENDERS,
    SHORTCUT,
    Executor,
    ShortcutsUnsupported,
    direct,
    install_shortcuts,
    share,
)
from server.api.schema import build_schema
from server.app import create_app
from server.settings import Settings
from tests import factories
from tests.conftest import FROM_ENVIRONMENT
from tests.graphql_client import GraphQLClient


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

    def resolve(self, _next, root, info, *args, **kwargs):
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
    company = build_schema()._schema.type_map["Company"].fields
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


class Upper(FieldExtension):
    """A field extension: upper-cases what the field resolves to."""

    def resolve(self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any) -> Any:
        return next_(source, info, **kwargs).upper()


@strawberry.type
class Guarded:
    public: str
    secret: str | None = strawberry.field(permission_classes=[Never])
    shouted: str = strawberry.field(extensions=[Upper()])


GUARDED_QUERIES = (
    "{ guarded { public secret shouted } }",
    "{ guarded { secret } }",
    "{ guarded { ...on Guarded { shouted } public } }",
)


@pytest.mark.parametrize("query", GUARDED_QUERIES)
async def test_a_field_without_resolver_keeps_its_permissions_and_extensions(query):
    @strawberry.type
    class Query:
        @strawberry.field
        def guarded(self) -> list[Guarded]:
            return [Guarded(public="p", secret="classified", shouted="quiet")]

    answers = []
    for shortcuts in (True, False):
        built = strawberry.Schema(
            query=Query, execution_context_class=Executor if shortcuts else None
        )
        if shortcuts:
            install_shortcuts(built._schema)
        result = await built.execute(query)
        answers.append((result.data, [(e.message, e.path) for e in result.errors or []]))
    assert answers[0] == answers[1]
    (data, errors), _ = answers
    assert "classified" not in repr(data) and "quiet" not in repr(data)
    if "secret" in query:
        assert data["guarded"][0]["secret"] is None
        assert errors == [("never", ["guarded", 0, "secret"])]
    if "shouted" in query:
        assert data["guarded"][0]["shouted"] == "QUIET"
    guarded = built._schema.type_map["Guarded"].fields
    assert SHORTCUT not in guarded["secret"].extensions
    assert SHORTCUT not in guarded["shouted"].extensions


def test_the_setting_turns_the_shortcuts_off():
    assert (
        Settings.from_env({"MSP_CONSOLE_EXECUTION_SHORTCUTS": "off"}).execution_shortcuts is False
    )
    assert Settings().execution_shortcuts is True
    off = build_schema(Settings(execution_shortcuts=False))
    on = build_schema(Settings(execution_shortcuts=True))
    assert off.execution_context_class is not Executor
    assert on.execution_context_class is Executor
    for built, expected in ((off, False), (on, True)):
        name = built._schema.type_map["Company"].fields["name"]
        assert (SHORTCUT in name.extensions) is expected


class GraphQLCoreFields:
    """Counts the fields graphql-core executes with its own machinery, not by a shortcut."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = graphql.Executor.execute_field

        @functools.wraps(original)  # the same signature: check_private_parts looks at it
        def counted(executor: Any, *args: Any) -> Any:
            self.count += 1
            return original(executor, *args)

        monkeypatch.setattr(graphql.Executor, "execute_field", counted)

    async def of_page(self, client: GraphQLClient, token: str, first: int) -> int:
        self.count = 0
        data = await client.operation("ManagedCustomers", {"first": first}, token)
        assert len(data["managedCustomers"]["edges"]) == first
        return self.count


@pytest.fixture
async def ten_customers(client: GraphQLClient) -> factories.Owner:
    owner = await factories.owner(client)
    await factories.company_tree(owner.instance_id, msps=2, customers_per_msp=5)
    return owner


def client_of(settings: Settings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://console.test")


@pytest.mark.parametrize("shortcuts", [True, False])
async def test_the_rows_of_a_page_take_the_shortcut(
    settings, ten_customers, monkeypatch, shortcuts
):
    fields = GraphQLCoreFields(monkeypatch)
    async with client_of(replace(settings, execution_shortcuts=shortcuts)) as http:
        client = GraphQLClient(http)
        three, ten = [await fields.of_page(client, ten_customers.token, n) for n in (3, 10)]
    if shortcuts:
        assert three == ten  # no row costs graphql-core a field
    else:
        assert ten - three >= 7 * 10  # each row's dozen fields, by graphql-core


async def test_the_console_under_test_executes_as_the_environment_says(
    client, ten_customers, monkeypatch
):
    """CI runs tests/api again with the shortcuts off: that run must really be without them."""
    environment = {name: os.environ[name] for name in FROM_ENVIRONMENT if name in os.environ}
    expected = Settings.from_env(environment).execution_shortcuts
    fields = GraphQLCoreFields(monkeypatch)
    three, ten = [await fields.of_page(client, ten_customers.token, n) for n in (3, 10)]
    assert (three == ten) is expected


def changed_signature(owner: Any, name: str) -> Callable[[pytest.MonkeyPatch, Any], None]:
    """Gives `owner.name` a signature with one more required parameter."""

    def change(monkeypatch: pytest.MonkeyPatch, schema: Any) -> None:
        def replacement(*args: Any, surprise: Any) -> None:
            raise AssertionError("never called")

        monkeypatch.setattr(owner, name, replacement)

    return change


def removed(owner: Any, name: str) -> Callable[[pytest.MonkeyPatch, Any], None]:
    return lambda monkeypatch, schema: monkeypatch.delattr(owner, name)


def removed_after_init(cls: type, name: str) -> Callable[[pytest.MonkeyPatch, Any], None]:
    """Makes `cls` instances lack `name`, an attribute its constructor used to set."""

    def remove(monkeypatch: pytest.MonkeyPatch, schema: Any) -> None:
        original = cls.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            delattr(self, name)

        monkeypatch.setattr(cls, "__init__", init)

    return remove


def removed_everywhere(cls: type, name: str) -> Callable[[pytest.MonkeyPatch, Any], None]:
    """Takes `name` from the class and from the instances its constructor makes."""

    def remove(monkeypatch: pytest.MonkeyPatch, schema: Any) -> None:
        removed(cls, name)(monkeypatch, schema)
        removed_after_init(cls, name)(monkeypatch, schema)

    return remove


def removed_from_definitions(name: str) -> Callable[[pytest.MonkeyPatch, Any], None]:
    """Takes `name` from StrawberryField and from the definitions of the schema's fields."""

    def remove(monkeypatch: pytest.MonkeyPatch, schema: Any) -> None:
        monkeypatch.delattr(StrawberryField, name, raising=False)
        for field in schema.query_type.fields.values():
            definition = field.extensions[GraphQLCoreConverter.DEFINITION_BACKREF]
            monkeypatch.delattr(definition, name, raising=False)

    return remove


BASE_EXECUTOR = StrawberryGraphQLCoreExecutionContext
Breakage = Callable[[pytest.MonkeyPatch, Any], None]
BREAKAGES: list[tuple[str, Breakage]] = [
    ("Executor.execute_field", changed_signature(graphql.Executor, "execute_field")),
    ("Executor.execute_field", removed(graphql.Executor, "execute_field")),
    (
        "Executor.complete_object_value",
        changed_signature(graphql.Executor, "complete_object_value"),
    ),
    ("Executor.collect_subfields", changed_signature(graphql.Executor, "collect_subfields")),
    ("Executor.collect_subfields", removed(graphql.Executor, "collect_subfields")),
    ("CollectedFields.new_defer_usages", removed(CollectedFields, "new_defer_usages")),
    ("FieldDetails.fragment_variable_values", removed(FieldDetails, "fragment_variable_values")),
    ("get_argument_values", changed_signature(execution, "get_argument_values")),
    ("GraphQLScalarType.coerce_output_value", removed(GraphQLString, "coerce_output_value")),
    (
        "GraphQLEnumType.coerce_output_value",
        changed_signature(GraphQLEnumType, "coerce_output_value"),
    ),
    ("MiddlewareManager.middlewares", removed_after_init(MiddlewareManager, "middlewares")),
    ("Executor.build", removed(graphql.Executor, "build")),
    (
        "Executor.build_per_event_executor",
        changed_signature(graphql.Executor, "build_per_event_executor"),
    ),
    ("Executor._relevant_sub_fields", removed_after_init(BASE_EXECUTOR, "_relevant_sub_fields")),
    ("Executor.variable_values", removed_after_init(BASE_EXECUTOR, "variable_values")),
    ("Executor.hide_suggestions", removed_after_init(BASE_EXECUTOR, "hide_suggestions")),
    ("Executor.middleware_manager", removed_after_init(BASE_EXECUTOR, "middleware_manager")),
    ("Executor.is_awaitable", removed_everywhere(graphql.Executor, "is_awaitable")),
    (
        "DEFINITION_BACKREF",
        lambda monkeypatch, schema: monkeypatch.setattr(
            GraphQLCoreConverter, "DEFINITION_BACKREF", "renamed"
        ),
    ),
    ("StrawberryField.base_resolver", removed_from_definitions("base_resolver")),
    ("StrawberryField.extensions", removed_from_definitions("extensions")),
    ("StrawberryField.python_name", removed_from_definitions("python_name")),
    ("StrawberryField.arguments", removed_from_definitions("arguments")),
    ("StrawberryField.is_basic_field", removed_from_definitions("is_basic_field")),
    ("StrawberryField.default_resolver", removed_from_definitions("default_resolver")),
    ("StrawberryResolver.wrapped_func", removed_after_init(StrawberryResolver, "wrapped_func")),
    ("StrawberryResolver.self_parameter", removed(StrawberryResolver, "self_parameter")),
    ("StrawberryResolver.root_parameter", removed(StrawberryResolver, "root_parameter")),
    ("StrawberryResolver.parent_parameter", removed(StrawberryResolver, "parent_parameter")),
    ("StrawberryArgument.python_name and .type", removed(StrawberryArgument, "type")),
    (
        "StrawberryArgument.python_name and .type",
        lambda monkeypatch, schema: monkeypatch.setattr(
            StrawberryArgument, "type", property(lambda argument: "a wrapped int")
        ),
    ),
]


@pytest.mark.parametrize(
    "part,breakage", BREAKAGES, ids=[f"{part}-{n}" for n, (part, _) in enumerate(BREAKAGES)]
)
def test_a_schema_is_not_built_when_a_part_the_shortcuts_rely_on_is_gone(
    monkeypatch, part, breakage
):
    graphql_schema = build(rows, shortcuts=False)._schema
    install_shortcuts(graphql_schema)  # as they are, every part is there
    graphql_schema = build(rows, shortcuts=False)._schema
    breakage(monkeypatch, graphql_schema)
    with pytest.raises(ShortcutsUnsupported) as refused:
        install_shortcuts(graphql_schema)
    message = str(refused.value)
    assert part in message, message
    assert "MSP_CONSOLE_EXECUTION_SHORTCUTS=off" in message


# graphql-core without a part the shortcuts rely on, then the command line
WITHOUT_A_PART = """
import graphql.execution.collect_fields as collect
del collect.CollectedFields.new_defer_usages
from server.cli import main
raise SystemExit(main(["export-schema"]))
"""


@pytest.mark.parametrize("shortcuts", ["on", "off"])
def test_with_the_shortcuts_off_the_console_runs_on_a_graphql_core_without_their_parts(
    tmp_path, shortcuts
):
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_A_PART],
        env={
            "PATH": "",
            "DATABASE_URL": f"sqlite://{tmp_path / 'console.db'}",
            "MSP_CONSOLE_EXECUTION_SHORTCUTS": shortcuts,
        },
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if shortcuts == "off":
        assert result.returncode == 0, result.stderr
        assert "type Query" in result.stdout
    else:
        assert result.returncode != 0
        assert "ShortcutsUnsupported" in result.stderr
        assert "CollectedFields.new_defer_usages" in result.stderr


async def test_with_the_shortcuts_off_a_console_serves_without_their_parts(
    settings, ten_customers, monkeypatch
):
    monkeypatch.delattr(CollectedFields, "new_defer_usages")  # graphql-core unpacks it instead
    with pytest.raises(ShortcutsUnsupported, match=r"CollectedFields\.new_defer_usages"):
        create_app(replace(settings, execution_shortcuts=True))
    async with client_of(replace(settings, execution_shortcuts=False)) as http:
        data = await GraphQLClient(http).operation(
            "ManagedCustomers", {"first": 10}, ten_customers.token
        )
    assert data["managedCustomers"]["totalCount"] == 10


def test_the_schema_is_exported_as_server_api_schema_schema() -> None:
    """`server.api.schema:schema` is where tools (the contract check) find the schema."""
    from server.api import schema as module

    assert "type Query" in module.schema.as_str()


PLAIN_ROWS = "subscription { rows { name nickname colour seen size owner { name } } }"
RENAMED_ROWS = "subscription { rows { called: name size owner { name } } }"
DOUBLED_ROWS = "subscription { rows { name doubled } }"


def subscribed_schema(
    events: Callable[[], list[Row]], *, shortcuts: bool, executor: type = Executor
) -> Any:
    """A schema whose subscription `rows` yields each of `events()`."""

    @strawberry.type
    class Query:
        ping: str = "pong"

    @strawberry.type
    class Subscription:
        @strawberry.subscription
        async def rows(self) -> AsyncGenerator[Row, None]:
            for row in events():
                yield row

    built = strawberry.Schema(
        query=Query,
        subscription=Subscription,
        execution_context_class=executor if shortcuts else None,
    )
    if shortcuts:
        install_shortcuts(built._schema)
    return built


async def streamed(schema: Any, query: str, factor: int = 10) -> list[Any]:
    """The data of every result of one subscriber of `query` (no result with errors)."""
    context = {"factor": factor, "partners": PARTNERS}
    results = [result async for result in await schema.subscribe(query, context_value=context)]
    assert all(not result.errors for result in results), results
    return [result.data["rows"] for result in results]


async def test_subscribers_with_a_selection_of_the_same_shape_share_one_rendering_per_row():
    shared = [share(row) for row in rows()]
    schema = subscribed_schema(lambda: shared, shortcuts=True)
    first, second, renamed = [
        await streamed(schema, query) for query in (PLAIN_ROWS, PLAIN_ROWS, RENAMED_ROWS)
    ]
    plain = subscribed_schema(rows, shortcuts=False)
    assert first == second == await streamed(plain, PLAIN_ROWS)
    assert renamed == await streamed(plain, RENAMED_ROWS)
    # the second subscriber received the first one's rendering: one per row and shape
    assert all(mine is theirs for mine, theirs in zip(first, second, strict=True))
    assert [len(getattr(row, RENDERS)) for row in shared] == [2, 2]


async def test_a_selection_with_a_resolver_is_rendered_for_each_subscriber_of_a_shared_row():
    shared = [share(row) for row in rows()]
    schema = subscribed_schema(lambda: shared, shortcuts=True)
    tenfold, hundredfold = [await streamed(schema, DOUBLED_ROWS, factor) for factor in (10, 100)]
    assert [row["doubled"] for row in tenfold] == [20, 40]
    assert [row["doubled"] for row in hundredfold] == [200, 400]
    assert [getattr(row, RENDERS) for row in shared] == [{}, {}]


class RecordedExecutor(Executor):
    """Keeps every executor it builds, for a test to look into its memos."""

    built: list[Executor] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        RecordedExecutor.built.append(self)


async def test_the_memos_of_a_long_lived_subscription_stay_bounded():
    RecordedExecutor.built.clear()
    events = [share(row) for row in rows() * 100]  # 200 events
    schema = subscribed_schema(lambda: events, shortcuts=True, executor=RecordedExecutor)
    query = "subscription { rows { name owner { name initial } } }"  # one part not shared
    assert len(await streamed(schema, query)) == 200
    (executor,) = RecordedExecutor.built  # the subscription's; each event works on a copy
    memos = (executor._relevant_sub_fields, executor._selections, executor._shapes)
    assert [len(memo) for memo in memos] == [0, 0, 2]  # Row and Person, as the document holds
