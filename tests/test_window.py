"""The window policy on its own: which blocks to open, which parts to launch, what to give back. No I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dask_prefetch.engine.window import HeldBlock, Launch, Open, Window


def run(window: Window, cursor: int, held: dict[int, HeldBlock], in_flight: int, room: int) -> list:
    """Carry out the window's steps as the engine does, with tier room for ``room`` more blocks."""
    held, steps = dict(held), []
    while (step := window.next_step(cursor, held, in_flight)) is not None:
        if isinstance(step, Open):
            if room == 0:
                break
            room -= 1
            held[step.index] = HeldBlock(launched=0)
        else:
            in_flight += 1
            held[step.index] = HeldBlock(launched=held[step.index].launched + 1)
        steps.append(step)
    return steps


def test_opens_and_launches_in_block_order_up_to_the_concurrency():
    window = Window([4096] * 10, [2] * 10, concurrency=5)
    steps = run(window, cursor=3, held={}, in_flight=0, room=100)
    assert steps == [Open(3), Launch(3, 0), Launch(3, 1), Open(4), Launch(4, 0), Launch(4, 1), Open(5), Launch(5, 0)]


def test_counts_the_gets_already_in_flight():
    window = Window([4096] * 4, [1] * 4, concurrency=3)
    held = {0: HeldBlock(launched=1), 1: HeldBlock(launched=1)}
    assert run(window, 0, held, in_flight=2, room=10) == [Open(2), Launch(2, 0)]
    assert window.next_step(0, held, in_flight=3) is None


def test_stops_where_tier_space_runs_out():
    window = Window([4096] * 6, [1] * 6, concurrency=16)
    assert run(window, 0, {}, 0, room=2) == [Open(0), Launch(0, 0), Open(1), Launch(1, 0)]


def test_a_block_being_dropped_stops_the_window_there():
    window = Window([4096] * 5, [1] * 5, concurrency=16)
    held = {0: HeldBlock(launched=1), 1: HeldBlock(launched=1, dropped=True)}
    assert window.next_step(0, held, in_flight=1) is None


def test_a_failed_block_launches_nothing_more_but_does_not_stop_the_window():
    window = Window([4096] * 3, [3] * 3, concurrency=16)
    held = {0: HeldBlock(launched=1, failed=True)}
    assert window.next_step(0, held, in_flight=0) == Open(1)


def test_nothing_past_the_last_block():
    window = Window([4096] * 2, [1] * 2, concurrency=16)
    held = {0: HeldBlock(launched=1), 1: HeldBlock(launched=1)}
    assert window.next_step(0, held, in_flight=2) is None


def test_may_hold_keeps_to_the_fair_share_and_the_limit_but_always_the_cursor():
    window = Window([100] * 5, [1] * 5, concurrency=4)
    assert window.may_hold(2, cursor=2, held_bytes=10_000, fair_share=0, limit=0)  # the reader's block
    assert window.may_hold(3, cursor=2, held_bytes=200, fair_share=300, limit=None)
    assert not window.may_hold(3, cursor=2, held_bytes=201, fair_share=300, limit=None)
    assert not window.may_hold(3, cursor=2, held_bytes=100, fair_share=300, limit=150)


def test_passed_blocks_are_consumed_up_to_the_old_cursor_and_evicted_beyond():
    assert Window.passed(2, 5, [1, 2, 3, 4, 5, 6]) == [(1, "consumed"), (2, "consumed"), (3, "evicted"), (4, "evicted")]
    assert Window.passed(5, 2, [5, 6]) == []  # backward: the blocks ahead stay
    assert Window.passed(3, 3, [3]) == []


def test_to_shed_gives_back_the_furthest_blocks_first_until_within_the_share():
    window = Window([100] * 8, [1] * 8, concurrency=4)
    assert window.to_shed(cursor=2, held=[2, 3, 4, 5, 6], held_bytes=500, share=250) == [6, 5, 4]
    assert window.to_shed(cursor=2, held=[2, 3], held_bytes=200, share=50) == [3]  # never the cursor's block
    assert window.to_shed(cursor=2, held=[2, 3], held_bytes=200, share=200) == []


def test_room_victim_is_the_furthest_block_beyond_that_is_not_already_dropped():
    held = {1: HeldBlock(1), 4: HeldBlock(1), 7: HeldBlock(1, dropped=True)}
    assert Window.room_victim(2, held) == 4
    assert Window.room_victim(4, held) is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="concurrency must be >= 1, got 0"):
        Window([1], [1], 0)
    with pytest.raises(ValueError, match="2 block sizes for 1 blocks"):
        Window([1, 1], [1], 1)


@given(
    parts=st.lists(st.integers(1, 4), min_size=1, max_size=12),
    concurrency=st.integers(1, 8),
    cursor_frac=st.floats(0, 1, exclude_max=True),
    room=st.integers(0, 12),
)
def test_steps_never_exceed_the_concurrency_and_follow_block_order(parts, concurrency, cursor_frac, room):
    window = Window([4096] * len(parts), parts, concurrency)
    cursor = int(cursor_frac * len(parts))
    steps = run(window, cursor, {}, 0, room)
    launches = [s for s in steps if isinstance(s, Launch)]
    opened = [s.index for s in steps if isinstance(s, Open)]
    assert len(launches) <= concurrency and len(opened) <= room
    assert opened == list(range(cursor, cursor + len(opened)))  # in order, no gaps
    assert launches == sorted(launches, key=lambda s: (s.index, s.part))
    for index in opened[:-1]:  # every block but the last opened is fully launched
        assert sum(1 for s in launches if s.index == index) == parts[index]
