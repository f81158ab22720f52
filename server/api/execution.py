"""Execution shortcuts for the fields every row of a page repeats.

A page of 50 customers runs about 760 fields, and the per-field machinery, not our code, is
most of what GraphQL costs over a hand-written endpoint: for each field graphql-core builds a
path and a resolve info, and walks its generic completion; Strawberry wraps each resolver call
in an Info object, argument conversion and its extension chain. Two shortcuts, both prepared
when the schema is built (`install_shortcuts`):

- Direct resolvers: a resolver marked `@direct` is called as graphql-core's own resolver,
  without Strawberry's wrapper. Only for resolvers that need none of it: no permission classes
  or field extensions, and arguments of built-in scalar types. Their `info` is graphql-core's
  resolve info, so a direct resolver may read `info.context` and nothing else of it; and it
  may be called twice for one field (see below), so it must have no side effects.
- `Executor` builds an object's result itself when every field selected in it can be answered
  without graphql-core: an attribute read (a Strawberry field without resolver) or a direct
  resolver's synchronous result, a scalar, an enum or such an object again. A row of the
  Managed Customers page (the edge, the customer, its parent and its group) is built in one
  pass this way. At the first thing out of the ordinary (a null where none is allowed, an
  exception, an awaitable, a value that does not coerce, a list, an introspection field)
  it gives the whole object back to graphql-core, which builds it as it always would: results
  and errors are exactly what they would have been without the shortcut.

An object marked with `share` (a row of a subscription event, handed to every subscriber that
may see it) is rendered once per selection shape: when everything its selection holds, nested
objects included, is an attribute read, the result depends on the row alone, so `Executor`
keeps it on the row and hands the same result to every subscriber whose selection has the same
shape (the same fields under the same response names, after @include and @skip). A selection
with any resolver, direct ones included (they may read the viewer's context), is rendered per
subscriber, as before. Each subscription keeps the shapes of its selections (bounded by its
document) across events; graphql-core's memo of collected subfields, keyed by lists that a
subscription builds afresh for each event, is reset for each event instead of growing with them.

Only Strawberry's basic fields are attribute reads (no resolver, no permission classes, no
field extensions): any other field without a resolver is left to Strawberry, whose wrapper
runs its checks. `MSP_CONSOLE_EXECUTION_SHORTCUTS=off` turns all of this off.

The shortcuts rely on parts of Strawberry and graphql-core that neither promises to keep;
`install_shortcuts` checks every one of them when the schema is built and refuses to build,
naming what is gone or changed, rather than let an upgrade make the shortcuts wrong or
silently slower (pyproject.toml bounds both to the minor versions this was written against):

- graphql-core's `Executor` (`graphql.execution.executor`): the signatures of the two
  methods `Executor` overrides, `execute_field(self, parent_type, source, field_details_list,
  path, position_context)` and `complete_object_value(self, return_type, field_details_list,
  info, path, result, position_context)`; `collect_subfields(self, return_type,
  field_details_list)`, returning `CollectedFields` with `grouped_field_set` and
  `new_defer_usages`; the attributes `variable_values`, `hide_suggestions`,
  `middleware_manager` (a `MiddlewareManager`, whose `middlewares` are the schema
  extensions with a `resolve` hook) and `is_awaitable`; the `build` classmethod (the
  check builds one); `build_per_event_executor(self, payload)`, which `Executor` overrides
  to reset the memo `_relevant_sub_fields` (a dict) of the copy it returns.
- graphql-core's `FieldDetails` (`graphql.execution.collect_fields`): `node` and
  `fragment_variable_values`; `get_argument_values(type_def, node, variable_values,
  fragment_variable_values, hide_suggestions)`; the leaf types' `coerce_output_value`.
- Strawberry's `StrawberryGraphQLCoreExecutionContext` (`strawberry.schema.schema`), which
  `Executor` extends; the extension key `GraphQLCoreConverter.DEFINITION_BACKREF` under which
  a graphql-core field keeps its `StrawberryField`; that field's `base_resolver`,
  `default_resolver`, `python_name`, `extensions` (where permission classes go), `arguments`
  and `is_basic_field`; a `StrawberryResolver`'s `wrapped_func`, `self_parameter`,
  `root_parameter` and `parent_parameter`, and its arguments' `python_name` and `type`; and
  `strawberry.Schema._schema`, the graphql-core schema handed to `install_shortcuts`.

Our own marks: the extension key `msp-console.shortcut` (`SHORTCUT`) on graphql-core fields,
the attribute `_msp_console_direct` (`DIRECT`) on resolvers, and the attribute
`_msp_console_renders` (`RENDERS`) on shared objects.

The module is longer than the others on purpose: the shortcuts, the checks that guard the
private parts they rely on, and the executor that takes them are one piece; apart, the
checks would no longer sit beside what they protect.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from graphql.execution.collect_fields import CollectedFields, FieldDetails
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types import Info
from strawberry.types.field import StrawberryField
from strawberry.types.fields.resolver import StrawberryResolver

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLID,
    GraphQLLeafType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    MiddlewareManager,
    Undefined,
    get_argument_values,
    get_nullable_type,
    is_leaf_type,
    is_non_null_type,
    parse,
)
from server.observability import SUBSCRIPTION_RENDERS

SHORTCUT = "msp-console.shortcut"
DIRECT = "_msp_console_direct"
RENDERS = "_msp_console_renders"
UNCHANGED_BY_COERCION: Mapping[GraphQLNamedType, type] = {
    GraphQLString: str,
    GraphQLID: str,
    GraphQLBoolean: bool,
}
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Shortcut:
    """How `Executor` may answer a field by itself."""

    resolver: Callable[..., Any] | None  # call this direct resolver, or when None...
    attribute: str  # ...read this attribute (a Strawberry field without resolver)
    output: GraphQLLeafType | GraphQLObjectType  # the field's type, null allowed or not
    non_null: bool
    leaf: bool
    unchanged: type | None  # a value of exactly this type is its own output (str, bool)


def direct(resolver: F) -> F:
    """Marks a resolver for graphql-core to call itself (see the module's docstring)."""
    setattr(resolver, DIRECT, True)
    return resolver


def share(value: T) -> T:
    """Marks an object that many subscribers receive from one batch of events, for `Executor`
    to render once per selection shape (see the module's docstring)."""
    setattr(value, RENDERS, {})
    return value


class ShortcutsUnsupported(RuntimeError):
    """Strawberry or graphql-core lacks a part the shortcuts rely on."""


def install_shortcuts(schema: GraphQLSchema) -> None:
    """Checks the private parts the shortcuts rely on, hands the resolvers marked `@direct` to
    graphql-core (refusing one that needs Strawberry's wrapper), then prepares a `Shortcut`
    for every field that can have one."""
    check_private_parts(schema)
    for named, field_name, field, definition in _strawberry_fields(schema):
        resolver = definition.base_resolver
        resolver_call: Callable[..., Any] | None
        if resolver is not None and getattr(resolver.wrapped_func, DIRECT, False):
            resolver_call = _checked_direct(f"{named.name}.{field_name}", field, definition)
            field.resolve = resolver_call
        elif definition.is_basic_field and definition.default_resolver is getattr:
            resolver_call = None  # an attribute read, with no permission or extension to run
        else:
            continue
        output = get_nullable_type(field.type)
        if not isinstance(output, GraphQLObjectType) and not is_leaf_type(output):
            continue  # lists, interfaces and unions: graphql-core's
        field.extensions[SHORTCUT] = Shortcut(
            resolver=resolver_call,
            attribute=definition.python_name if resolver_call is None else "",
            output=output,
            non_null=is_non_null_type(field.type),
            leaf=is_leaf_type(output),
            unchanged=UNCHANGED_BY_COERCION.get(output),
        )


def _checked_direct(
    where: str, field: GraphQLField, definition: StrawberryField
) -> Callable[..., Any]:
    """The function of a direct resolver, once it is known to need nothing of Strawberry."""
    resolver = definition.base_resolver
    assert resolver is not None
    function = resolver.wrapped_func
    if not inspect.isfunction(function):
        raise TypeError(f"{where}: a direct resolver is a plain function")
    if definition.extensions:
        raise TypeError(f"{where}: a direct resolver cannot have permissions or extensions")
    if resolver.parent_parameter or resolver.root_parameter or not resolver.self_parameter:
        raise TypeError(f"{where}: a direct resolver takes (self, info, ...)")
    for argument in definition.arguments:
        scalar = argument.type in (bool, int, float, str)
        if not scalar or argument.python_name not in field.args:
            raise TypeError(f"{where}: argument {argument.python_name} needs converting")
    return function


def _strawberry_fields(
    schema: GraphQLSchema,
) -> Iterator[tuple[GraphQLObjectType, str, GraphQLField, StrawberryField]]:
    for named in schema.type_map.values():
        if isinstance(named, GraphQLObjectType) and not named.name.startswith("__"):
            for name, field in named.fields.items():
                definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
                if definition is not None:
                    yield named, name, field, definition


def check_private_parts(schema: GraphQLSchema) -> None:
    """Refuses to go on, naming each, when a private part of Strawberry or graphql-core that
    the shortcuts rely on (see the module's docstring) is gone or has changed its shape."""
    problems = list(_private_part_problems(schema))
    if problems:
        raise ShortcutsUnsupported(
            "the execution shortcuts (server/api/execution.py) rely on parts of Strawberry and "
            f"graphql-core that are gone or changed: {'; '.join(problems)}. Adapt them to the "
            "installed versions, or set MSP_CONSOLE_EXECUTION_SHORTCUTS=off meanwhile."
        )


def _private_part_problems(schema: GraphQLSchema) -> Iterator[str]:
    executor = "graphql-core Executor"
    base = StrawberryGraphQLCoreExecutionContext
    yield from _overridden(
        f"{executor}.execute_field",
        getattr(base, "execute_field", None),
        ("self", "parent_type", "source", "field_details_list", "path", "position_context"),
    )
    yield from _overridden(
        f"{executor}.complete_object_value",
        getattr(base, "complete_object_value", None),
        ("self", "return_type", "field_details_list", "info", "path", "result", "position_context"),
    )
    yield from _called(
        f"{executor}.collect_subfields",
        getattr(base, "collect_subfields", None),
        ("self", "return_type", "field_details_list"),
    )
    yield from _attributes(
        "graphql-core CollectedFields", CollectedFields, ("grouped_field_set", "new_defer_usages")
    )
    yield from _attributes(
        "graphql-core FieldDetails", FieldDetails, ("node", "fragment_variable_values")
    )
    yield from _called(
        "graphql-core get_argument_values",
        get_argument_values,
        ("type_def", "node", "variable_values", "fragment_variable_values", "hide_suggestions"),
    )
    yield from _attributes(
        "graphql-core GraphQLScalarType", GraphQLString, ("coerce_output_value",)
    )
    yield from _called(
        "graphql-core GraphQLEnumType.coerce_output_value",
        getattr(GraphQLEnumType, "coerce_output_value", None),
        ("self", "output_value"),
    )
    yield from _attributes("graphql-core MiddlewareManager", MiddlewareManager(), ("middlewares",))
    yield from _overridden(
        f"{executor}.build_per_event_executor",
        getattr(base, "build_per_event_executor", None),
        ("self", "payload"),
    )
    built: object
    try:
        built = base.build(schema, parse("{ __typename }"))
    except Exception as error:
        built = error
    if not isinstance(built, base):
        yield f"{executor}.build (gave {built!r})"
    else:
        yield from _attributes(
            executor,
            built,
            ("variable_values", "hide_suggestions", "middleware_manager", "is_awaitable"),
        )
        if not isinstance(getattr(built, "_relevant_sub_fields", None), dict):
            yield f"{executor}._relevant_sub_fields (a dict)"
    root_fields = schema.query_type.fields.values() if schema.query_type else ()
    definitions = [
        field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF) for field in root_fields
    ]
    if not definitions or not all(isinstance(d, StrawberryField) for d in definitions):
        yield "Strawberry's field definitions under GraphQLCoreConverter.DEFINITION_BACKREF"
    else:
        yield from _attributes(
            "Strawberry StrawberryField",
            definitions[0],
            (
                "base_resolver",
                "default_resolver",
                "python_name",
                "extensions",
                "arguments",
                "is_basic_field",
            ),
        )
    resolver = StrawberryResolver(_probe)
    missing = list(
        _attributes(
            "Strawberry StrawberryResolver",
            resolver,
            ("wrapped_func", "self_parameter", "root_parameter", "parent_parameter", "arguments"),
        )
    )
    yield from missing
    if not missing:
        try:
            arguments: Any = [(each.python_name, each.type) for each in resolver.arguments]
        except AttributeError as error:
            arguments = error
        if arguments != [("size", int)]:
            yield (
                "Strawberry StrawberryArgument.python_name and .type "
                f"(read {arguments!r} off (self, info, size: int))"
            )


def _probe(self: Any, info: Info, size: int) -> int:
    """A resolver of the shape `@direct` takes, for `check_private_parts` to look at."""
    return size


def _overridden(name: str, method: Any, parameters: tuple[str, ...]) -> Iterator[str]:
    """A method `Executor` overrides must take exactly these parameters."""
    found = _parameters(method)
    if found is None or tuple(found) != parameters:
        yield f"{name}{_shape(parameters)} (found {_shape(found)})"


def _called(name: str, function: Any, parameters: tuple[str, ...]) -> Iterator[str]:
    """A function the shortcuts call must take these first; any others must be optional."""
    found = _parameters(function)
    if (
        found is None
        or tuple(found)[: len(parameters)] != parameters
        or any(
            parameter.default is inspect.Parameter.empty
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
            for parameter in list(found.values())[len(parameters) :]
        )
    ):
        yield f"{name}{_shape(parameters)} (found {_shape(found)})"


def _parameters(function: Any) -> Mapping[str, inspect.Parameter] | None:
    return inspect.signature(function).parameters if callable(function) else None


def _attributes(label: str, owner: Any, attributes: tuple[str, ...]) -> Iterator[str]:
    for attribute in attributes:
        if not hasattr(owner, attribute):
            yield f"{label}.{attribute}"


def _shape(parameters: Iterable[str] | None) -> str:
    return "none" if parameters is None else f"({', '.join(parameters)})"


class Executor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, taking the shortcuts where it can (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # field middleware (an extension with a `resolve` hook) must see every field
        manager = self.middleware_manager
        self.shortcut = manager is None or not manager.middlewares
        self._selections: dict[tuple[GraphQLObjectType, int], tuple[Any, Any]] = {}
        # kept by a subscription across its events, by the nodes of its document
        self._shapes: dict[tuple[GraphQLObjectType, tuple[int, ...]], Hashable | None] = {}

    def build_per_event_executor(self, payload: Any) -> Any:
        """The executor of one subscription event, with memos of its own: they are keyed by
        lists built afresh for each event, so memos kept across events would grow with each."""
        executor = super().build_per_event_executor(payload)
        assert isinstance(executor, Executor)
        executor._selections = {}
        executor._relevant_sub_fields = {}
        return executor

    def complete_object_value(
        self,
        return_type: GraphQLObjectType,
        field_details_list: Any,
        info: Any,
        path: Any,
        result: Any,
        position_context: Any,
    ) -> Any:
        if self.shortcut:
            renders = getattr(result, RENDERS, None)
            if renders is None:
                built = self._object(return_type, field_details_list, result, info)
            else:
                built = self._rendered_once(return_type, field_details_list, result, info, renders)
            if built is not Undefined:
                return built
        return super().complete_object_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        """Answers an attribute-read leaf itself, for the objects graphql-core builds."""
        if self.shortcut:
            # introspection fields (__typename) are not in `fields`: graphql-core answers them
            field = parent_type.fields.get(field_details_list[0].node.name.value)
            plan: Shortcut | None = field.extensions.get(SHORTCUT) if field else None
            if plan is not None and plan.leaf and plan.resolver is None:
                try:
                    value = self._complete(plan, (), getattr(source, plan.attribute), None)
                except Exception:  # graphql-core's own path reports it
                    value = Undefined
                if value is not Undefined:
                    return value
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    def _rendered_once(
        self,
        object_type: GraphQLObjectType,
        field_details_list: Any,
        source: Any,
        info: Any,
        renders: dict[Hashable, Any],
    ) -> Any:
        """A shared object's result: rendered for the first subscriber whose selection has
        this shape, the same result for the others; rendered for each subscriber when its
        selection holds a resolver. Undefined when graphql-core must build it."""
        shape = self._shape(object_type, field_details_list)
        if shape is not None:
            built = renders.get(shape, Undefined)
            if built is not Undefined:
                return built
        SUBSCRIPTION_RENDERS.inc()
        built = self._object(object_type, field_details_list, source, info)
        if shape is not None and built is not Undefined:
            renders[shape] = built
        return built

    def _shape(self, object_type: GraphQLObjectType, field_details_list: Any) -> Hashable | None:
        """What a result of this selection depends on besides its object, when every field in
        it (nested objects' too) is an attribute read: the fields under their response names.
        None otherwise. Memoized by the selection's nodes, which live as long as the
        document."""
        if any(details.fragment_variable_values is not None for details in field_details_list):
            return None
        site = (object_type, tuple(id(details.node) for details in field_details_list))
        if site in self._shapes:
            return self._shapes[site]
        shape: Hashable | None = None
        selected = self._selected(object_type, field_details_list)
        if selected is not None:
            fields: list[tuple[str, str, Hashable | None]] = []
            for response_name, _, plan, details in selected:
                nested = None
                if isinstance(plan.output, GraphQLObjectType):
                    nested = self._shape(plan.output, details)
                if plan.resolver is not None or (not plan.leaf and nested is None):
                    break
                fields.append((response_name, details[0].node.name.value, nested))
            else:
                shape = (object_type.name, tuple(fields))
        self._shapes[site] = shape
        return shape

    def _object(
        self, object_type: GraphQLObjectType, field_details_list: Any, source: Any, info: Any
    ) -> Any:
        """The object's result, or Undefined when graphql-core must build it."""
        selected = self._selected(object_type, field_details_list)
        if selected is None:
            return Undefined
        try:
            if (
                object_type.is_type_of is not None
                and object_type.is_type_of(source, info) is not True
            ):
                return Undefined
            data: dict[str, Any] = {}
            for response_name, field, plan, details in selected:
                resolver = plan.resolver
                if resolver is None:
                    value = getattr(source, plan.attribute)
                else:
                    arguments = (
                        get_argument_values(
                            field,
                            details[0].node,
                            self.variable_values,
                            details[0].fragment_variable_values,
                            self.hide_suggestions,
                        )
                        if field.args
                        else {}
                    )
                    value = resolver(source, info, **arguments)
                    if inspect.iscoroutine(value):
                        value.close()  # graphql-core calls the resolver again
                        return Undefined
                value = self._complete(plan, details, value, info)
                if value is Undefined:
                    return Undefined
                data[response_name] = value
            return data
        except Exception:  # graphql-core's own path reports it
            return Undefined

    def _selected(
        self, object_type: GraphQLObjectType, field_details_list: Any
    ) -> list[tuple[str, GraphQLField, Shortcut, Any]] | None:
        """The fields selected on an object, each with its shortcut; None when one has none
        (then nothing is called in vain). Memoized like graphql-core's `collect_subfields`."""
        key = (object_type, id(field_details_list))
        known = self._selections.get(key)
        if known is None:
            collected = self.collect_subfields(object_type, field_details_list)
            fields: list[tuple[str, GraphQLField, Shortcut, Any]] = []
            selected: list[tuple[str, GraphQLField, Shortcut, Any]] | None = fields
            for response_name, details in collected.grouped_field_set.items():
                field = object_type.fields.get(details[0].node.name.value)
                plan = field.extensions.get(SHORTCUT) if field is not None else None
                if field is None or plan is None or collected.new_defer_usages:
                    selected = None
                    break
                fields.append((response_name, field, plan, details))
            # the list is kept with its plan, so that its id is not reused meanwhile
            known = self._selections[key] = (field_details_list, selected)
        return known[1]

    def _complete(self, plan: Shortcut, details: Any, value: Any, info: Any) -> Any:
        if type(value) is plan.unchanged:
            return value
        if value is None:
            return Undefined if plan.non_null else None
        if isinstance(value, Exception):
            return Undefined
        if self.is_awaitable(value):
            return Undefined
        output = plan.output
        if isinstance(output, GraphQLObjectType):
            return self._object(output, details, value, info)
        coerced = output.coerce_output_value(value)
        return Undefined if coerced is None else coerced
