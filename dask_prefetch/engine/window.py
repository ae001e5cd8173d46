"""The window policy: which blocks a prefetching file holds, fetches next and gives back. Pure: no I/O, no locks.

A :class:`Window` sees the reader's *cursor* (the block it reads now), the blocks the file holds
(:class:`HeldBlock`: how many of its parts are launched, whether it is being dropped or failed),
the GETs in flight and the byte budgets, and answers with decisions the engine carries out:

* :meth:`Window.next_step` — the next thing to start, in block order from the cursor: open (reserve
  tier space for) block ``i``, or launch part ``p`` of a held block; ``None`` when the window is full;
* :meth:`Window.may_hold` — whether one more block ahead of the cursor fits the file's budgets;
* :meth:`Window.passed` — what moving the cursor forward releases (read blocks, skipped blocks);
* :meth:`Window.to_shed` and :meth:`Window.room_victim` — what to give back when others need space.

Everything here is a function of its arguments, so the policy is tested on its own
(``tests/test_window.py``). How many GETs may be in flight (``Window.concurrency``) is set by the
engine from :class:`~.concurrency.AdaptiveConcurrency`, the other pure policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence


@dataclass(frozen=True)
class HeldBlock:
    """What the policy needs to know of a block that holds tier space."""

    launched: int  # parts whose GET was started
    dropped: bool = False  # being given back: its GETs are winding down
    failed: bool = False  # a GET of it failed: nothing more is launched for it


@dataclass(frozen=True)
class Open:
    """Reserve tier space for block ``index`` (the engine may find none: then the window is full)."""

    index: int


@dataclass(frozen=True)
class Launch:
    """Start the GET of part ``part`` of held block ``index``."""

    index: int
    part: int


class Window:
    """The rolling window over one logical file's blocks.

    Parameters
    ----------
    block_bytes
        Tier bytes each block takes (page-rounded), in block order.
    parts
        Ranged GETs each block is fetched as, in block order.
    concurrency
        GETs in flight at most.
    stop
        The first block not prefetched (None: none such): from there on a block is taken only
        once the reader is at it (``past_stop``), so a reader of one byte range fetches nothing past it.
    """

    def __init__(
        self, block_bytes: Sequence[int], parts: Sequence[int], concurrency: int, stop: int | None = None
    ) -> None:
        if len(block_bytes) != len(parts):
            raise ValueError(f"{len(block_bytes)} block sizes for {len(parts)} blocks")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.block_bytes = list(block_bytes)
        self.parts = list(parts)
        self.concurrency = concurrency
        self.stop = len(self.parts) if stop is None else min(stop, len(self.parts))

    @property
    def total_bytes(self) -> int:
        """Tier bytes of the file up to ``stop`` (its first block at least): more is never worth holding."""
        return sum(self.block_bytes[: max(self.stop, 1)])

    def next_step(
        self, cursor: int, held: Mapping[int, HeldBlock], in_flight: int, past_stop: bool = False
    ) -> Open | Launch | None:
        """The next block to open or part to launch, from the cursor on; None when nothing more may start.

        Blocks are taken strictly in order: a block being dropped stops the window there (it is
        opened again once its GETs have ended), so the reader's next bytes always come first. None
        is taken from ``stop`` on, unless the reader asked there (``past_stop``): then the one it reads.
        """
        if in_flight >= self.concurrency:
            return None
        bound = max(self.stop, cursor + 1) if past_stop else self.stop
        for index in range(cursor, min(bound, len(self.parts))):
            block = held.get(index)
            if block is None:
                return Open(index)
            if block.dropped:
                return None
            if block.launched < self.parts[index] and not block.failed:
                return Launch(index, block.launched)
        return None

    def may_hold(self, index: int, cursor: int, held_bytes: int, fair_share: int, limit: int | None) -> bool:
        """Whether block ``index`` may be opened on top of the ``held_bytes`` the file holds.

        The cursor's block always may (the reader waits for it); a block ahead only while the file
        stays within its fair share of shared tiers and within ``limit`` (a file opened ahead of
        its task: None for none).
        """
        if index == cursor:
            return True
        after = held_bytes + self.block_bytes[index]
        return after <= fair_share and (limit is None or after <= limit)

    @staticmethod
    def passed(old_cursor: int, new_cursor: int, held: Sequence[int]) -> list[tuple[int, str]]:
        """The held blocks a move of the cursor from ``old_cursor`` to ``new_cursor`` releases, and why.

        ``"consumed"`` for blocks read (up to the old cursor), ``"evicted"`` for blocks skipped
        over by a forward seek. Moving backward releases nothing (the blocks ahead stay useful).
        """
        if new_cursor <= old_cursor:
            return []
        return [(i, "consumed" if i <= old_cursor else "evicted") for i in sorted(held) if i < new_cursor]

    def to_shed(self, cursor: int, held: Sequence[int], held_bytes: int, share: int) -> list[int]:
        """Blocks ahead of the cursor to give back, furthest first, until the file holds no more than ``share``."""
        out = []
        for index in sorted((i for i in held if i > cursor), reverse=True):
            if held_bytes <= share:
                break
            out.append(index)
            held_bytes -= self.block_bytes[index]
        return out

    @staticmethod
    def room_victim(index: int, held: Mapping[int, HeldBlock]) -> int | None:
        """The held block to give up so that block ``index`` fits: the furthest one beyond it, or None."""
        later = [i for i, block in held.items() if i > index and not block.dropped]
        return max(later) if later else None
