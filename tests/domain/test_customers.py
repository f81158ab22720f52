"""The customer lifecycle in the domain: rights capped to the actor's, conditional transitions
under concurrency, the unlink helpers the sync shares, one statement for skip-all."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from server.domain import customers
from server.domain.access import Scope
from server.domain.accounts import create_account
from server.domain.errors import InvalidTransition, NotFound, PermissionDenied
from server.domain.installers import create_installer
from server.domain.instances import create_instance
from server.models import Company, Installer, Session, StaticGroup, User, db
from server.models.enums import Area, GroupKind, Level, Service, SetupState
from tests import factories


@pytest.fixture
async def world(app):
    account = await create_account(factories.unique_email(), "long enough password", [Service.EBA])
    instance = await create_instance(account.id, Service.EBA, None)
    tree = await factories.company_tree(
        instance.id, msps=2, customers_per_msp=3, computers_per_customer=0
    )
    root = await StaticGroup.get(instance_id=instance.id, kind=GroupKind.ALL)
    owner = await User.get(instance_id=instance.id)
    return Scope.for_owner(instance.id, owner.id, root.path), tree


async def native_user(instance_id: int, group: StaticGroup, enabled: bool = True) -> User:
    user = await User.create(
        instance_id=instance_id,
        email=factories.unique_email("native"),
        password_hash="x",
        home_group=group,
        enabled=enabled,
    )
    await Session.create(
        token_hash=uuid.uuid4().hex,
        user=user,
        expires_at=customers.utcnow(),
        last_seen_at=customers.utcnow(),
    )
    return user


def scope_on(scope: Scope, path: str, levels: dict[Area, Level]) -> Scope:
    return Scope(
        scope.instance_id, scope.user_id, False, {a: ((path, lv),) for a, lv in levels.items()}
    )


def test_levels_are_capped_to_what_the_actor_holds_on_every_path():
    scope = Scope(
        1,
        1,
        False,
        {
            Area.COMPUTERS: (("/1/", Level.USE),),
            Area.GROUPS: (("/1/2/", Level.WRITE), ("/1/3/", Level.READ)),
        },
    )
    template = {Area.COMPUTERS: Level.WRITE, Area.GROUPS: Level.USE, Area.SYNC: Level.READ}
    assert customers.capped_levels(scope, template, ["/1/2/"]) == {
        Area.COMPUTERS: Level.USE,
        Area.GROUPS: Level.USE,
    }
    assert customers.capped_levels(scope, template, ["/1/2/", "/1/3/"]) == {
        Area.COMPUTERS: Level.USE,
        Area.GROUPS: Level.READ,
    }
    assert customers.capped_levels(scope, template, []) == {}


async def test_setup_and_skip_racing_in_the_domain_exactly_one_wins(world):
    scope, tree = world
    for customer in tree.all_customers:
        results = await asyncio.gather(
            customers.setup_customer(scope, scope.user_id, customer.id, None, True),
            customers.skip_customer_setup(scope, scope.user_id, customer.id),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1 and isinstance(failures[0], InvalidTransition), results
        installers_made = await Installer.filter(company_id=customer.id).count()
        state = (await Company.get(id=customer.id)).setup_state
        assert (state, installers_made) in {(SetupState.DONE, 1), (SetupState.SKIPPED, 0)}


async def test_out_of_scope_is_not_found_and_missing_rights_forbidden(world):
    scope, tree = world
    msp_a, msp_b = tree.msps
    group_a = await StaticGroup.get(company_id=msp_a.id, kind=GroupKind.COMPANY)
    reader = scope_on(scope, group_a.path, {Area.COMPANIES: Level.READ})
    with pytest.raises(NotFound):
        await customers.skip_customer_setup(reader, None, tree.customers[msp_b.id][0].id)
    with pytest.raises(PermissionDenied):
        await customers.skip_customer_setup(reader, None, tree.customers[msp_a.id][0].id)
    # WRITE on companies but nothing on the Shared Objects: the setup is refused.
    writer = scope_on(
        scope,
        (await factories_group(tree.customers[msp_a.id][0])).path,
        {
            Area.COMPANIES: Level.WRITE,
            Area.INSTALLERS: Level.WRITE,
        },
    )
    with pytest.raises(PermissionDenied):
        await customers.setup_customer(writer, None, tree.customers[msp_a.id][0].id, None, True)
    assert (await Company.get(id=tree.customers[msp_a.id][0].id)).setup_state == SetupState.PENDING


async def factories_group(company: Company) -> StaticGroup:
    return await StaticGroup.get(company_id=company.id, kind=GroupKind.COMPANY)


async def test_the_unlink_helpers_touch_only_the_customers_enabled_native_users(world):
    scope, tree = world
    customer, other = tree.customers[tree.msps[0].id][:2]
    group = await factories_group(customer)
    custom = await StaticGroup.create(
        instance_id=scope.instance_id,
        name="Lab",
        kind=GroupKind.CUSTOM,
        parent=group,
        path="",
        sort_key="",
        depth=group.depth + 1,
    )
    custom.path = f"{group.path}{custom.id}/"
    await custom.save(update_fields=["path"])
    inside = await native_user(scope.instance_id, group)
    deeper = await native_user(scope.instance_id, custom)
    already_off = await native_user(scope.instance_id, group, enabled=False)
    elsewhere = await native_user(scope.instance_id, await factories_group(other))
    installer, _ = await create_installer(scope, company_id=customer.id)
    other_installer, _ = await create_installer(scope, company_id=other.id)

    result = await customers.unlink_customer(scope, scope.user_id, customer.id)
    assert sorted(result.disabled_user_ids) == sorted([inside.id, deeper.id])
    assert result.revoked_installers == 1
    assert (await Installer.get(id=other_installer.id)).revoked_at is None
    assert not await Session.filter(user_id__in=[inside.id, deeper.id]).exists()
    assert await Session.filter(user_id=elsewhere.id).exists()
    assert (await User.get(id=already_off.id)).disabled_by_unlink_id is None

    relinked = await customers.relink_customer(scope, scope.user_id, customer.id)
    assert sorted(relinked.enabled_user_ids) == sorted([inside.id, deeper.id])
    assert not (await User.get(id=already_off.id)).enabled
    assert (await Installer.get(id=installer.id)).revoked_at is not None


async def test_skip_for_all_is_one_update_whatever_the_number_of_customers(app):
    counts = []
    for per_msp in (2, 12):
        account = await create_account(
            factories.unique_email(), "long enough password", [Service.EBA]
        )
        instance = await create_instance(account.id, Service.EBA, None)
        await factories.company_tree(
            instance.id, msps=2, customers_per_msp=per_msp, computers_per_customer=0
        )
        root = await StaticGroup.get(instance_id=instance.id, kind=GroupKind.ALL)
        owner = await User.get(instance_id=instance.id)
        scope = Scope.for_owner(instance.id, owner.id, root.path)
        with db.count_statements() as counter:
            skipped = await customers.skip_setup_for_all_new_customers(scope, owner.id)
        assert len(skipped) == 2 * per_msp
        counts.append(counter.count)
        assert sum(s.startswith("UPDATE company") for s in counter.statements) == 1
        # and the subtree counters of every path, in one upsert
        assert sum(s.startswith("INSERT INTO subtree_count") for s in counter.statements) == 1
    assert counts[0] == counts[1]
