"""Permission sets: a level per area on a set of static groups (and their subtrees).

Nobody hands out more than they hold: every (area, level, group) a user puts in a set, or
assigns through a set, must be within the user's own scope at that level. A set is visible to
(and managed by) the viewers whose USERS scope covers every one of its groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tortoise.exceptions import IntegrityError

from server.domain import tree_paths, validation
from server.domain.access import Scope, parse_levels
from server.domain.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied
from server.domain.listing import Listing, sql_in
from server.models import PermissionSet, StaticGroup, db
from server.models.enums import Area, Level

MAX_GROUPS = 100
MAX_SETS = 100
DESCRIPTION_MAX = 500

# (group path, levels granted there): what a set, or a user through its sets, grants
Grants = list[tuple[str, dict[Area, Level]]]


def plain_text(value: str | None, field: str, *, max_length: int) -> str | None:
    """Optional free text: bounded, and no control characters but tab and newline."""
    value = validation.optional_text(value, field, max_length=max_length)
    if value is not None and any(ord(ch) < 32 and ch not in "\t\n" for ch in value):
        raise InvalidInput("must not contain control characters", field)
    return value


def stored_levels(levels: Mapping[Area, Level]) -> dict[str, str]:
    return {area.value: Level(level).name for area, level in sorted(levels.items())}


def visible_sql(scope: Scope, alias: str = "ps") -> tuple[str, list[Any]]:
    """Sets of the viewer's instance with at least one group, every group within its USERS
    scope (READ): a set naming a group the viewer cannot see stays invisible to it."""
    inside, params = scope.sql("g.path", Area.USERS, Level.READ)
    condition = (
        f"{alias}.instance_id = ? AND EXISTS (SELECT 1 FROM permission_set_group psg "
        f"WHERE psg.permission_set_id = {alias}.id) AND NOT EXISTS (SELECT 1 FROM "
        "permission_set_group psg JOIN static_group g ON g.id = psg.staticgroup_id "
        f"WHERE psg.permission_set_id = {alias}.id AND NOT {inside})"
    )
    return condition, [scope.instance_id, *params]


def visible(scope: Scope) -> Listing[PermissionSet]:
    listing = Listing(
        PermissionSet,
        "permission_set ps",
        "ps",
        ("ps.name", "ps.id"),
        ("name", "id"),
        text_keys=frozenset({"ps.name"}),
    )
    condition, params = visible_sql(scope)
    return listing.filter(condition, *params)


async def by_ids(scope: Scope, ids: Iterable[int]) -> dict[int, PermissionSet]:
    values: list[Any] = list(set(ids))
    found = await visible(scope).filter(*sql_in("ps.id", values)).rows() if values else []
    return {s.id: s for s in found}


async def by_user_ids(scope: Scope, user_ids: Iterable[int]) -> dict[int, list[PermissionSet]]:
    """The sets (visible to the viewer) assigned to each user, in one statement."""
    ids: list[Any] = list(set(user_ids))
    result: dict[int, list[PermissionSet]] = {i: [] for i in ids}
    if not ids:
        return result
    condition, params = visible_sql(scope)
    rows = await db.fetch(
        "SELECT ups.console_user_id AS assigned_user_id, ps.* FROM user_permission_set ups "
        f"JOIN permission_set ps ON ps.id = ups.permissionset_id "
        f"WHERE {sql_in('ups.console_user_id', ids)[0]} AND {condition} "
        f"ORDER BY {db.text_order('ps.name')}, ps.id",
        [*ids, *params],
    )
    for row in rows:
        user_id = row.pop("assigned_user_id")
        result[user_id].append(db.from_row(PermissionSet, row))
    return result


async def group_ids_by_set(scope: Scope, set_ids: Iterable[int]) -> dict[int, list[int]]:
    """The groups of each set of the viewer's instance, in tree order, in one statement (the
    ids only: reading the groups themselves goes through the scope)."""
    ids: list[Any] = list(set(set_ids))
    result: dict[int, list[int]] = {i: [] for i in ids}
    if not ids:
        return result
    rows = await db.fetch(
        "SELECT psg.permission_set_id AS set_id, g.id AS group_id FROM permission_set_group psg "
        f"JOIN static_group g ON g.id = psg.staticgroup_id "
        f"WHERE g.instance_id = ? AND {sql_in('psg.permission_set_id', ids)[0]} "
        "ORDER BY g.sort_key, g.id",
        [scope.instance_id, *ids],
    )
    for row in rows:
        result[row["set_id"]].append(row["group_id"])
    return result


async def grants_of_sets(instance_id: int, set_ids: Sequence[int]) -> dict[int, Grants]:
    """What each set grants, as (group path, levels), in one statement."""
    result: dict[int, Grants] = {i: [] for i in set_ids}
    if not set_ids:
        return result
    rows = await db.fetch(
        "SELECT ps.id AS set_id, ps.levels AS levels, g.path AS path FROM permission_set ps "
        "JOIN permission_set_group psg ON psg.permission_set_id = ps.id "
        "JOIN static_group g ON g.id = psg.staticgroup_id "
        f"WHERE ps.instance_id = ? AND {sql_in('ps.id', list(set_ids))[0]}",
        [instance_id, *set(set_ids)],
    )
    for row in rows:
        result[row["set_id"]].append((row["path"], parse_levels(row["levels"])))
    return result


async def grants_of_user(instance_id: int, user_id: int) -> Grants:
    """Everything a user holds through its sets, in one statement."""
    rows = await db.fetch(
        "SELECT ps.levels AS levels, g.path AS path FROM user_permission_set ups "
        "JOIN permission_set ps ON ps.id = ups.permissionset_id "
        "JOIN permission_set_group psg ON psg.permission_set_id = ps.id "
        "JOIN static_group g ON g.id = psg.staticgroup_id "
        "WHERE ups.console_user_id = ? AND ps.instance_id = ?",
        [user_id, instance_id],
    )
    return [(row["path"], parse_levels(row["levels"])) for row in rows]


async def filing_path(scope: Scope, permission_set: PermissionSet) -> str:
    """Where a set is filed in the audit log: the deepest group above all of its groups."""
    grants = (await grants_of_sets(scope.instance_id, [permission_set.id]))[permission_set.id]
    paths = [tree_paths.path_ids(path) for path, _ in grants]
    if not paths:
        return ""
    common = paths[0]
    for ids in paths[1:]:
        n = 0
        while n < min(len(common), len(ids)) and common[n] == ids[n]:
            n += 1
        common = common[:n]
    return "/" + "".join(f"{i}/" for i in common) if common else ""


def within(scope: Scope, grants: Grants) -> bool:
    """Whether the viewer holds at least every level of `grants`, where they are granted."""
    return all(
        scope.allows(path, area, level) for path, levels in grants for area, level in levels.items()
    )


def require_within(scope: Scope, grants: Grants, what: str, field: str | None = None) -> None:
    for path, levels in grants:
        for area, level in levels.items():
            if not scope.allows(path, area, level):
                raise PermissionDenied(
                    f"{what} grants {level.name} on {area.value} where you do not hold it", field
                )


def parse_level_input(
    levels: Iterable[tuple[Area, Level]], field: str = "levels"
) -> dict[Area, Level]:
    parsed: dict[Area, Level] = {}
    for area, level in levels:
        area, level = Area(area), Level(level)
        if area in parsed:
            raise InvalidInput(f"{area.value} is given twice", field)
        parsed[area] = level
    if not parsed:
        raise InvalidInput("grant at least one level", field)
    return parsed


async def _groups(scope: Scope, group_ids: Sequence[int], field: str) -> list[StaticGroup]:
    """The groups by id, each one the viewer may manage users on (USERS WRITE)."""
    ids = list(dict.fromkeys(group_ids))
    if not ids:
        raise InvalidInput("name at least one group", field)
    if len(ids) > MAX_GROUPS:
        raise InvalidInput(f"at most {MAX_GROUPS} groups", field)
    found = {g.id: g for g in await StaticGroup.filter(instance_id=scope.instance_id, id__in=ids)}
    groups: list[StaticGroup] = []
    for group_id in ids:
        group = found.get(group_id)
        if group is None or not scope.allows(group.path):
            raise NotFound("no such group", field)
        scope.require(group.path, Area.USERS, Level.WRITE)
        groups.append(group)
    return groups


async def _free_name(scope: Scope, name: str, exclude: int | None = None) -> None:
    query = PermissionSet.filter(instance_id=scope.instance_id, name=name)
    if exclude is not None:
        query = query.exclude(id=exclude)
    if await query.exists():
        raise AlreadyExists("a permission set with this name exists", "name")


async def get_visible(scope: Scope, set_id: int, field: str = "permissionSetId") -> PermissionSet:
    found = (await by_ids(scope, [set_id])).get(set_id)
    if found is None:
        raise NotFound("no such permission set", field)
    return found


async def require_editable(scope: Scope, permission_set: PermissionSet) -> None:
    """USERS WRITE on each of its groups, and everything it grants held by the viewer."""
    grants = (await grants_of_sets(scope.instance_id, [permission_set.id]))[permission_set.id]
    for path, _ in grants:
        scope.require(path, Area.USERS, Level.WRITE)
    require_within(scope, grants, "this permission set", "permissionSetId")


async def create_permission_set(
    scope: Scope,
    *,
    name: str,
    levels: Iterable[tuple[Area, Level]],
    group_ids: Sequence[int],
    description: str | None = None,
) -> PermissionSet:
    """A new set; what it grants must be within the creator's own scope."""
    name = validation.name(name, "name")
    description = plain_text(description, "description", max_length=DESCRIPTION_MAX)
    parsed = parse_level_input(levels)
    groups = await _groups(scope, group_ids, "groupIds")
    require_within(scope, [(g.path, parsed) for g in groups], "the permission set", "levels")
    async with db.transaction():
        await _free_name(scope, name)
        try:
            permission_set = await PermissionSet.create(
                instance_id=scope.instance_id,
                name=name,
                description=description or "",
                levels=stored_levels(parsed),
            )
        except IntegrityError:
            raise AlreadyExists("a permission set with this name exists", "name") from None
        await permission_set.groups.add(*groups)
    return permission_set


async def create_unchecked(
    instance_id: int,
    name: str,
    description: str,
    levels: Mapping[Area, Level],
    groups: Sequence[StaticGroup],
) -> PermissionSet:
    """Insert a set whose content the caller has already checked (the customer setup)."""
    permission_set = await PermissionSet.create(
        instance_id=instance_id, name=name, description=description, levels=stored_levels(levels)
    )
    await permission_set.groups.add(*groups)
    return permission_set


async def free_name_like(instance_id: int, base: str) -> str:
    """`base`, or `base (2)`, `base (3)`... : the first name no set of the instance has."""
    base = base[:240]
    taken: set[Any] = set(  # names: Tortoise types values_list(flat=True) as tuples
        await PermissionSet.filter(instance_id=instance_id, name__startswith=base).values_list(
            "name", flat=True
        )
    )
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base} ({n})"
    return name


async def update_permission_set(
    scope: Scope,
    set_id: int,
    *,
    name: str | None = None,
    description: str | None = None,
    levels: Iterable[tuple[Area, Level]] | None = None,
    group_ids: Sequence[int] | None = None,
) -> PermissionSet:
    """Change a set the viewer may manage; the result must still be within its scope."""
    permission_set = await get_visible(scope, set_id)
    await require_editable(scope, permission_set)
    if name is not None:
        name = validation.name(name, "name")
    description = plain_text(description, "description", max_length=DESCRIPTION_MAX)
    parsed = parse_level_input(levels) if levels is not None else None
    groups = await _groups(scope, group_ids, "groupIds") if group_ids is not None else None
    if parsed is not None or groups is not None:
        new_levels = parsed if parsed is not None else parse_levels(permission_set.levels)
        if groups is None:
            paths = [p for p, _ in (await grants_of_sets(scope.instance_id, [set_id]))[set_id]]
        else:
            paths = [g.path for g in groups]
        require_within(scope, [(p, new_levels) for p in paths], "the permission set", "levels")
    async with db.transaction():
        fields: list[str] = []
        if name is not None and name != permission_set.name:
            await _free_name(scope, name, exclude=set_id)
            permission_set.name = name
            fields.append("name")
        if description is not None:
            permission_set.description = description
            fields.append("description")
        if parsed is not None:
            permission_set.levels = stored_levels(parsed)
            fields.append("levels")
        if fields:
            try:
                await permission_set.save(update_fields=fields)
            except IntegrityError:
                raise AlreadyExists("a permission set with this name exists", "name") from None
        if groups is not None:
            await permission_set.groups.clear()
            await permission_set.groups.add(*groups)
    return permission_set


async def delete_permission_set(scope: Scope, set_id: int) -> list[int]:
    """Delete a set the viewer may manage; returns the users who held it."""
    permission_set = await get_visible(scope, set_id)
    await require_editable(scope, permission_set)
    async with db.transaction():
        holders = [
            row["user_id"]
            for row in await db.fetch(
                "SELECT console_user_id AS user_id FROM user_permission_set "
                "WHERE permissionset_id = ?",
                [set_id],
            )
        ]
        await db.execute("DELETE FROM user_permission_set WHERE permissionset_id = ?", [set_id])
        await db.execute("DELETE FROM permission_set_group WHERE permission_set_id = ?", [set_id])
        await db.execute("DELETE FROM permission_set WHERE id = ?", [set_id])
    return holders


async def checked_sets(
    scope: Scope, set_ids: Sequence[int], field: str = "permissionSetIds"
) -> list[PermissionSet]:
    """Sets the viewer may see and hand out: everything they grant is within its scope."""
    ids = list(dict.fromkeys(set_ids))
    if len(ids) > MAX_SETS:
        raise InvalidInput(f"at most {MAX_SETS} permission sets", field)
    found = await by_ids(scope, ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound("no such permission set", field)
    grants = await grants_of_sets(scope.instance_id, ids)
    for set_id in ids:
        require_within(scope, grants[set_id], f"permission set {found[set_id].name!r}", field)
    return [found[i] for i in ids]
