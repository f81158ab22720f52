"""Materialized paths and sort keys, the shape shared by the company and group trees.

`path` is "/id/id/.../" from the top; `sort_key` concatenates one segment per level: the
casefolded name in hex, SEPARATOR, the id in hex. Ordering by it is tree order (depth first,
siblings by name) in byte order, and a subtree is a prefix of either. The separator sorts below
every hex digit, so a name that begins a sibling's sorts first, with its whole subtree; no
segment is a prefix of another (the separator falls inside the other's name), so a subtree is
the range [key, key + "g"). Unpadded, a key is as long as its names: the indexes on it stay
small (issue 12); only the worst case, every name NAME_BYTES long, bounds the depth.
"""

from __future__ import annotations

from server.models.companies import PATH_LENGTH, SORT_KEY_LENGTH

NAME_BYTES = 48  # of the casefolded name that orders siblings; the id breaks ties beyond
SEPARATOR = "."  # below "0" in byte order
SEGMENT_LENGTH = NAME_BYTES * 2 + len(SEPARATOR) + 8  # the longest
ID_DIGITS = 10  # of a 32-bit id in a path


def _company_levels_that_fit() -> int:
    """The deepest company tree whose every group fits the path and sort-key columns.

    A company on level L (1 at the top of the whole tree, read-only ancestors included) has the
    deepest group the sync makes below it, its Shared Objects group, L + 3 groups down: All,
    Companies, the L company groups, Shared Objects."""
    groups_by_sort_key = SORT_KEY_LENGTH // SEGMENT_LENGTH
    groups_by_path = (PATH_LENGTH - 1) // (ID_DIGITS + 1)
    return min(groups_by_sort_key, groups_by_path) - 3


COMPANY_LEVELS_THAT_FIT = _company_levels_that_fit()


def sort_name(name: str) -> str:
    return name.casefold()


def sort_segment(name: str, key: int) -> str:
    head = sort_name(name).encode("utf-8")[:NAME_BYTES].hex()
    return f"{head}{SEPARATOR}{key:08x}"


def child_path(parent_path: str | None, key: int) -> str:
    return f"{parent_path or '/'}{key}/"


def child_sort_key(parent_sort_key: str | None, name: str, key: int) -> str:
    return (parent_sort_key or "") + sort_segment(name, key)


def path_ids(path: str) -> list[int]:
    return [int(part) for part in path.strip("/").split("/") if part]


def split_last(path: str) -> tuple[str | None, int]:
    """The parent's path (None at the top) and the last id: "/1/2/9/" -> ("/1/2/", 9)."""
    head, _, last = path[:-1].rpartition("/")
    return (f"{head}/" if head else None), int(last)


def is_top(path: str) -> bool:
    """The path of a tree's top (the All group): one id."""
    return path.count("/") == 2


def ancestor_paths(path: str) -> list[str]:
    """The paths of every ancestor, top first (not the node's own)."""
    ids = path_ids(path)
    return ["/" + "/".join(str(i) for i in ids[:n]) + "/" for n in range(1, len(ids))]


def subtree_bounds(path: str) -> tuple[str, str]:
    """[low, high) holding `path` and every path below it, in byte order: an index range.

    "/1/5/" spans up to "/1/50" (exclusive): '0' follows '/', so "/1/5/..." fits and the
    sibling "/1/50/" does not."""
    return path, path[:-1] + "0"


def sort_key_bounds(sort_key: str) -> tuple[str, str]:
    """[low, high) of the sort keys of a node (low) and its subtree: a sort key is hex, so
    every key below it starts with it and sorts before it followed by 'g'."""
    return sort_key, sort_key + "g"


def subtree_sql(column: str, path: str) -> tuple[str, list[str]]:
    low, high = subtree_bounds(path)
    return f"({column} >= ? AND {column} < ?)", [low, high]
