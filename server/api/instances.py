"""Instances: created through one service, reached through all of the account's, removed only
through the creating one (`instance`, `createInstance`, `removeInstance`)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from server.api.accounts import service_name
from server.api.authentication import query, refresh
from server.api.context import Context
from server.api.enums import MspStatus, Service
from server.api.errors import ForbiddenError
from server.api.mutations import mutation, mutation_input, payload
from server.api.node import Node, decode_id, resolves
from server.api.sync import SyncRun
from server.domain import accounts, audit, global_ids, instances, sync_runs
from server.domain.errors import DomainError
from server.models import Account as AccountModel
from server.models import Instance as InstanceModel


@strawberry.type
class Instance(Node):
    id: strawberry.ID
    name: str
    created_via: Service
    accessible_via: list[Service]
    model: strawberry.Private[InstanceModel]

    @classmethod
    def of(cls, model: InstanceModel, account: AccountModel) -> Instance:
        return cls(
            id=strawberry.ID(global_ids.encode("Instance", model.id)),
            name=model.name,
            created_via=model.created_via,
            accessible_via=instances.accessible_via(model, account),
            model=model,
        )

    @strawberry.field
    async def msp_status(self) -> MspStatus:
        return MspStatus(await instances.msp_status(self.model))

    @strawberry.field(description="The MSP Administrator this instance syncs from, if any.")
    def msp_administrator_url(self) -> str | None:
        return self.model.upstream_url

    @strawberry.field(description="The latest sync run.")
    async def last_sync(self, info: Info[Context, None]) -> SyncRun | None:
        run = await sync_runs.latest(info.context.require_scope())
        return SyncRun.of(run) if run else None


async def own_instance(context: Context) -> Instance | None:
    """The viewer's instance; None for an account that has not created it yet."""
    if context.scope is None:
        return None
    found = await instances.own_instance(context.scope)
    return Instance.of(found, found.owner) if found else None


@resolves("Instance")
async def instance_node(info: Info[Context, None], key: int) -> Instance | None:
    instance = await own_instance(info.context)
    return instance if instance and instance.model.id == key else None


@strawberry.type
class InstanceQueries:
    @query()
    async def instance(self, info: Info[Context, None]) -> Instance | None:
        return await own_instance(info.context)


@mutation_input
class CreateInstanceInput:
    name: str | None = None


@payload
class CreateInstancePayload:
    instance: Instance | None = None


@mutation_input
class RemoveInstanceInput:
    instance_id: strawberry.ID


@payload
class RemoveInstancePayload:
    removed_instance_id: strawberry.ID | None = None


def _portal_session(context: Context) -> tuple[accounts.SessionInfo, int, Service]:
    """The session with its account and service: only an account owner signed in through a
    portal acts on its instance."""
    session = context.require_session()
    if session.via is None or session.account_id is None:
        raise ForbiddenError("only an account owner signed in through a portal may do this")
    return session, session.account_id, session.via


@strawberry.type
class InstanceMutations:
    @mutation("Create the account's instance through the service of the session.")
    async def create_instance(
        self, info: Info[Context, None], input: CreateInstanceInput
    ) -> CreateInstancePayload:
        context = info.context
        session, account_id, via = _portal_session(context)
        async with audit.recorded(
            context.scope,
            session.user_id,
            "createInstance",
            "Instance",
            session.instance_id,
            instance_id=session.instance_id,
        ) as entry:
            created = await instances.create_instance(account_id, via, input.name)
            entry.instance_id = entry.object_id = created.id
            entry.actor = await instances.owner_user_id(created)
        await refresh(context)
        return CreateInstancePayload(instance=await own_instance(context))

    @mutation("Remove the instance; only through the service that created it.")
    async def remove_instance(
        self, info: Info[Context, None], input: RemoveInstanceInput
    ) -> RemoveInstancePayload:
        context = info.context
        session, account_id, via = _portal_session(context)
        key = decode_id(input.instance_id, "Instance", "instanceId")
        try:
            await instances.remove_instance(account_id, via, key)
        except DomainError as exc:
            if key == session.instance_id:  # a success takes the instance's log with it
                await audit.record(
                    context.scope,
                    session.user_id,
                    "removeInstance",
                    "Instance",
                    key,
                    outcome=exc.code,
                    detail={"via": service_name(via)},
                )
            raise
        await refresh(context)
        return RemoveInstancePayload(removed_instance_id=input.instance_id)
