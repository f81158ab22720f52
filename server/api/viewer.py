"""The viewer: who is signed in (`viewer`): its account, its console user, its instance, and
the portal it came through."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from server.api.accounts import Account, own_account
from server.api.authentication import query
from server.api.context import Context
from server.api.enums import Service
from server.api.instances import Instance, own_instance
from server.api.users import User
from server.domain import users


@strawberry.type
class Viewer:
    via: Service | None
    _context: strawberry.Private[Context]

    @strawberry.field
    async def account(self) -> Account | None:
        return await own_account(self._context)

    @strawberry.field
    async def user(self) -> User | None:
        scope = self._context.scope
        found = await users.own_user(scope) if scope is not None else None
        return User.of(found) if found else None

    @strawberry.field
    async def instance(self) -> Instance | None:
        return await own_instance(self._context)


def viewer_of(context: Context) -> Viewer:
    return Viewer(via=context.session.via if context.session else None, _context=context)


@strawberry.type
class ViewerQueries:
    @query()
    def viewer(self, info: Info[Context, None]) -> Viewer | None:
        return viewer_of(info.context)
