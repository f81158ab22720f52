"""Test data, built through the domain functions (and the ORM for computers)."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass, field

from tortoise.transactions import in_transaction

from server.domain import accounts, counters, hierarchy, licenses, tree_paths
from server.domain.connections import announce_transitions
from server.domain.instances import create_instance
from server.models import Company, Computer, License, StaticGroup
from server.models.enums import CompanyType, GroupKind, LicenseState, Service, SetupState
from server.settings import Settings
from tests.graphql_client import GraphQLClient

WATCHER = Settings(database_url="sqlite://:memory:", secret_key="factories-" + "0" * 40)

PASSWORD = "correct horse battery"
_serial = itertools.count(1)

LOGIN = """mutation($input: LoginInput!) {
  login(input: $input) { token errors { code message field } viewer { via } }
}"""


def unique_email(prefix: str = "owner") -> str:
    return f"{prefix}-{next(_serial)}-{uuid.uuid4().hex[:6]}@example.test"


@dataclass
class Owner:
    email: str
    account_id: int
    token: str
    instance_id: int | None = None


async def login(client: GraphQLClient, email: str, password: str, via: str | None) -> str:
    data = await client.query(LOGIN, {"input": {"email": email, "password": password, "via": via}})
    assert data["login"]["errors"] == [], data
    return data["login"]["token"]


async def owner(
    client: GraphQLClient,
    services: tuple[Service, ...] = (Service.EBA, Service.EMA2),
    via: Service = Service.EBA,
    with_instance: bool = True,
) -> Owner:
    """An account signed in through `via`, with its instance created through `via`."""
    email = unique_email()
    account = await accounts.create_account(email, PASSWORD, list(services))
    token = await login(client, email, PASSWORD, via.value)
    instance_id = None
    if with_instance:
        instance_id = (await create_instance(account.id, via, f"Console of {email}")).id
    return Owner(email, account.id, token, instance_id)


@dataclass
class Tree:
    manager: Company
    msps: list[Company] = field(default_factory=list)
    customers: dict[int, list[Company]] = field(default_factory=dict)  # by msp id
    computers: dict[int, list[Computer]] = field(default_factory=dict)  # by customer id

    @property
    def all_customers(self) -> list[Company]:
        return [c for cs in self.customers.values() for c in cs]


async def company_tree(
    instance_id: int,
    msps: int = 2,
    customers_per_msp: int = 3,
    computers_per_customer: int = 2,
    prefix: str = "",
) -> Tree:
    """An MSP Manager with `msps` MSPs, each with customers, each with computers."""
    manager = await hierarchy.add_company(
        instance_id, uuid.uuid4().hex, f"{prefix}Manager", CompanyType.MSP_MANAGER, None
    )
    result = Tree(manager)
    for m in range(msps):
        msp = await hierarchy.add_company(
            instance_id, uuid.uuid4().hex, f"{prefix}MSP {m:02d}", CompanyType.MSP, manager
        )
        result.msps.append(msp)
        result.customers[msp.id] = []
        for c in range(customers_per_msp):
            customer = await hierarchy.add_company(
                instance_id,
                uuid.uuid4().hex,
                f"{prefix}Customer {m:02d}-{c:02d}",
                CompanyType.CUSTOMER,
                msp,
            )
            result.customers[msp.id].append(customer)
            result.computers[customer.id] = [
                await computer(instance_id, customer, f"{prefix}pc-{m}-{c}-{n}")
                for n in range(computers_per_customer)
            ]
    return result


async def computer(
    instance_id: int,
    company: Company,
    name: str,
    last_connected_at: dt.datetime | None = None,
    group: StaticGroup | None = None,
) -> Computer:
    group = group or await StaticGroup.get(company_id=company.id, kind=GroupKind.COMPANY)
    async with in_transaction():  # counted, as an enrolment counts the computers it makes
        made = await Computer.create(
            instance_id=instance_id,
            group=group,
            company=company,
            name=name,
            sort_name=tree_paths.sort_name(name),
            hardware_id=uuid.uuid4().hex,
            last_connected_at=last_connected_at,
        )
        await counters.shift_held(
            counters.computer_held(instance_id, group.path, 1, made.announced_status)
        )
    return made


async def set_status(company: Company, setup: SetupState, unlinked: bool = False) -> None:
    company.setup_state = setup
    company.unlinked_at = dt.datetime.now(dt.UTC) if unlinked else None
    await company.save(update_fields=["setup_state", "unlinked_at"])
    await counters.recount(company.instance_id)  # type: ignore[attr-defined]  # written directly


def global_id(model: object) -> str:
    from server.domain import global_ids

    return global_ids.encode(type(model).__name__, model.id)  # type: ignore[attr-defined]


_license_serial = itertools.count(1)


async def license(
    instance_id: int,
    company: Company,
    *,
    seats: int = 10,
    activated: int = 5,
    state: LicenseState = LicenseState.ACTIVE,
    product_code: int = 101,
    product_name: str = "ESET PROTECT Entry",
    trial: bool = False,
    expires_at: dt.datetime | None = None,
    key: str | None = None,
) -> License:
    """A license of a company, as a sync would store it (and count it)."""
    key = key or f"LIC-{next(_license_serial):06d}-{uuid.uuid4().hex[:6].upper()}"
    async with in_transaction():
        made = await License.create(
            instance_id=instance_id,
            company=company,
            public_license_key=key,
            product_code=product_code,
            product_name=product_name,
            seats=seats,
            activated=activated,
            state=state,
            trial=trial,
            expires_at=expires_at,
            search_text=licenses.search_text(key, product_name),
        )
        row = {"seats": seats, "activated": activated, "state": state.value}
        await counters.shift_licenses(instance_id, [(company.id, row, 1)])
    return made


async def check_in(computer: Computer, at: dt.datetime) -> None:
    """A check-in at `at`, then the connection watcher's announcement of what it changed (what
    seat usage counts)."""
    computer.last_connected_at = at
    await computer.save(update_fields=["last_connected_at"])
    await announce_transitions(None, WATCHER, at, instance_id=computer.instance_id)
