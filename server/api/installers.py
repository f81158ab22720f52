"""Installers as the API shows them (the token is never readable: it is shown once, by the
mutation that creates the installer)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from server.api.context import Context
from server.api.mutations import audited, mutation, mutation_input, payload
from server.api.node import Node, decode_id, decode_optional_id, refetchable
from server.api.pagination import Connection, page_request, paginate
from server.domain import global_ids, installers
from server.domain.installers import agent_endpoint
from server.models import Installer as InstallerModel

if TYPE_CHECKING:
    from server.api.companies import Company
    from server.api.groups import StaticGroup


@strawberry.type
class Installer(Node):
    id: strawberry.ID
    name: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked: bool
    max_enrolments: int | None = strawberry.field(
        description="How many enrolments it may make; null: as many as it lives to make."
    )
    enrolments: int = strawberry.field(
        description="Enrolments made with it (re-enrolments and duplicates count too)."
    )
    model: strawberry.Private[InstallerModel]

    @classmethod
    def of(cls, model: InstallerModel) -> Installer:
        return cls(
            id=strawberry.ID(global_ids.encode("Installer", model.id)),
            name=model.name,
            created_at=model.created_at,
            expires_at=model.expires_at,
            revoked=model.revoked_at is not None,
            max_enrolments=model.max_enrolments,
            enrolments=model.enrolments,
            model=model,
        )

    @strawberry.field(description="The public URL agents will call.")
    def agent_endpoint(self, info: Info[Context, None]) -> str:
        return agent_endpoint(info.context.settings)

    @strawberry.field
    async def company(
        self, info: Info[Context, None]
    ) -> Annotated[Company, strawberry.lazy("server.api.companies")]:
        from server.api.companies import owning_company

        return await owning_company(info, self.model.company_id, f"installer {self.model.id}")

    @strawberry.field
    async def group(
        self, info: Info[Context, None]
    ) -> Annotated[StaticGroup, strawberry.lazy("server.api.groups")]:
        from server.api.groups import StaticGroup

        found = await info.context.loaders.group_by_id.load(self.model.group_id)
        if found is None:  # INSTALLERS on the group is what makes the installer visible
            raise RuntimeError(f"installer {self.model.id} has no visible group")
        return StaticGroup.of(found)


refetchable("Installer", lambda loaders: loaders.installer_by_id, Installer.of)


async def company_installers(
    info: Info[Context, None],
    company_id: int,
    first: int | None,
    after: str | None,
    include_revoked: bool,
) -> Connection[Installer]:
    request = page_request(first, after, key_length=1)
    listing = installers.of_company(info.context.require_scope(), company_id, include_revoked)
    return await paginate(listing, request, Installer.of)


@mutation_input
class CreateInstallerInput:
    company_id: strawberry.ID
    group_id: strawberry.ID | None = None
    name: str | None = None
    expires_at: dt.datetime | None = strawberry.field(
        default=None,
        description="When it stops enrolling; omitted: MSP_CONSOLE_INSTALLER_TTL_DAYS from now.",
    )
    max_enrolments: int | None = strawberry.field(
        default=None, description="How many enrolments it may make (1 to 1,000,000)."
    )


@payload
class CreateInstallerPayload:
    installer: Installer | None = None
    token: str | None = strawberry.field(default=None, description="Shown this once only.")
    config: JSON | None = strawberry.field(
        default=None, description="What an agent needs (URL, token, group): save it as a file."
    )
    install_command: str | None = strawberry.field(
        default=None,
        description="A POSIX shell command (curl) that enrols the machine it runs on; run "
        "again, it re-enrols the same computer. It keeps its state in MSP_AGENT_STATE_DIR "
        "(default /var/lib/msp-console-agent).",
    )


@mutation_input
class RevokeInstallerInput:
    installer_id: strawberry.ID


@payload
class RevokeInstallerPayload:
    installer: Installer | None = None


@strawberry.type
class InstallerMutations:
    @mutation("An agent installer for a company's group (or a custom group in it).")
    async def create_installer(
        self, info: Info[Context, None], input: CreateInstallerInput
    ) -> CreateInstallerPayload:
        context = info.context
        company_id = decode_id(input.company_id, "Company", "companyId")
        group_id = decode_optional_id(input.group_id, "StaticGroup", "groupId")
        settings = context.settings
        async with audited(context, "createInstaller", "Company", company_id) as entry:
            installer, token = await installers.create_installer(
                context.require_scope(),
                company_id=company_id,
                group_id=group_id,
                name=input.name,
                expires_at=input.expires_at,
                max_enrolments=input.max_enrolments,
                ttl_days=settings.installer_ttl_days,
                created_by_id=context.require_session().user_id,
            )
            entry.object_type, entry.object_id = "Installer", installer.id
            entry.group_path = await installers.group_path_of(installer)
        return CreateInstallerPayload(
            installer=Installer.of(installer),
            token=token,
            config=JSON(installers.installer_config(installer, token, settings)),
            install_command=installers.installer_command(installer, token, settings),
        )

    @mutation("Revoke an installer: it enrols nothing more.")
    async def revoke_installer(
        self, info: Info[Context, None], input: RevokeInstallerInput
    ) -> RevokeInstallerPayload:
        context = info.context
        key = decode_id(input.installer_id, "Installer", "installerId")
        async with audited(context, "revokeInstaller", "Installer", key) as entry:
            installer = await installers.revoke_installer(context.require_scope(), key)
            entry.group_path = installer.group.path
        return RevokeInstallerPayload(installer=Installer.of(installer))
