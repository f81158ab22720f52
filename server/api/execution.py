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
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

from graphql import (
    GraphQLBoolean,
    GraphQLField,
    GraphQLID,
    GraphQLLeafType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    Undefined,
    get_argument_values,
    get_nullable_type,
    is_leaf_type,
    is_non_null_type,
)

SHORTCUT = "msp-console.shortcut"
DIRECT = "_msp_console_direct"
UNCHANGED_BY_COERCION = {GraphQLString: str, GraphQLID: str, GraphQLBoolean: bool}
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Shortcut:
    """How `Executor` may answer a field by itself."""

    attribute: str | None  # a Strawberry field without resolver: read this attribute...
    resolver: Callable[..., Any] | None  # ...or call this direct resolver
    output: GraphQLLeafType | GraphQLObjectType  # the field's type, null allowed or not
    non_null: bool
    leaf: bool
    unchanged: type | None  # a value of exactly this type is its own output (str, bool)


def direct(resolver: F) -> F:
    """Marks a resolver for graphql-core to call itself (see the module's docstring)."""
    setattr(resolver, DIRECT, True)
    return resolver


def install_shortcuts(schema: GraphQLSchema) -> None:
    """Hands the resolvers marked `@direct` to graphql-core (refusing one that needs
    Strawberry's wrapper), then prepares a `Shortcut` for every field that can have one."""
    for named, field_name, field, definition in _strawberry_fields(schema):
        resolver = definition.base_resolver
        if resolver is not None and getattr(resolver.wrapped_func, DIRECT, False):
            _check_direct(f"{named.name}.{field_name}", field, definition)
            field.resolve = resolver.wrapped_func
            resolver_call: Callable[..., Any] | None = resolver.wrapped_func
        elif (
            getattr(field.resolve, "_is_default", False)  # Strawberry's basic field
            and definition.default_resolver is getattr
            and not field.args
        ):
            resolver_call = None  # an attribute read
        else:
            continue
        output = get_nullable_type(field.type)
        if not isinstance(output, GraphQLObjectType) and not is_leaf_type(output):
            continue  # lists, interfaces and unions: graphql-core's
        field.extensions[SHORTCUT] = Shortcut(
            attribute=definition.python_name if resolver_call is None else None,
            resolver=resolver_call,
            output=output,  # type: ignore[arg-type]
            non_null=is_non_null_type(field.type),
            leaf=is_leaf_type(output),
            unchanged=UNCHANGED_BY_COERCION.get(output),  # type: ignore[call-overload]
        )


def _check_direct(where: str, field: GraphQLField, definition: StrawberryField) -> None:
    resolver = definition.base_resolver
    assert resolver is not None
    if definition.extensions:
        raise TypeError(f"{where}: a direct resolver cannot have permissions or extensions")
    if resolver.parent_parameter or resolver.root_parameter or not resolver.self_parameter:
        raise TypeError(f"{where}: a direct resolver takes (self, info, ...)")
    for argument in definition.arguments:
        scalar = argument.type in (bool, int, float, str)
        if not scalar or argument.python_name not in field.args:
            raise TypeError(f"{where}: argument {argument.python_name} needs converting")


def _strawberry_fields(
    schema: GraphQLSchema,
) -> Iterator[tuple[GraphQLObjectType, str, GraphQLField, StrawberryField]]:
    for named in schema.type_map.values():
        if isinstance(named, GraphQLObjectType) and not named.name.startswith("__"):
            for name, field in named.fields.items():
                definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
                if definition is not None:
                    yield named, name, field, definition


class Executor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, taking the shortcuts where it can (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # field middleware (an extension with a `resolve` hook) must see every field
        manager = self.middleware_manager
        self.shortcut = manager is None or not manager.middlewares
        self._selections: dict[tuple[GraphQLObjectType, int], tuple[Any, Any]] = {}

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
            built = self._object(return_type, field_details_list, result, info)
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
            if plan is not None and plan.leaf and plan.attribute is not None:
                try:
                    value = self._complete(plan, (), getattr(source, plan.attribute), None)
                except Exception:  # graphql-core's own path reports it
                    value = Undefined
                if value is not Undefined:
                    return value
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

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
                if plan.attribute is not None:
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
                    value = plan.resolver(source, info, **arguments)  # type: ignore[misc]
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
            grouped_field_set, deferred, _ = self.collect_subfields(object_type, field_details_list)
            selected: list[tuple[str, GraphQLField, Shortcut, Any]] | None = []
            for response_name, details in grouped_field_set.items():
                field = object_type.fields.get(details[0].node.name.value)
                plan = field.extensions.get(SHORTCUT) if field is not None else None
                if plan is None or deferred:
                    selected = None
                    break
                selected.append((response_name, field, plan, details))  # type: ignore[union-attr]
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
        if plan.leaf:
            coerced = plan.output.coerce_output_value(value)  # type: ignore[union-attr]
            return Undefined if coerced is None else coerced
        return self._object(plan.output, details, value, info)  # type: ignore[arg-type]
