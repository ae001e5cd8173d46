"""Block files: one per block held in a tier, in the engine's private scratch directories.

A block's file is created with its space allocated up front (``posix_fallocate``), so a disk
fuller than its tier's budget says fails at creation, not half-way through a download; such a
tier, or one whose directory was removed, takes no more blocks and the next tier is tried. Files
are created ``O_EXCL | O_NOFOLLOW`` and mode 0600 in directories of mode 0700, named after the
block index only (never after an object key).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from dataclasses import dataclass, field

from .layout import Block
from ..cache.tiers import DISK_FULL, REMOVED, ScratchDirectory, StorageTier, TierSet, sweep_stale

logger = logging.getLogger(__name__)
#: Errors meaning "this disk has no room", whatever the budget says.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@dataclass
class Slot:
    """A block that holds tier space: its file, its GETs and how far each part has arrived."""

    block: Block
    tier: StorageTier
    path: str
    fd: int
    filled: list[int]
    serial: int
    launched: int = 0  # parts handed to the event loop
    outstanding: int = 0  # parts whose GET has not ended
    finished: int = 0  # parts fully written
    tasks: dict[int, asyncio.Task] = field(default_factory=dict)
    error: BaseException | None = None
    dropped: bool = False
    generation: int = 0  # the engine's retry generation when the block was opened

    @property
    def ready(self) -> bool:
        return self.finished == len(self.block.parts)

    def available(self, offset: int, part_size: int) -> int:
        """End of the contiguous bytes present from ``offset`` on (``offset`` when none)."""
        parts = self.block.parts
        p = offset // part_size
        end = parts[p].block_offset + self.filled[p]
        while end == parts[p].block_offset + parts[p].length and p + 1 < len(parts):
            p += 1
            end = parts[p].block_offset + self.filled[p]
        return end


class BlockFiles:
    """One engine's scratch directory under every tier, and the block files in them.

    Raises
    ------
    OSError
        If a scratch directory cannot be made.
    """

    def __init__(self, tiers: TierSet) -> None:
        self.tiers = tiers
        self.scratch: dict[str, ScratchDirectory] = {}
        try:
            for tier in tiers.tiers:
                self.scratch[tier.directory] = ScratchDirectory(tier.directory)
        except BaseException:
            self.remove()
            raise

    def create(self, tier: StorageTier, block: Block) -> tuple[str, int] | None:
        """Create ``block``'s file in ``tier`` (reserved by the caller) with its space allocated.

        A disk with no room is first swept of dead processes' scratch directories (see
        :func:`~dask_prefetch.cache.tiers.sweep_stale`; a killed sibling's blocks may be what fills it),
        and the block tried once more if that freed any.

        Returns
        -------
        (path, fd), or None
            None when ``tier`` cannot take it (disk full, directory removed): the reservation is
            released and the tier marked unusable, so the caller may try the next one.

        Raises
        ------
        OSError
            Any other failure (the reservation is released).
        """
        path = self.scratch[tier.directory].file(f"{block.index}.part")
        try:
            try:
                fd = self._allocate(path, block.length)
            except OSError as e:
                if e.errno not in NO_SPACE or not sweep_stale(tier.directory):
                    raise
                logger.debug("%s: disk full; swept dead processes' leftovers, trying again", tier.directory)
                fd = self._allocate(path, block.length)
        except OSError as e:
            self.tiers.release(tier, block.length)
            if e.errno in NO_SPACE:
                logger.debug("%s: no space for block %d (%s); trying other tiers", tier.directory, block.index, e)
                self.tiers.set_unusable(tier, DISK_FULL)
                return None
            if e.errno == errno.ENOENT and self._scratch_lost(tier):
                return None
            e.filename = e.filename or path
            raise
        return path, fd

    @staticmethod
    def _allocate(path: str, nbytes: int) -> int:
        """A new file at ``path`` with ``nbytes`` allocated (no file left behind if the disk is full)."""
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as e:
            if e.errno in NO_SPACE:
                os.close(fd)
                os.unlink(path)
                raise  # filesystems that cannot allocate ahead (EOPNOTSUPP, EINVAL) fail on write instead
        return fd

    def _scratch_lost(self, tier: StorageTier) -> bool:
        """Our directory under ``tier`` is gone: make it again, or give the tier up. False if neither applies."""
        scratch = self.scratch[tier.directory]
        if os.path.isdir(scratch.path):
            return False
        scratch.remove()
        try:
            self.scratch[tier.directory] = ScratchDirectory(tier.directory)
            logger.debug("%s: scratch directory removed under us; made a new one", tier.directory)
        except OSError as e:
            logger.debug("%s: tier directory unusable (%s); trying other tiers", tier.directory, e)
            self.tiers.set_unusable(tier, REMOVED)
        return True

    def remove(self) -> None:
        """Delete every scratch directory and what is in it; idempotent."""
        for scratch in self.scratch.values():
            scratch.remove()
