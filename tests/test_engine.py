"""The rolling window: prefetch ahead, tier budgets on disk, tier priority, eviction, concurrency."""

from __future__ import annotations

import os
import threading
import time

from conftest import MiB, disk_usage, logical_bytes, put_shards, scratch_dirs, wait_until

from dask_prefetch import process_stats
from dask_prefetch.engine.rolling import opening_limit
from dask_prefetch.fs.opening import AHEAD_START_PARTS
from dask_prefetch.cache.tiers import disk_bytes


TIMEOUTS = {"stall_timeout": 30.0, "straggler_factor": 4.0}  # what open() hands down by default


def block_files(tier_dir: str) -> set[int]:
    """Indices of complete block files under a tier (any scratch directory)."""
    out = set()
    for scratch in scratch_dirs(tier_dir):
        out |= {int(n) for n in os.listdir(scratch) if n.isdigit()}
    return out


def test_prefetch_starts_at_open_and_fills_tiers_in_priority_order(fs, raw_fs, tiers):
    paths = put_shards(raw_fs, [6 * 64 * 1024] * 3)
    storage = tiers(0.25, 0.5)  # 4 blocks, then 8 blocks of 64 KiB
    with fs.open(paths, block_size=64 * 1024, part_size=32 * 1024, prefetch_storage=storage) as f:
        # nothing read yet: the window fills both tiers, the first before the second
        wait_until(lambda: len(block_files(storage[0][0])) + len(block_files(storage[1][0])) == 12)
        assert block_files(storage[0][0]) == {0, 1, 2, 3}
        assert block_files(storage[1][0]) == set(range(4, 12))
        assert f._engine.held_blocks() == list(range(12))
        assert f.read() == b"".join(raw_fs.cat(p) for p in paths)


def test_tier_budgets_hold_on_disk_while_reading(fs, raw_fs, tiers):
    paths = put_shards(raw_fs, [1000] + [700_000] * 5)
    storage = tiers(0.3, 0.45)
    budgets = [int(mib * MiB) for _, mib in storage]
    peaks = [0, 0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            for i, (d, _) in enumerate(storage):
                peaks[i] = max(peaks[i], disk_usage(d))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with fs.open(paths, header_bytes=1000, block_size=100_000, part_size=25_000, prefetch_storage=storage) as f:
            expected = b"".join(raw_fs.cat(p)[1000 if i else 0 :] for i, p in enumerate(paths))
            got = bytearray()
            while chunk := f.read(9_000):  # a slow reader lets the window fill up
                got += chunk
            assert got == expected
    finally:
        done.set()
        sampler.join()
    assert 0 < peaks[0] <= budgets[0] and 0 < peaks[1] <= budgets[1], (peaks, budgets)
    assert peaks[1] + peaks[0] >= disk_bytes(100_000) * 5  # the window really did run ahead


def test_blocks_behind_the_reader_are_evicted_at_once(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [640 * 1024])
    storage = tiers(1)
    with fs.open(path, block_size=64 * 1024, part_size=64 * 1024, prefetch_storage=storage) as f:
        for k in range(1, 10):
            f.read(64 * 1024)
            f.read(1)  # now inside block k
            f.seek(-1, 1)
            # dropped at once; freed as soon as its GET has ended (it may be finishing right now)
            wait_until(lambda: min(f._engine.held_blocks()) == k, timeout=2)
            assert not block_files(storage[0][0]) & set(range(k))


def test_forward_seek_drops_skipped_blocks_and_replans(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [2 * MiB])
    with fs.open(path, block_size=64 * 1024, part_size=64 * 1024, prefetch_storage=tiers(0.25)) as f:
        f.read(10)
        f.seek(MiB + 5)
        assert f.read(10) == raw_fs.cat_file(path, start=MiB + 5, end=MiB + 15)
        assert min(f._engine.held_blocks()) == MiB // (64 * 1024)


def test_several_requests_are_in_flight(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [2 * MiB])
    with fs.open(path, block_size=256 * 1024, part_size=32 * 1024, concurrency=8, prefetch_storage=tiers(4)) as f:
        assert f.read() == raw_fs.cat(path)
        assert f.stats.requests == 2 * MiB // (32 * 1024)
        assert f.stats.bytes_fetched == 2 * MiB
        assert f.stats.peak_in_flight == 8


def test_tier_space_is_returned_after_close(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    with fs.open(path, block_size=64 * 1024, prefetch_storage=tiers(0.5)) as f:
        f.read(100)
        engine = f._engine
    assert all(t.used == 0 for t in engine.tiers.tiers)


def test_files_sharing_tiers_get_fair_shares_and_a_waiting_reader_is_served(fs, raw_fs, tiers):
    """One budget for two files (as on a worker with the plugin): the first cannot starve the second."""
    from fsspec.asyn import sync

    from dask_prefetch import PrefetchEngine, TierSet
    from dask_prefetch.engine.layout import Layout

    paths = put_shards(raw_fs, [2 * MiB, 2 * MiB])
    shared = TierSet(tiers(0.5))
    layouts = [Layout.from_objects(sync(fs.loop, fs._pin_objects, [p]), 0, 64 * 1024, 32 * 1024) for p in paths]
    first = PrefetchEngine(fs, layouts[0], shared, concurrency=4, retries=3, read_timeout=10, **TIMEOUTS)
    try:
        wait_until(lambda: len(first.held_blocks()) == 8)  # alone, it fills the whole budget ahead of its reader
        second = PrefetchEngine(fs, layouts[1], shared, concurrency=4, retries=3, read_timeout=10, **TIMEOUTS)
        try:
            _, fd, _ = second.view(0, 0)  # served although nobody reads the first file
            os.close(fd)
            wait_until(lambda: len(first.held_blocks()) <= 4 and len(second.held_blocks()) <= 4)
            assert sum(t.used for t in shared.tiers) <= 0.5 * MiB
        finally:
            second.close()
    finally:
        first.close()
    assert shared.tiers[0].used == 0


def test_start_stall_runs_from_open_to_the_first_bytes_once(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    before = process_stats()
    asked = time.monotonic()
    with fs.open(path, block_size=256 * 1024, prefetch_storage=tiers(4)) as f:
        f.read(1)
        first_bytes = time.monotonic() - asked
        stall = f.stats.start_stall_seconds
        assert 0 < stall <= first_bytes  # opening (the HEAD) included
        f.read()
        assert f.stats.start_stall_seconds == stall  # counted for the first bytes only
        assert f.stats.files_opened == 1
    after = process_stats()  # the process totals include the closed file
    assert after.files_opened - before.files_opened == 1
    assert after.bytes_served - before.bytes_served == MiB


def test_a_file_opened_with_a_limit_holds_only_its_head_until_the_limit_is_lifted(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [2 * MiB])
    token = opening_limit.set(2 * 64 * 1024)  # as a worker opens the next task's stream ahead
    try:
        f = fs.open(path, block_size=64 * 1024, part_size=64 * 1024, prefetch_storage=tiers(4))
    finally:
        opening_limit.reset(token)
    with f:
        assert f.engine.held_blocks() == [0, 1]  # from the very first GETs on, not cut back later
        wait_until(lambda: f.engine.in_flight == 0)
        assert f.engine.held_blocks() == [0, 1]
        f.engine.set_limit(None)  # its task claimed it: the whole window
        wait_until(lambda: len(f.engine.held_blocks()) > 2)
        assert f.read() == raw_fs.cat(path)


def test_a_file_opened_ahead_brings_its_first_block_in_a_few_parts(fs, raw_fs, tiers):
    """Not over every connection (the running reads' GETs come first), nor as one GET (a connection's time)."""
    paths = put_shards(raw_fs, [1000, 3 * MiB])
    token = opening_limit.set(64 * MiB)  # as the worker opens the next task's stream ahead
    try:
        f = fs.open(paths, header_bytes=1000, prefetch_storage=tiers(16), concurrency=16)
    finally:
        opening_limit.reset(token)
    with f:
        layout = f.engine.layout
        assert [len(layout.blocks[i].parts) for i in layout.start_blocks] == [1, AHEAD_START_PARTS]
        assert f.read() == logical_bytes(raw_fs, paths, 1000)


def test_a_head_limit_larger_than_the_file_takes_all_of_its_blocks(fs, raw_fs, tiers):
    paths = put_shards(raw_fs, [1000, 287_820])  # a global header + a shard: 1 + 71 pages apart, 71 together
    token = opening_limit.set(64 * MiB)
    try:
        f = fs.open(paths, header_bytes=1000, prefetch_storage=tiers(4))
    finally:
        opening_limit.reset(token)
    with f:
        assert f.engine.held_blocks() == [0, 1]  # the whole file, though its bytes fit in fewer pages
        assert f.read() == logical_bytes(raw_fs, paths, 1000)


def test_prefetch_hits_are_reads_that_found_their_block_local(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    with fs.open(path, block_size=64 * 1024, part_size=64 * 1024, prefetch_storage=tiers(2)) as f:
        wait_until(lambda: f.engine.held_blocks() == list(range(16)) and f.engine.in_flight == 0)
        assert f.read() == raw_fs.cat(path)
        stats = f.engine.stats
    assert (stats.reads, stats.reads_waited, stats.hit_ratio) == (16, 0, 1.0)



def read_through(engine) -> bytes:
    """Every byte of ``engine``'s logical file, read through :meth:`PrefetchEngine.view` as a reader does."""
    got = bytearray()
    for index, block in enumerate(engine.layout.blocks):
        offset = 0
        while offset < block.length:
            _, fd, end = engine.view(index, offset)
            try:
                got += os.pread(fd, end - offset, offset)
            finally:
                os.close(fd)
            offset = end
    return bytes(got)


def test_a_file_opened_ahead_never_starves_a_readers_cursor_block(fs, raw_fs, tiers):
    """#16.4: one block of budget, shared with a file opened ahead of its task (holding its head)."""
    from fsspec.asyn import sync

    from dask_prefetch import PrefetchEngine, TierSet
    from dask_prefetch.engine.layout import Layout

    def layout(paths: list[str]) -> Layout:
        return Layout.from_objects(sync(fs.loop, fs._pin_objects, paths), 1000, MiB, 256 * 1024)

    ahead_paths = put_shards(raw_fs, [1000, MiB + 1000], prefix="ahead")  # a global header + a shard
    read_paths = put_shards(raw_fs, [1000, 2 * MiB + 1000], prefix="read", seed=10)
    shared = TierSet(tiers(1))  # exactly one block: the smallest legal budget
    token = opening_limit.set(64 * MiB)  # as the worker opens the next task's stream ahead
    try:
        ahead = PrefetchEngine(fs, layout(ahead_paths), shared, concurrency=4, retries=3, read_timeout=5, **TIMEOUTS)
    finally:
        opening_limit.reset(token)
    try:
        wait_until(lambda: ahead.held_blocks() == [0] and ahead.in_flight == 0)  # its header, one page
        reader = PrefetchEngine(fs, layout(read_paths), shared, concurrency=4, retries=3, read_timeout=5, **TIMEOUTS)
        try:
            expected = logical_bytes(raw_fs, read_paths, 1000)
            assert read_through(reader) == expected  # block by block: each takes the whole budget
        finally:
            reader.close()
        ahead.set_limit(None)  # its task claims it at last: it reads its own file in the same budget
        expected = logical_bytes(raw_fs, ahead_paths, 1000)
        assert read_through(ahead) == expected
    finally:
        ahead.close()
    assert shared.tiers[0].used == 0


def test_after_a_failed_read_every_failed_get_is_forgotten(s3_server, storage_options, raw_fs, tiers):
    """#19.2: an outage fails many GETs ahead of the reader; once it is over, one retry reads everything."""
    import dask
    import pytest

    from dask_prefetch import S3PrefetchFileSystem
    from dask_prefetch.testing import FaultProxy

    (path,) = put_shards(raw_fs, [MiB])
    with FaultProxy(s3_server.endpoint_url, {"reset": 1.0}, cut=0).start() as proxy:  # the outage: every GET fails
        fs = S3PrefetchFileSystem(**{**storage_options, "endpoint_url": proxy.endpoint_url}, skip_instance_cache=True)
        with dask.config.set({"dask-prefetch.retries": 2}):
            f = fs.open(path, block_size=64 * 1024, part_size=64 * 1024, concurrency=4, prefetch_storage=tiers(0.5))
        with f:
            wait_until(lambda: f.engine.in_flight == 0, timeout=30)  # the window is full of failed blocks
            assert len(f.engine.held_blocks()) == 8
            with pytest.raises(OSError, match="failed 2 times"):
                f.read()
            failed = proxy.counts()["reset"]
            assert failed >= 2 * 8
            proxy.set_rates(reset=0.0)  # the store recovers
            assert f.read() == raw_fs.cat(path)  # the caller's single retry
            assert proxy.counts()["reset"] == failed


def test_close_wakes_a_reader_waiting_for_room_in_shared_tiers(fs, raw_fs, tiers):
    """A reader whose cursor block no tier has room for (another file's reader holds the one block of
    budget) is woken by close from another thread, instead of waiting out its read timeout."""
    from fsspec.asyn import sync

    from dask_prefetch import PrefetchEngine, TierSet
    from dask_prefetch.engine.layout import Layout

    def engine(paths: list[str]) -> PrefetchEngine:
        layout = Layout.from_objects(sync(fs.loop, fs._pin_objects, paths), 0, MiB, 256 * 1024)
        return PrefetchEngine(fs, layout, shared, concurrency=4, retries=3, read_timeout=30, **TIMEOUTS)

    shared = TierSet(tiers(1))  # one block: held by the first reader
    holder = engine(put_shards(raw_fs, [2 * MiB], prefix="holder"))
    waiter = None
    try:
        holder.view(0, 0)  # reading block 0: its space is not given up while it is read
        waiter = engine(put_shards(raw_fs, [2 * MiB], prefix="waiter", seed=5))
        outcome: list[BaseException] = []

        def read() -> None:
            try:
                waiter.view(0, 0)
            except BaseException as e:  # noqa: BLE001 - what the reader sees is the result
                outcome.append(e)

        thread = threading.Thread(target=read)
        thread.start()
        wait_until(lambda: shared.tiers[0].free < MiB and waiter.held_blocks() == [])
        time.sleep(0.2)  # let it reach its wait (nothing to poll for: it waits on a condition)
        started = time.monotonic()
        waiter.close()
        thread.join(10)
        assert not thread.is_alive() and time.monotonic() - started < 5
        assert len(outcome) == 1 and isinstance(outcome[0], ValueError) and "closed" in str(outcome[0])
    finally:
        holder.close()
        if waiter is not None:
            waiter.close()


def test_first_bytes_are_announced_once_the_readers_first_data_is_local(fs, raw_fs, tiers):
    """A 1000-byte header object comes first: the callback that lets a worker open its next tasks waits
    until the first shard's block, fetched over every connection, is local too (else their GETs share
    the link with it)."""
    paths = put_shards(raw_fs, [1000, 3 * MiB, 3 * MiB])
    fetched_when_called: list[int] = []
    with fs.open(paths, header_bytes=1000, prefetch_storage=tiers(16), concurrency=16) as f:
        assert [len(f.engine.layout.blocks[i].parts) for i in f.engine.layout.start_blocks] == [1, 12]
        f.engine.start_clock(time.monotonic(), lambda: fetched_when_called.append(f.engine.stats.bytes_fetched))
        assert len(f.read(1000)) == 1000
        wait_until(lambda: fetched_when_called, timeout=10)
        assert fetched_when_called[0] >= 1000 + 3 * MiB - 1000  # the header and the whole first shard
        assert f.read() == logical_bytes(raw_fs, paths, 1000)[1000:]
    assert len(fetched_when_called) == 1
    with fs.open(paths, header_bytes=1000, prefetch_storage=tiers(16), concurrency=1) as f:
        assert f.engine.layout.start_blocks == ()  # one GET at a time: nothing to wait for
        f.engine.start_clock(time.monotonic(), lambda: fetched_when_called.append(-1))
        assert len(f.read(10)) == 10 and fetched_when_called[-1] == -1
