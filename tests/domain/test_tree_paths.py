"""Sort keys order a tree depth first, siblings by name, and hold a subtree as one range,
whatever the names (one a prefix of another's, ending in "0" bytes, longer than a key keeps);
the deepest tree the sync accepts fits the column with every name as long as a key keeps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.domain import tree_paths
from server.models.companies import SORT_KEY_LENGTH

NAMES = st.text(alphabet="aAb0 \x10ßé", max_size=tree_paths.NAME_BYTES + 4)


def _keys(parents: list[int], names: list[str]) -> dict[int, str]:
    """Node n + 1's parent is parents[n] (an earlier node, or 0: node 0 is the top)."""
    keys = {0: tree_paths.child_sort_key(None, names[0], 0)}
    for n, parent in enumerate(parents, start=1):
        keys[n] = tree_paths.child_sort_key(keys[parent], names[n], n)
    return keys


def _tree_order(parents: list[int], names: list[str]) -> list[int]:
    children: dict[int, list[int]] = {}
    for n, parent in enumerate(parents, start=1):
        children.setdefault(parent, []).append(n)

    def by_name(n: int) -> tuple[bytes, int]:
        return (tree_paths.sort_name(names[n]).encode()[: tree_paths.NAME_BYTES], n)

    order: list[int] = []
    stack = [0]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(sorted(children.get(node, ()), key=by_name, reverse=True))
    return order


@st.composite
def trees(draw: st.DrawFn) -> tuple[list[int], list[str]]:
    size = draw(st.integers(min_value=1, max_value=30))
    parents = [draw(st.integers(min_value=0, max_value=n)) for n in range(size - 1)]
    return parents, draw(st.lists(NAMES, min_size=size, max_size=size))


@given(trees())
def test_sort_keys_in_byte_order_are_tree_order(tree: tuple[list[int], list[str]]) -> None:
    parents, names = tree
    keys = _keys(parents, names)
    assert sorted(keys, key=lambda n: keys[n].encode()) == _tree_order(parents, names)


@given(trees())
def test_a_subtree_is_the_range_of_its_sort_key(tree: tuple[list[int], list[str]]) -> None:
    parents, names = tree
    keys = _keys(parents, names)
    for node, key in keys.items():
        low, high = tree_paths.sort_key_bounds(key)
        below = {n for n, other in keys.items() if low <= other < high}
        subtree = {node}
        for n, parent in enumerate(parents, start=1):
            if parent in subtree:
                subtree.add(n)
        assert below == subtree


def test_the_deepest_tree_fits_with_every_name_as_long_as_a_key_keeps() -> None:
    # a company on the last level has its Shared Objects group three levels further down
    groups = tree_paths.COMPANY_LEVELS_THAT_FIT + 3
    key = None
    for n in range(groups + 1):
        key = tree_paths.child_sort_key(key, "é" * tree_paths.NAME_BYTES, 2**32 - 1 - n)
        assert len(key) == (n + 1) * tree_paths.SEGMENT_LENGTH
        assert (len(key) <= SORT_KEY_LENGTH) == (n < groups), "the limit is the worst case"
