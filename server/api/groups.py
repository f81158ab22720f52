"""Static groups: the Computers tree (All > Companies > one group per company, custom groups)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from server.api.authentication import query
from server.api.computers import computers_field
from server.api.context import Context
from server.api.execution import direct
from server.api.loaders import MISSING, cached
from server.api.node import Node, refetchable
from server.api.pagination import Connection, page_request
from server.domain import global_ids, groups, tree_paths
from server.models import StaticGroup as GroupModel

if TYPE_CHECKING:
    from server.api.companies import Company


@strawberry.type
class StaticGroup(Node):
    id: strawberry.ID
    name: str
    depth: int
    kind: str = strawberry.field(description="all, companies, company, custom or shared_objects.")
    description: str
    model: strawberry.Private[GroupModel]

    @classmethod
    def of(cls, model: GroupModel) -> StaticGroup:
        return cls(
            id=strawberry.ID(global_ids.encode("StaticGroup", model.id)),
            name=model.name,
            depth=model.depth,
            kind=model.kind.value,
            description=model.description,
            model=model,
        )

    @strawberry.field
    async def parent(self, info: Info[Context, None]) -> StaticGroup | None:
        parent_id = self.model.parent_id
        if parent_id is None:
            return None
        found = await info.context.loaders.group_by_id.load(parent_id)
        return StaticGroup.of(found) if found else None

    @strawberry.field(description="Top first, only what the viewer may see.")
    async def ancestors(self, info: Info[Context, None]) -> list[StaticGroup]:
        found = await info.context.loaders.group_by_path.load_many(
            tree_paths.ancestor_paths(self.model.path)
        )
        return [StaticGroup.of(g) for g in found if g is not None]

    @strawberry.field
    async def children(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[StaticGroup]:
        request = page_request(first, after)
        loaders = info.context.loaders
        page = await loaders.group_children_page.load((self.model.id, request))
        loaders.prime_groups(page.items)
        return Connection.of(
            page,
            StaticGroup.of,
            lambda: loaders.group_children_count.load((self.model.id, None)),
        )

    @strawberry.field(description="The company this group mirrors, if any.")
    async def company(
        self, info: Info[Context, None]
    ) -> Annotated[Company, strawberry.lazy("server.api.companies")] | None:
        from server.api.companies import Company

        company_id = self.model.company_id
        if company_id is None or self.model.kind.value != "company":
            return None
        found = await info.context.loaders.company_by_id.load(company_id)
        return Company.of(found) if found else None

    @strawberry.field(graphql_type=int)  # the schema type; graphql-core awaits an awaitable
    @direct
    def computer_count(
        self, info: Info[Context, None], recursive: bool = True
    ) -> int | Awaitable[int]:
        loader = info.context.loaders.computer_count
        count = cached(loader, (self.model.id, recursive))
        if count is MISSING:
            return loader.load((self.model.id, recursive))
        return count

    computers = computers_field(lambda group, _: group.model)


refetchable("StaticGroup", lambda loaders: loaders.group_by_id, StaticGroup.of)


@strawberry.type
class GroupQueries:
    @query("The tops of the group tree the viewer may see.")
    async def root_groups(self, info: Info[Context, None]) -> list[StaticGroup]:
        found = await groups.roots(info.context.require_scope())
        info.context.loaders.prime_groups(found)
        return [StaticGroup.of(g) for g in found]
