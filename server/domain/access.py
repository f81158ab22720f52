"""The one access mechanism: what a viewer may see and do, as static-group path prefixes.

Every row of the console that can be scoped carries the materialized path of its static group
(companies and groups their own, computers and installers through their group). A viewer's scope
is the set of path prefixes its permission sets grant, per area and level; every read applies
`Scope.sql()` and every mutation checks `Scope.allows()`. The account owner's
scope is the `All` group with WRITE on every area, so the owner goes through the same filter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from server.domain import tree_paths
from server.domain.errors import PermissionDenied
from server.models import db
from server.models.enums import Area, Level

ANYWHERE = "/"  # the prefix of every path: what `whole_instance` grants


def minimal_prefixes(paths: Iterable[str]) -> tuple[str, ...]:
    """Drop every path that lies under another one of the set."""
    kept: list[str] = []
    for path in sorted(set(paths)):
        if not kept or not path.startswith(kept[-1]):
            kept.append(path)
    return tuple(kept)


@dataclass(frozen=True, slots=True)
class Scope:
    instance_id: int
    user_id: int
    owner: bool
    # (path prefix, level) per area, as granted
    grants: Mapping[Area, tuple[tuple[str, Level], ...]] = field(default_factory=dict)

    @classmethod
    def for_owner(cls, instance_id: int, user_id: int, all_group_path: str) -> Scope:
        grants = {area: ((all_group_path, Level.WRITE),) for area in Area}
        return cls(instance_id, user_id, True, grants)

    def paths(self, area: Area | None = None, level: Level = Level.READ) -> tuple[str, ...]:
        """Minimal path prefixes granting at least `level` in `area` (any area when None)."""
        areas = list(Area) if area is None else [area]
        return minimal_prefixes(
            path for a in areas for path, granted in self.grants.get(a, ()) if granted >= level
        )

    def within(
        self, path: str | None, area: Area | None = None, level: Level = Level.READ
    ) -> tuple[str, ...]:
        """The minimal prefixes of what the viewer may reach of the subtree at `path` (of
        everything when None): the subtree itself when a grant covers it, else the grants
        inside it. For reads that let the subtree drive and intersect it with the scope."""
        prefixes = self.paths(area, level)
        if path is None:
            return prefixes
        if any(path.startswith(prefix) for prefix in prefixes):
            return (path,)
        return tuple(prefix for prefix in prefixes if prefix.startswith(path))

    def sql_within(
        self, column: str, path: str, area: Area | None = None, level: Level = Level.READ
    ) -> tuple[str, list[str]]:
        """`sql` for rows already known to lie in the subtree at `path`: nothing to filter when
        a grant covers it (and the planner, not misled by a filter it cannot estimate, keeps
        the page's index range), else only the grants inside it."""
        inside = self.within(path, area, level)
        if inside == (path,):
            return "1=1", []
        if not inside:
            return "1=0", []
        parts = [tree_paths.subtree_sql(column, prefix) for prefix in inside]
        return "(" + " OR ".join(sql for sql, _ in parts) + ")", [v for _, vs in parts for v in vs]

    def allows(self, path: str, area: Area | None = None, level: Level = Level.READ) -> bool:
        """Whether this scope covers `path`: pure, in memory. Mutations check it; a
        subscription checks each row of an event fetched once for all subscribers with it."""
        return any(path.startswith(prefix) for prefix in self.paths(area, level))

    def covers_instance(self, area: Area | None = None, level: Level = Level.READ) -> bool:
        """Whether `level` in `area` is granted on the whole instance (the All group)."""
        return any(tree_paths.is_top(prefix) for prefix in self.paths(area, level))

    def require(self, path: str, area: Area | None, level: Level) -> None:
        if not self.allows(path, area, level):
            where = area.name if area else "the object"
            raise PermissionDenied(f"{level.name} on {where} is needed")

    def sql(
        self, column: str, area: Area | None = None, level: Level = Level.READ
    ) -> tuple[str, list[str]]:
        """A SQL condition on a path column, with its parameters (never empty: `1=0` for none)."""
        prefixes = self.paths(area, level)
        if not prefixes:
            return "1=0", []
        if any(prefix == ANYWHERE or tree_paths.is_top(prefix) for prefix in prefixes):
            # the whole instance (the All group): the instance filter every query has says it
            # all, and the planner keeps its better indexes
            return "1=1", []
        parts = [tree_paths.subtree_sql(column, prefix) for prefix in prefixes]
        return "(" + " OR ".join(sql for sql, _ in parts) + ")", [v for _, vs in parts for v in vs]


NO_SCOPE = Scope(instance_id=-1, user_id=-1, owner=False)  # sees nothing: no instance yet


def whole_instance(instance_id: int) -> Scope:
    """Every row of one instance, read on behalf of nobody in particular: what the subscription
    hub fetches once per event for all its subscribers (server/api/subscriptions.py), each of
    which receives a row only when its own scope `allows` the row's path."""
    grants = {area: ((ANYWHERE, Level.READ),) for area in Area}
    return Scope(instance_id, user_id=-1, owner=False, grants=grants)


async def load_scope(
    instance_id: int, user_id: int, owner: bool, home_group_path: str | None
) -> Scope:
    """Build a viewer's scope in one statement, whatever the number of permission sets."""
    if owner:
        return Scope.for_owner(instance_id, user_id, home_group_path or "/")
    rows = await db.fetch(
        "SELECT ps.levels AS levels, g.path AS path FROM user_permission_set ups "
        "JOIN permission_set ps ON ps.id = ups.permissionset_id "
        "JOIN permission_set_group psg ON psg.permission_set_id = ps.id "
        "JOIN static_group g ON g.id = psg.staticgroup_id "
        "WHERE ups.console_user_id = ? AND ps.instance_id = ? AND g.instance_id = ?",
        [user_id, instance_id, instance_id],
    )
    return scope_from_grants(instance_id, user_id, [(row["levels"], row["path"]) for row in rows])


def scope_from_grants(instance_id: int, user_id: int, rows: Iterable[tuple[object, str]]) -> Scope:
    """A native user's scope from its (levels as stored, group path) rows."""
    grants: dict[Area, list[tuple[str, Level]]] = {}
    for raw_levels, path in rows:
        for area, level in parse_levels(raw_levels).items():
            grants.setdefault(area, []).append((path, level))
    return Scope(instance_id, user_id, False, {a: tuple(g) for a, g in grants.items()})


def parse_levels(raw: object) -> dict[Area, Level]:
    """Levels as stored (JSON text on SQLite, decoded on PostgreSQL), ignoring unknown keys."""
    import orjson

    if isinstance(raw, (str, bytes)):
        raw = orjson.loads(raw)
    levels: dict[Area, Level] = {}
    if isinstance(raw, dict):
        for area, level in raw.items():
            if area in Area.__members__ and level in Level.__members__:
                levels[Area(area)] = Level[level]
    return levels


async def scope_of(
    instance_id: int | None,
    user_id: int | None,
    owner: bool,
    home_group_path: str | None,
    grants: Iterable[tuple[object, str]] | None = None,
) -> Scope | None:
    """The scope of a signed-in viewer; None for an account without an instance yet. With
    `grants` already read (the session's statement reads them), no statement is issued."""
    if instance_id is None or user_id is None:
        return None
    if grants is not None:
        if owner:
            return Scope.for_owner(instance_id, user_id, home_group_path or "/")
        return scope_from_grants(instance_id, user_id, grants)
    return await load_scope(instance_id, user_id, owner, home_group_path)
