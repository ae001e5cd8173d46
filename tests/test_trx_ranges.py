"""``open(..., offset=a, end=b)``: a reader of one byte range fetches that range and nothing past it.

What TRX partitions need: each reads a byte range of ``positions`` (and of every ``dpv`` array)
inside one big zip object, through a real S3 server.
"""

from __future__ import annotations

import pickle

import pytest
from conftest import put_shards

from dask_prefetch.engine.layout import Layout
from dask_prefetch.engine.window import HeldBlock, Open, Window

KiB = 1024


def infos(sizes: list[int]) -> list[dict]:
    return [{"name": f"b/o{i}", "size": s, "ETag": f'"{i}"'} for i, s in enumerate(sizes)]


def test_cuts_restart_the_block_grid():
    layout = Layout.from_objects(infos([10_000]), 0, 4096, 1024, cuts=(1000, 5000))
    assert [(b.start, b.stop) for b in layout.blocks] == [(0, 1000), (1000, 5000), (5000, 9096), (9096, 10_000)]
    assert all(p.length <= 1024 for b in layout.blocks for p in b.parts)
    assert layout.block_at(999) == 0 and layout.block_at(1000) == 1 and layout.block_at(5000) == 2
    plain = Layout.from_objects(infos([10_000]), 0, 4096, 1024)
    assert [(b.start, b.stop) for b in plain.blocks] == [(0, 4096), (4096, 8192), (8192, 10_000)]


@pytest.mark.parametrize("start, stop", [(100_003, 300_011), (0, 65_536), (700_000, 1_000_000), (5, 5)])
def test_a_range_fetches_only_its_bytes(fs, raw_fs, tiers, start, stop):
    (path,) = put_shards(raw_fs, [1_000_000])
    data = raw_fs.cat(path)
    kwargs = dict(block_size=256 * KiB, part_size=64 * KiB, prefetch_storage=tiers(4))
    with fs.open(path, offset=start, end=stop, **kwargs) as f:
        assert f.read(stop - start) == data[start:stop]
        assert f.engine.stats.bytes_fetched == stop - start  # nothing before start, nothing from stop on
        assert f.engine.held_blocks() == [] or max(f.engine.held_blocks()) <= f.layout.block_at(max(stop - 1, 0))
        f.seek(start)  # a read past ``end`` still works: it fetches the block it reads
        assert f.read(stop - start + 1000) == data[start : stop + 1000]
        copy = pickle.loads(pickle.dumps(f))  # the copy keeps its range and position
        with copy:
            assert copy.open_kwargs["end"] == stop and copy.read(10) == data[stop + 1000 : stop + 1010]


def test_end_is_checked(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [1000])
    with pytest.raises(ValueError, match="end"):
        fs.open(path, end=-1, prefetch_storage=tiers(1))
    with pytest.raises(TypeError, match="end"):
        fs.open(path, end=1.5, prefetch_storage=tiers(1))


def test_the_window_takes_nothing_from_stop_on_unless_the_reader_is_there():
    window = Window([4096] * 6, [2] * 6, concurrency=16, stop=3)
    held: dict = {}
    steps = []
    while (step := window.next_step(0, held, 0)) is not None:
        steps.append(step)
        held[step.index] = HeldBlock(launched=held[step.index].launched + 1 if step.index in held else 0)
    assert {s.index for s in steps} == {0, 1, 2} and window.total_bytes == 3 * 4096
    assert window.next_step(4, {}, 0) is None  # the cursor past stop: nothing until the reader asks there
    assert window.next_step(4, {}, 0, past_stop=True) == Open(4)
    assert window.next_step(4, {4: HeldBlock(launched=2)}, 0, past_stop=True) is None  # only the block read
