"""Query limits beyond depth, aliases and tokens: a cost limit in the manner of GitHub and
Shopify. An object (a field with a selection) costs 1, scalars nothing; a connection (a field
taking `first`/`last`) multiplies what is selected below it by the page size asked for (50 when
unsaid), and `nodes(ids:)` by the number of ids. The cost is checked before anything runs and
reported in `extensions.cost`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from strawberry.extensions import SchemaExtension

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    value_from_ast_untyped,
)
from server.domain.listing import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

MAX_FRAGMENT_DEPTH = 50


def _page_size(node: FieldNode, variables: dict[str, Any]) -> int | None:
    sizes: list[int] = []
    for argument in node.arguments or ():
        if argument.name.value in {"first", "last", "ids"}:
            value = value_from_ast_untyped(argument.value, variables)
            if argument.name.value == "ids":
                sizes.append(len(value) if isinstance(value, list) else 1)
            elif isinstance(value, int) and not isinstance(value, bool):
                sizes.append(max(0, min(value, MAX_PAGE_SIZE)))
            else:
                sizes.append(DEFAULT_PAGE_SIZE)
    if sizes:
        return max(sizes)
    if any(a.name.value in {"after", "before"} for a in node.arguments or ()):
        return DEFAULT_PAGE_SIZE
    return None


def selection_cost(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    depth: int = 0,
) -> int:
    if selection_set is None or depth > MAX_FRAGMENT_DEPTH:
        return 0
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value.startswith("__"):
                continue
            if selection.selection_set is None:
                continue
            below = selection_cost(selection.selection_set, fragments, variables, depth + 1)
            size = _page_size(selection, variables)
            total += 1 + (below * size if size is not None else below)
        elif isinstance(selection, InlineFragmentNode):
            total += selection_cost(selection.selection_set, fragments, variables, depth + 1)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                total += selection_cost(fragment.selection_set, fragments, variables, depth + 1)
    return total


def operation_cost(
    document: DocumentNode, operation_name: str | None, variables: dict[str, Any]
) -> int:
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return max(
        (
            selection_cost(d.selection_set, fragments, variables)
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
            and (operation_name is None or (d.name is not None and d.name.value == operation_name))
        ),
        default=0,
    )


class CostLimit(SchemaExtension):
    """Refuses an operation whose cost exceeds the limit, before any resolver runs.

    Listed after ValidationCache: its errors join the (cached) validation errors, and setting
    them makes Strawberry skip validating again."""

    def __init__(self, max_cost: int) -> None:
        self.max_cost = max_cost
        self.cost: int | None = None

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None:
            try:
                self.cost = operation_cost(
                    document, context.operation_name, context.variables or {}
                )
            except (TypeError, ValueError):  # variables of the wrong shape: validation says so
                self.cost = None
            if self.cost is not None and self.cost > self.max_cost:
                error = GraphQLError(
                    f"query cost {self.cost} exceeds the limit of {self.max_cost}: "
                    "ask for smaller pages or fewer fields",
                    extensions={"code": "QUERY_TOO_COSTLY", "cost": self.cost},
                )
                context.pre_execution_errors = [*(context.pre_execution_errors or []), error]
        yield

    def get_results(self) -> dict[str, Any]:
        if self.cost is None:
            return {}
        return {"cost": {"requested": self.cost, "limit": self.max_cost}}
