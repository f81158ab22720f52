"""DataLoaders built per request (per event for subscriptions), all bound to the viewer's scope:
nested reads cost one statement per level, whatever the number of rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Hashable, Sequence
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader

from server.domain import (
    audit,
    companies,
    computers,
    groups,
    installers,
    licenses,
    permission_sets,
    sync_runs,
    users,
)
from server.domain.access import Scope
from server.domain.listing import Page, PageRequest
from server.models import Company, Computer, License, StaticGroup, SyncRun
from server.models.enums import CompanyType
from server.settings import Settings

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")
MISSING: Any = object()


def cached(loader: DataLoader[Any, Any], key: Hashable) -> Any:
    """The value a loader already holds for `key`, or MISSING: a resolver that finds it
    answers without awaiting (an awaited resolver costs graphql-core a task per row)."""
    future = loader.cache_map.get(key)
    if future is None or not future.done() or future.cancelled() or future.exception():
        return MISSING
    return future.result()


def required(
    loader: DataLoader[Any, Any], key: Hashable, wrap: Callable[[Any], T], broken: str
) -> T | Awaitable[T]:
    """For a direct resolver, the row its object cannot be without, wrapped: at once when the
    loader holds it (see `cached`), else awaitable. A miss is a broken invariant, not a user
    error: it raises `broken` formatted with the key."""
    found = cached(loader, key)
    if found is MISSING:
        return _required(loader.load(key), key, wrap, broken)
    return _present(found, key, wrap, broken)


def _present(found: Any, key: Hashable, wrap: Callable[[Any], T], broken: str) -> T:
    if found is None:
        raise RuntimeError(broken.format(key))
    return wrap(found)


async def _required(
    pending: Awaitable[Any], key: Hashable, wrap: Callable[[Any], T], broken: str
) -> T:
    return _present(await pending, key, wrap, broken)


def _by_key(fetch: Callable[[list[K]], Awaitable[dict[K, V]]]) -> DataLoader[K, V | None]:
    async def load(keys: list[K]) -> list[V | None]:
        found = await fetch(keys)
        return [found.get(key) for key in keys]

    return DataLoader(load_fn=load)


def _grouped(
    fetch: Callable[[Any, list[Any]], Awaitable[dict[Any, V]]],
) -> DataLoader[tuple[Any, Any], V]:
    """Keys are (id, arguments): one fetch per distinct arguments, for all ids at once."""

    async def load(keys: list[tuple[Any, Any]]) -> list[V]:
        by_args: dict[Any, list[Any]] = defaultdict(list)
        for key_id, args in keys:
            by_args[args].append(key_id)
        results: dict[tuple[Any, Any], V] = {}
        for args, ids in by_args.items():
            found = await fetch(args, list(dict.fromkeys(ids)))
            results.update({(key_id, args): found[key_id] for key_id in ids})
        return [results[key] for key in keys]

    return DataLoader(load_fn=load)


class Loaders:
    def __init__(self, scope: Scope, settings: Settings) -> None:
        self.scope = scope
        self.settings = settings
        self.company_by_id = _by_key(lambda ids: companies.by_ids(scope, ids))
        self.company_by_path = _by_key(lambda paths: companies.by_paths(scope, paths))
        self.group_by_id = _by_key(lambda ids: groups.by_ids(scope, ids))
        self.group_by_path = _by_key(lambda paths: groups.by_paths(scope, paths))
        self.group_by_company_id = _by_key(self._groups_of_companies)
        self.computer_by_id = _by_key(lambda ids: computers.by_ids(scope, ids))
        self.sync_run_by_id = _by_key(lambda ids: sync_runs.by_ids(scope, ids))
        self.user_by_id = _by_key(lambda ids: users.by_ids(scope, ids))
        self.installer_by_id = _by_key(lambda ids: installers.by_ids(scope, ids))
        self.audit_entry_by_id = _by_key(lambda ids: audit.by_ids(scope, ids))
        self.permission_set_by_id = _by_key(lambda ids: permission_sets.by_ids(scope, ids))
        self.permission_sets_by_user = _by_key(lambda ids: permission_sets.by_user_ids(scope, ids))
        self.group_ids_by_permission_set = _by_key(
            lambda ids: permission_sets.group_ids_by_set(scope, ids)
        )
        self.company_children_page = _grouped(self._company_children_pages)
        self.company_children_count = _grouped(
            lambda types, ids: companies.children_counts(scope, ids, types)
        )
        self.group_children_page = _grouped(
            lambda request, ids: groups.children_pages(scope, ids, request)
        )
        self.group_children_count = _grouped(lambda _, ids: groups.children_counts(scope, ids))
        self.computer_count = _grouped(self._computer_counts)
        self.license_by_id = _by_key(lambda ids: licenses.by_ids(scope, ids))
        self.seat_usage = _grouped(self._seat_usage)
        self.company_licenses_page = _grouped(
            lambda request, ids: licenses.pages_by_company(scope, ids, request)
        )
        self.company_licenses_count = _grouped(
            lambda _, ids: licenses.counts_by_company(scope, ids)
        )

    async def _seat_usage(self, recursive: bool, ids: list[int]) -> dict[int, Any]:
        found = [c for c in await self.company_by_id.load_many(ids) if c is not None]
        usage = await licenses.seat_usage(self.scope, found, recursive)
        return {i: usage.get(i, licenses.SeatUsage()) for i in ids}

    async def _company_children_pages(
        self, args: tuple[tuple[CompanyType, ...] | None, PageRequest], ids: list[int]
    ) -> dict[int, Page[Company]]:
        types, request = args
        return await companies.children_pages(self.scope, ids, types, request)

    async def _groups_of_companies(self, ids: list[int]) -> dict[int, StaticGroup]:
        found = await groups.by_company_ids(self.scope, ids)
        self.prime_groups(list(found.values()))
        return found

    async def _computer_counts(self, recursive: bool, ids: list[int]) -> dict[int, int]:
        found = await self.group_by_id.load_many(ids)
        visible = [g for g in found if g is not None]
        counts = await computers.counts_in_groups(self.scope, visible, recursive)
        return {i: counts.get(i, 0) for i in ids}

    async def prefetch_for_companies(
        self, items: Sequence[Company], fields: Collection[str]
    ) -> None:
        """Fetch, one statement each, what the selection asks of every company of a page (its
        parent, its group, the group's computer count) and prime the loaders with it: the
        fields then answer from the cache, without a future and a batch per row."""
        self.prime_companies(items)
        if "parent" in fields:
            wanted = {c.parent_id for c in items if c.parent_id is not None}
            missing = [i for i in wanted if cached(self.company_by_id, i) is MISSING]
            found = await companies.by_ids(self.scope, missing)
            self.company_by_id.prime_many({i: found.get(i) for i in missing})
        if {"staticGroup", "computerCount", "computers"} & set(fields):
            ids = [c.id for c in items]
            own_groups = await groups.by_company_ids(self.scope, ids)
            self.group_by_company_id.prime_many({i: own_groups.get(i) for i in ids})
            self.prime_groups(list(own_groups.values()))
            if "staticGroup.computerCount" in fields or "computerCount" in fields:
                counts = await computers.counts_in_groups(
                    self.scope, list(own_groups.values()), True
                )
                self.computer_count.prime_many(
                    {(g.id, True): counts.get(g.id, 0) for g in own_groups.values()}
                )

    def prime_companies(self, items: Sequence[Company]) -> None:
        for company in items:
            self.company_by_id.prime(company.id, company)

    def prime_groups(self, items: Sequence[StaticGroup]) -> None:
        for group in items:
            self.group_by_id.prime(group.id, group)

    def prime_computers(self, items: Sequence[Computer]) -> None:
        for computer in items:
            self.computer_by_id.prime(computer.id, computer)

    def prime_licenses(self, items: Sequence[License]) -> None:
        for license in items:
            self.license_by_id.prime(license.id, license)

    def prime_sync_runs(self, items: Sequence[SyncRun]) -> None:
        for run in items:
            self.sync_run_by_id.prime(run.id, run)
