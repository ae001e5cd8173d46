"""Layout: shards laid end to end, cut into blocks and parts (no network)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dask_prefetch.engine.layout import Layout


def infos(sizes: list[int]) -> list[dict]:
    return [{"name": f"b/k{i}", "size": s, "ETag": f'"{i}"'} for i, s in enumerate(sizes)]


@given(
    sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=6),
    header=st.integers(0, 50),
    block=st.integers(1, 3000),
    part=st.integers(1, 3000),
    reader_start=st.integers(0, 30000),
    start_parts=st.integers(1, 20),
)
def test_blocks_tile_the_logical_file(sizes, header, block, part, reader_start, start_parts):
    sizes = [sizes[0]] + [max(s, header) for s in sizes[1:]]
    layout = Layout.from_objects(infos(sizes), header, block, part, reader_start=reader_start, start_parts=start_parts)
    assert layout.size == sizes[0] + sum(s - header for s in sizes[1:])
    position = 0
    for i, b in enumerate(layout.blocks):
        assert b.index == i and b.start == position and 0 < b.length <= block
        # parts tile the block, inside one shard, after its header
        assert b.parts[0].block_offset == 0
        assert sum(p.length for p in b.parts) == b.length
        assert all(0 < p.length <= min(part, block) for p in b.parts)
        first_object_byte = b.parts[0].start
        assert first_object_byte >= b.shard.skip and b.parts[-1].stop <= b.shard.size
        assert b.start - b.shard.offset == first_object_byte - b.shard.skip
        assert layout.block_at(b.start) == i and layout.block_at(b.stop - 1) == i
        position = b.stop
    assert position == layout.size
    assert layout.block_at(layout.size) == len(layout.blocks)


def test_blocks_restart_at_each_shard():
    layout = Layout.from_objects(infos([1000, 2500, 1500]), 1000, 1024, 512)
    assert [(b.shard.path, b.start, b.stop) for b in layout.blocks] == [
        ("b/k0", 0, 1000),
        ("b/k1", 1000, 2024),
        ("b/k1", 2024, 2500),
        ("b/k2", 2500, 3000),
    ]
    assert [(p.start, p.stop) for p in layout.blocks[1].parts] == [(1000, 1512), (1512, 2024)]


def test_header_larger_than_a_shard_is_refused():
    with pytest.raises(ValueError, match=r"header_bytes=1000 is larger than shard 'b/k1' \(999 bytes\)"):
        Layout.from_objects(infos([1000, 999]), 1000, 1024, 1024)


def test_negative_header_is_refused():
    with pytest.raises(ValueError, match="header_bytes"):
        Layout.from_objects(infos([10]), -1, 1024, 1024)


def test_the_readers_first_block_comes_in_parts_over_every_connection():
    MiB = 2**20
    layout = Layout.from_objects(infos([40 * MiB]), 0, 32 * MiB, 8 * MiB, reader_start=33 * MiB, start_parts=16)
    first, second = layout.blocks  # the reader starts in the second block (7 + 1 MiB)
    assert [p.length for p in first.parts] == [8 * MiB] * 4  # behind the reader: prefetched as usual
    assert len(second.parts) == 16 and {p.length for p in second.parts} == {MiB // 2}
    tiny = Layout.from_objects(infos([MiB]), 0, 32 * MiB, 8 * MiB, start_parts=16)
    assert [p.length for p in tiny.blocks[0].parts] == [256 * 1024] * 4  # never below MIN_START_PART


def test_a_global_header_and_the_first_shard_both_come_in_parts():
    """The reader's first block is a 1000-byte header object: the first shard's block, read right after,
    comes over every connection too (else its 8 MiB came as one GET at one connection's rate)."""
    MiB = 2**20
    layout = Layout.from_objects(infos([1000, 9 * MiB, 9 * MiB]), 1000, 32 * MiB, 8 * MiB, start_parts=16)
    header, shard, later = layout.blocks
    assert [p.length for p in header.parts] == [1000]
    assert len(shard.parts) == 16 and sum(p.length for p in shard.parts) == 9 * MiB - 1000
    assert [p.length for p in later.parts] == [8 * MiB, MiB - 1000]  # two blocks at most
    mid = Layout.from_objects(infos([96 * MiB]), 0, 32 * MiB, 8 * MiB, reader_start=30 * MiB, start_parts=16)
    assert [len(b.parts) for b in mid.blocks] == [16, 16, 4]  # 2 MiB left in the first block: the next one too
    early = Layout.from_objects(infos([96 * MiB]), 0, 32 * MiB, 8 * MiB, reader_start=10 * MiB, start_parts=16)
    assert [len(b.parts) for b in early.blocks] == [16, 4, 4]
    one = Layout.from_objects(infos([1000, 9 * MiB]), 1000, 32 * MiB, 8 * MiB)
    assert [p.length for p in one.blocks[1].parts] == [8 * MiB, MiB - 1000]  # start_parts 1: as usual
