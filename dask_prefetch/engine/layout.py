"""How a list of objects maps onto one logical file, cut into blocks and ranged GETs.

A *shard* is one object, pinned to the version (S3: ETag and VersionId) it had at open. Its bytes
``[skip, size)`` follow the previous shard's in the logical file. A *block* is the unit
stored in a tier and evicted once read; blocks never straddle shards. A *part* is one ranged
GET; a block is fetched as one or more parts, written at their offsets in the block file.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Sequence

from ..sources.base import ObjectVersion


@dataclass(frozen=True)
class Shard(ObjectVersion):
    """One pinned object and the slice of it that belongs to the logical file."""

    skip: int
    offset: int  # logical offset of byte ``skip``

    @property
    def length(self) -> int:
        return self.size - self.skip


@dataclass(frozen=True)
class Part:
    """One ranged GET: object bytes ``[start, stop)`` written at ``block_offset``."""

    start: int
    stop: int
    block_offset: int

    @property
    def length(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Block:
    """Logical bytes ``[start, stop)``, all from one shard, fetched as ``parts``."""

    index: int
    shard: Shard
    start: int
    stop: int
    parts: tuple[Part, ...]

    @property
    def length(self) -> int:
        return self.stop - self.start


#: Smallest part the reader's first block is split into (see :class:`Layout`).
MIN_START_PART = 256 * 1024


class Layout:
    """The logical file: shards laid end to end, cut into blocks and parts.

    Parameters
    ----------
    shards
        Objects in logical order, with their pinned sizes and ETags.
    block_size
        Largest block in bytes; each shard's last block may be shorter.
    part_size
        Largest ranged GET in bytes.
    cuts
        Logical offsets where a block must start (the grid of ``block_size`` blocks restarts
        there), e.g. the bounds of the one byte range a reader wants.
    reader_start, start_parts
        The block holding logical byte ``reader_start`` (where the reader begins) is fetched as up
        to ``start_parts`` parts of at least :data:`MIN_START_PART` bytes: nothing was prefetched
        for it, so its bytes come over that many connections at once instead of a few large GETs
        in a row (8 MiB at 40 MiB/s per connection: ~0.25 s as one GET, ~0.06 s as 16). When that
        block holds less than half a block from ``reader_start`` (a global header object of 1000
        bytes, a start near a block's end), the block after it is fetched so too.
    """

    def __init__(
        self,
        shards: Sequence[Shard],
        block_size: int,
        part_size: int,
        cuts: Sequence[int] = (),
        reader_start: int = 0,
        start_parts: int = 1,
    ) -> None:
        if block_size <= 0 or part_size <= 0:
            raise ValueError(f"block_size and part_size must be positive, got {block_size}, {part_size}")
        self.shards = tuple(shards)
        self.block_size = block_size
        self.part_size = part_size
        self.size = sum(s.length for s in self.shards)
        blocks: list[Block] = []
        cut_at = sorted(set(cuts))
        split_next = False  # the reader's first block holds little: the one after it comes in parts too
        start_blocks: list[int] = []
        for shard in self.shards:
            first = shard.skip
            while first < shard.size:
                start = shard.offset + first - shard.skip
                after = bisect.bisect_right(cut_at, start)  # the first cut past this block's start
                last = min(first + block_size, shard.size)
                if after < len(cut_at):
                    last = min(last, first + cut_at[after] - start)
                size = part_size
                stop = start + last - first
                if start_parts > 1 and (start <= reader_start < stop or split_next):
                    split_next = start <= reader_start and stop - reader_start < block_size // 2
                    size = min(part_size, max(MIN_START_PART, -(-(last - first) // start_parts)))
                    start_blocks.append(len(blocks))
                parts = tuple(Part(p, min(p + size, last), p - first) for p in range(first, last, size))
                blocks.append(Block(len(blocks), shard, start, stop, parts))
                first = last
        self.blocks = tuple(blocks)
        #: The blocks fetched in ``start_parts`` parts (none when ``start_parts`` is 1).
        self.start_blocks = tuple(start_blocks)
        self._starts = [b.start for b in blocks]

    def block_at(self, position: int) -> int:
        """Index of the block holding logical byte ``position`` (``len(blocks)`` at EOF)."""
        if position >= self.size:
            return len(self.blocks)
        return bisect.bisect_right(self._starts, position) - 1

    @classmethod
    def from_objects(
        cls,
        infos: Sequence[dict],
        header_bytes: int,
        block_size: int,
        part_size: int,
        version: Callable[[dict], tuple[str | None, str | None]] | None = None,
        cuts: Sequence[int] = (),
        reader_start: int = 0,
        start_parts: int = 1,
    ) -> "Layout":
        """Build from fsspec ``info`` dicts: the first read whole, later ones from ``header_bytes``.

        ``version(info)`` gives each object's ``(version token, version id)`` (the source's
        :meth:`~dask_prefetch.sources.RangeSource.version`; default: S3's ``ETag`` and ``VersionId``);
        ``cuts`` are logical offsets where a block must start; ``reader_start`` and ``start_parts``
        as for the constructor.

        Raises
        ------
        ValueError
            If ``header_bytes`` is negative or larger than a shard.
        """
        if header_bytes < 0:
            raise ValueError(f"header_bytes must be >= 0, got {header_bytes}")
        shards, offset = [], 0
        for i, info in enumerate(infos):
            skip = header_bytes if i > 0 else 0
            size = int(info["size"])
            if skip > size:
                raise ValueError(
                    f"header_bytes={header_bytes} is larger than shard {info['name']!r} ({size} bytes)"
                )
            token, version_id = version(info) if version is not None else (info.get("ETag") or None, info.get("VersionId"))
            shard = Shard(info["name"], size, token, version_id, skip, offset)
            shards.append(shard)
            offset += shard.length
        return cls(shards, block_size, part_size, cuts, reader_start, start_parts)
