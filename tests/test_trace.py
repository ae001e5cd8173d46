"""The opt-in tracer: every block's life in order, stalls, and the timeline plot."""

from __future__ import annotations

import pytest
from conftest import MiB, put_shards

from dask_prefetch.engine.trace import Tracer, current_tracer


def test_every_block_is_requested_arrives_and_is_consumed_in_order(fs, raw_fs, tiers, tmp_path):
    paths = put_shards(raw_fs, [MiB, MiB // 2])
    with Tracer() as trace:
        assert current_tracer() is trace
        with fs.open(paths, block_size=256 * 1024, prefetch_storage=tiers(1)) as f:
            while f.read(100_000):
                pass
    assert current_tracer() is None
    lives = trace.blocks()
    assert [life.block for life in lives] == list(range(6))  # 4 + 2 blocks, requested in order, once each
    for life in lives:
        assert life.tier == 0
        assert life.requested <= life.arrived
        assert life.how == "consumed" or life.block == 5  # the last block is freed by close, not passed by
    assert all(a.requested <= b.requested for a, b in zip(lives, lives[1:]))
    assert trace.files == [paths[0]]
    for start, end, file, block in trace.stalls():
        assert 0 <= start <= end and file == 0 and 0 <= block < 6
    with fs.open(paths, block_size=256 * 1024, prefetch_storage=tiers(1)) as f:  # outside: not traced
        f.read(10)
    assert len(trace.blocks()) == 6


def test_a_forward_seek_evicts_the_blocks_it_skips_and_the_plot_is_written(fs, raw_fs, tiers, tmp_path):
    (path,) = put_shards(raw_fs, [2 * MiB])
    with Tracer() as trace, fs.open(path, block_size=256 * 1024, prefetch_storage=tiers(1)) as f:
        f.read(10)
        f.seek(7 * 256 * 1024)
        f.read(10)
    evicted = [life.block for life in trace.blocks() if life.how == "evicted"]
    assert evicted and all(0 < b < 7 for b in evicted)  # prefetched ahead, then skipped by the seek
    png = tmp_path / "timeline.png"
    trace.plot(str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plot_marks_shard_boundaries_and_says_it_is_one_single_process_read(fs, raw_fs, tiers):
    pytest.importorskip("matplotlib")
    paths = put_shards(raw_fs, [300_000, 600_000, 200_000])
    with Tracer() as trace, fs.open(paths, block_size=256 * 1024, prefetch_storage=tiers(1)) as f:
        while f.read(100_000):
            pass
        layout = f.layout
    figure = trace.plot(layout=layout)
    ax = figure.axes[0]
    boundaries = [line for line in ax.get_lines() if line.get_gid() == "shard-boundary"]
    rows = [line.get_ydata()[0] for line in boundaries]
    # 2 + 3 + 1 blocks: shards start at rows 2 and 5 (lines between rows)
    assert rows == [1.5, 4.5], rows
    names = [text.get_text() for text in ax.texts]
    assert names == [paths[1].rsplit("/", 1)[-1], paths[2].rsplit("/", 1)[-1]]
    assert "single process" in ax.get_title() and "not a cluster job" in ax.get_title()
    without = trace.plot().axes[0]  # without the layout: one file, no boundary to mark
    assert not [line for line in without.get_lines() if line.get_gid() == "shard-boundary"]
    assert "single process" in without.get_title()
