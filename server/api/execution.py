"""Execution shortcuts for the fields every row of a page repeats.

A page of 50 customers runs about 760 fields, and the per-field machinery, not our code, is
most of what GraphQL costs over a hand-written endpoint. Two shortcuts, both checked when the
schema is built:

- Plain leaf fields: scalars and enums that Strawberry answers by reading an attribute (no
  resolver, no arguments, no permission), about 600 of the 760. graphql-core builds a resolve
  info and walks its generic completion for each; `Executor` reads the attribute and coerces
  the value itself. Anything unusual (a null where none is allowed, an exception, an awaitable,
  a value that does not coerce) goes back to graphql-core's own path, so results and errors are
  exactly what they would have been.
- Direct resolvers: a resolver marked `@direct` is called by graphql-core itself, without
  Strawberry's per-call wrapper (an Info object, argument conversion, the extension chain).
  Only for resolvers that need none of it: no permission classes or field extensions, and
  arguments of built-in scalar types. Their `info` is then graphql-core's resolve info, so a
  direct resolver may read `info.context` and nothing else of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLObjectType,
    GraphQLSchema,
    Undefined,
    get_nullable_type,
    is_leaf_type,
    is_non_null_type,
)

PLAIN_LEAF = "msp-console.plain-leaf"
PlainLeaf = tuple[str, GraphQLLeafType, bool]  # attribute, leaf type, non-null
DIRECT = "_msp_console_direct"
F = TypeVar("F", bound=Callable[..., Any])


def direct(resolver: F) -> F:
    """Marks a resolver for graphql-core to call itself (see the module's docstring)."""
    setattr(resolver, DIRECT, True)
    return resolver


def install_direct_resolvers(schema: GraphQLSchema) -> int:
    """Hands the resolvers marked `@direct` to graphql-core; refuses one that needs Strawberry's
    wrapper. Returns how many."""
    installed = 0
    for named, field_name, field, definition in _strawberry_fields(schema):
        resolver = definition.base_resolver
        if resolver is None or not getattr(resolver.wrapped_func, DIRECT, False):
            continue
        where = f"{named.name}.{field_name}"
        if definition.extensions:
            raise TypeError(f"{where}: a direct resolver cannot have permissions or extensions")
        if resolver.parent_parameter or resolver.root_parameter or not resolver.self_parameter:
            raise TypeError(f"{where}: a direct resolver takes (self, info, ...)")
        for argument in definition.arguments:
            scalar = argument.type in (bool, int, float, str)
            if not scalar or argument.python_name not in field.args:
                raise TypeError(f"{where}: argument {argument.python_name} needs converting")
        field.resolve = resolver.wrapped_func
        installed += 1
    return installed


def mark_plain_leaf_fields(schema: GraphQLSchema) -> int:
    """Mark the fields the shortcut may answer; returns how many."""
    marked = 0
    for _, _, field, definition in _strawberry_fields(schema):
        leaf = get_nullable_type(field.type)
        if (
            getattr(field.resolve, "_is_default", False)  # Strawberry's basic field
            and definition.default_resolver is getattr
            and not field.args
            and is_leaf_type(leaf)
        ):
            field.extensions[PLAIN_LEAF] = (
                definition.python_name,
                leaf,
                is_non_null_type(field.type),
            )
            marked += 1
    return marked


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
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # field middleware (an extension with a `resolve` hook) must see every field
        manager = self.middleware_manager
        self.shortcut = manager is None or not manager.middlewares

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        if self.shortcut:
            name = field_details_list[0].node.name.value
            field = self.schema.get_field(parent_type, name)
            plain: PlainLeaf | None = field.extensions.get(PLAIN_LEAF) if field else None
            if plain is not None:
                attribute, leaf, non_null = plain
                try:
                    value = getattr(source, attribute)
                    if value is None and not non_null:
                        return None
                    if not isinstance(value, Exception) and not self.is_awaitable(value):
                        coerced = leaf.coerce_output_value(value)
                        if coerced is not None and coerced is not Undefined:
                            return coerced
                except Exception:  # noqa: S110 - graphql-core's path reports it
                    pass
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
