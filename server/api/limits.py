"""Query limits, checked before anything runs: how deep fields nest, how many aliases there
are, and the cost, counted the way GitHub's node limit is: how many objects a query may return.

Each field that returns an object counts once for every time it may be resolved; scalars cost
nothing. A field is a connection by its type (an object with `edges` and `pageInfo`), whatever
arguments it was given: it counts once, its lists (`edges`) repeat what they select once per
row of the page it may return (`first` or `last`; the default page size when neither is
given), and the rest of it (`pageInfo`) counts once. A list taking `ids` (`nodes(ids:)`)
repeats by the number of ids, the lists of introspection by the longest such list in the
schema; other plain lists (a company's ancestors, the roots of the viewer's scope) count as
one. Arguments are read from literals, the request's variables, or the operation's variable
defaults when the request leaves a variable out. Fields under `@include`/`@skip` count as if
included, so the cost is an upper bound known before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from strawberry.extensions import SchemaExtension

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    OperationDefinitionNode,
    SchemaMetaFieldDef,
    SelectionSetNode,
    TypeMetaFieldDef,
    Undefined,
    get_named_type,
    get_nullable_type,
    value_from_ast_untyped,
)
from server.domain.listing import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

META_FIELDS = {"__schema": SchemaMetaFieldDef, "__type": TypeMetaFieldDef}


@dataclass(frozen=True, slots=True)
class Measure:
    """What a selection set may return: `once` objects, plus `per_row` objects for every row
    of the connection it belongs to (zero outside a connection); how deep its fields nest
    (introspection aside) and how many aliases it holds."""

    once: int = 0
    per_row: int = 0
    depth: int = 0
    aliases: int = 0

    def __add__(self, other: Measure) -> Measure:
        return Measure(
            self.once + other.once,
            self.per_row + other.per_row,
            max(self.depth, other.depth),
            self.aliases + other.aliases,
        )


def is_connection(named: GraphQLNamedType) -> bool:
    return isinstance(named, GraphQLObjectType) and {"edges", "pageInfo"} <= named.fields.keys()


@cache
def introspection_list_lengths(schema: GraphQLSchema) -> dict[tuple[str, str], int]:
    """The longest list each introspection field can return in this schema."""
    types = list(schema.type_map.values())
    with_fields = [t for t in types if isinstance(t, GraphQLObjectType | GraphQLInterfaceType)]
    abstract = [t for t in types if isinstance(t, GraphQLInterfaceType | GraphQLUnionType)]

    def longest(lengths: Iterable[int]) -> int:
        return max(lengths, default=0)

    return {
        ("__Schema", "types"): len(types),
        ("__Schema", "directives"): len(schema.directives),
        ("__Type", "fields"): longest(len(t.fields) for t in with_fields),
        ("__Type", "interfaces"): longest(len(t.interfaces) for t in with_fields),
        ("__Type", "possibleTypes"): longest(len(schema.get_possible_types(t)) for t in abstract),
        ("__Type", "enumValues"): longest(
            len(t.values) for t in types if isinstance(t, GraphQLEnumType)
        ),
        ("__Type", "inputFields"): longest(
            len(t.fields) for t in types if isinstance(t, GraphQLInputObjectType)
        ),
        ("__Field", "args"): longest(len(f.args) for t in with_fields for f in t.fields.values()),
        ("__Directive", "args"): longest(len(d.args) for d in schema.directives),
    }


def page_size(value: Any) -> int:
    """The rows a page argument may return; a value the API will refuse counts the most."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # GraphQL's Int accepts 100.0
    if isinstance(value, bool) or not isinstance(value, int):
        return MAX_PAGE_SIZE
    return max(0, min(value, MAX_PAGE_SIZE))


class QueryMeasure:
    """Measures the operations of a valid document in one pass, each fragment once however
    often it is spread (walking every spread is exponential in nested fragments). A field
    nested deeper than `max_depth` is not looked into: the operation is refused anyway."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        max_depth: int,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = dict(variables)
        self.max_depth = max_depth
        self.fragment_measures: dict[str, Measure] = {}

    def operation(self, operation: OperationDefinitionNode) -> Measure:
        root = self.schema.get_root_type(operation.operation)
        if root is None:
            return Measure()
        return self.selections(operation.selection_set, root, 0)

    def selections(
        self, selection_set: SelectionSetNode, parent: GraphQLNamedType, depth: int
    ) -> Measure:
        total = Measure()
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, depth)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                on = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selections(selection.selection_set, on or parent, depth)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.fragment(selection.name.value)
        return total

    def fragment(self, name: str) -> Measure:
        """A fragment's measure, its depth counted from where it is spread."""
        if name not in self.fragment_measures:
            self.fragment_measures[name] = Measure()  # a cycle (refused by validation)
            definition = self.fragments.get(name)
            on = self.schema.get_type(definition.type_condition.name.value) if definition else None
            if definition is not None and on is not None:
                measure = self.selections(definition.selection_set, on, 0)
                self.fragment_measures[name] = measure
        return self.fragment_measures[name]

    def field(self, node: FieldNode, parent: GraphQLNamedType, depth: int) -> Measure:
        """`depth`: how many fields (with a selection) enclose this one, introspection aside
        (the introspection query GraphiQL sends nests deeper than any limit would allow)."""
        aliases = int(node.alias is not None)
        definition = self.definition(node.name.value, parent)
        if node.selection_set is None or definition is None:
            return Measure(aliases=aliases)
        introspection = node.name.value.startswith("__") or parent.name.startswith("__")
        if not introspection and depth >= self.max_depth:  # too deep: no need to look further
            return Measure(depth=self.max_depth - depth + 1, aliases=aliases)
        named = get_named_type(definition.type)
        below = self.selections(node.selection_set, named, depth + (not introspection))
        nesting = 0 if introspection else 1 + below.depth
        aliases += below.aliases
        if is_connection(named):
            returned = 1 + below.once + self.page_size(node) * below.per_row
            return Measure(once=returned, depth=nesting, aliases=aliases)
        returned = 1 + below.once
        if not isinstance(get_nullable_type(definition.type), GraphQLList):
            return Measure(once=returned, depth=nesting, aliases=aliases)
        if is_connection(parent):  # `edges`: once per row of the page
            return Measure(per_row=returned, depth=nesting, aliases=aliases)
        length = self.list_length(node, parent)
        return Measure(once=length * returned, depth=nesting, aliases=aliases)

    def definition(self, name: str, parent: GraphQLNamedType) -> GraphQLField | None:
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType) and name in parent.fields:
            return parent.fields[name]
        return META_FIELDS.get(name) if parent is self.schema.query_type else None

    def list_length(self, node: FieldNode, parent: GraphQLNamedType) -> int:
        lengths = introspection_list_lengths(self.schema)
        if (parent.name, node.name.value) in lengths:
            return lengths[parent.name, node.name.value]
        ids = self.argument(node, "ids")
        if isinstance(ids, list):
            return len(ids)
        return 1  # one id given as a bare value, or a plain list that is short by nature

    def page_size(self, node: FieldNode) -> int:
        given = (self.argument(node, name) for name in ("first", "last"))
        sizes = [
            page_size(value) for value in given if value is not None and value is not Undefined
        ]
        return max(sizes, default=DEFAULT_PAGE_SIZE)

    def argument(self, node: FieldNode, name: str) -> Any:
        for argument in node.arguments or ():
            if argument.name.value == name:
                return value_from_ast_untyped(argument.value, self.variables)
        return Undefined


def variable_values(
    operation: OperationDefinitionNode, given: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The request's variables over the operation's defaults (a default counts as given)."""
    defaults = {
        definition.variable.name.value: value_from_ast_untyped(definition.default_value)
        for definition in operation.variable_definitions or ()
        if definition.default_value is not None
    }
    return {**defaults, **(given if isinstance(given, Mapping) else {})}


def measure_operation(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    max_depth: int,
) -> Measure:
    """The measure of the operation a request runs (the largest, when the name is ambiguous:
    such a request fails anyway)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    measures = [
        QueryMeasure(schema, fragments, variable_values(d, variables), max_depth).operation(d)
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
        and (operation_name is None or (d.name is not None and d.name.value == operation_name))
    ]
    return Measure(
        once=max((m.once for m in measures), default=0),
        depth=max((m.depth for m in measures), default=0),
        aliases=max((m.aliases for m in measures), default=0),
    )


class QueryLimits(SchemaExtension):
    """Refuses an operation nested too deep, with too many aliases, or costing too much,
    before anything runs; reports the cost in `extensions.cost`.

    Listed after ValidationCache: a document that failed validation is not measured (its
    errors say enough), and these errors take the place of the (empty) validation errors,
    which makes Strawberry refuse the operation without validating again."""

    def __init__(self, max_depth: int, max_aliases: int, max_cost: int) -> None:
        self.max_depth = max_depth
        self.max_aliases = max_aliases
        self.max_cost = max_cost
        self.cost: int | None = None

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and not context.pre_execution_errors:
            measure = measure_operation(
                context.schema._schema,
                document,
                context.operation_name,
                context.variables,
                self.max_depth,
            )
            context.pre_execution_errors = self.refusals(measure)
        yield

    def refusals(self, measure: Measure) -> list[GraphQLError]:
        if measure.depth > self.max_depth:
            return [
                GraphQLError(
                    f"the query exceeds maximum operation depth of {self.max_depth}",
                    extensions={"code": "QUERY_TOO_DEEP"},
                )
            ]
        self.cost = measure.once
        errors = []
        if measure.aliases > self.max_aliases:
            errors.append(
                GraphQLError(
                    f"{measure.aliases} aliases found, at most {self.max_aliases} allowed",
                    extensions={"code": "TOO_MANY_ALIASES"},
                )
            )
        if self.cost > self.max_cost:
            errors.append(
                GraphQLError(
                    f"query cost {self.cost} exceeds the limit of {self.max_cost}: "
                    "ask for smaller pages or fewer fields",
                    extensions={"code": "QUERY_TOO_COSTLY", "cost": self.cost},
                )
            )
        return errors

    def get_results(self) -> dict[str, Any]:
        if self.cost is None:
            return {}
        return {"cost": {"requested": self.cost, "limit": self.max_cost}}
