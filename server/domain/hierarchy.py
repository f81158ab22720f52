"""Placing companies in the tree: each company gets its static group (and MSPs and MSP
Managers a Shared Objects group), under its parent's group or under `Companies` at the top."""

from __future__ import annotations

from server.domain import counters, tree_paths
from server.domain.instances import COMPANIES_GROUP, create_group
from server.models import Company, StaticGroup
from server.models.enums import CompanyType, GroupKind, SetupState

SHARED_OBJECTS_GROUP = "Shared Objects"
SHARES_OBJECTS = {CompanyType.MSP, CompanyType.MANAGED_MSP, CompanyType.MSP_MANAGER}


async def companies_group(instance_id: int) -> StaticGroup:
    return await StaticGroup.get(instance_id=instance_id, kind=GroupKind.COMPANIES)


async def add_company(
    instance_id: int,
    public_id: str,
    name: str,
    type: CompanyType,
    parent: Company | None,
    *,
    read_only: bool = False,
    upstream_status: int = 1,
) -> Company:
    """Create a company with its group; one at a time (the sync inserts in batches)."""
    parent_group = (
        await StaticGroup.get(company_id=parent.id, kind=GroupKind.COMPANY)
        if parent
        else await companies_group(instance_id)
    )
    company = await Company.create(
        instance_id=instance_id,
        public_id=public_id,
        name=name,
        sort_name=tree_paths.sort_name(name),
        type=type,
        parent=parent,
        path="",
        sort_key="",
        depth=0 if parent is None else parent.depth + 1,
        read_only=read_only,
        upstream_status=upstream_status,
        setup_state=SetupState.PENDING,
    )
    group = await create_group(instance_id, name, GroupKind.COMPANY, parent_group, company.id)
    company.path, company.sort_key = group.path, group.sort_key
    await company.save(update_fields=["path", "sort_key"])
    await counters.shift(instance_id, [(company.path, None, counters.company_column(company))])
    if type in SHARES_OBJECTS:
        await create_group(
            instance_id, SHARED_OBJECTS_GROUP, GroupKind.SHARED_OBJECTS, group, company.id
        )
    return company


__all__ = ["COMPANIES_GROUP", "SHARED_OBJECTS_GROUP", "add_company"]
