"""The order the patched pool offers its idle children in (tasks/patches/child_order.py):
by billiard's process index, whatever the file descriptors' order."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from tasks.patches.child_order import in_index_order


@dataclass
class Child:
    index: int


@given(
    st.permutations(range(4)), st.lists(st.integers(10, 99), min_size=4, max_size=4, unique=True)
)
def test_idle_children_are_offered_lowest_index_first(indices: list[int], fds: list[int]) -> None:
    inqueues = {fd: Child(i) for fd, i in zip(fds, indices, strict=True)}
    ordered = in_index_order(list(inqueues), inqueues)
    assert [inqueues[fd].index for fd in ordered] == [0, 1, 2, 3]


def test_an_inqueue_whose_child_is_gone_comes_last() -> None:
    assert in_index_order([7, 5, 6], {5: Child(1), 6: Child(0)}) == [6, 5, 7]
