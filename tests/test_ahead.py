"""parsed_ahead: a streamed task's next chunks are made in a helper thread while its function runs."""

from __future__ import annotations

import contextlib
import threading

import pytest
from conftest import MiB, put_shards
from distributed import Client, LocalCluster

from dask_prefetch import PrefetchWorkerPlugin, S3PrefetchFileSystem
from dask_prefetch.cluster import current_worker_plugin
from dask_prefetch.fs.opening import helper_context
from dask_prefetch.tractography.ahead import parsed_ahead

HELPER = "dask-prefetch-parse-ahead"
WAIT = 10.0  # seconds: a bound on each wait below, never reached when the code is right


@pytest.fixture
def cluster():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            yield client


def helpers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == HELPER]


class Made:
    """An iterator of ``n`` items that records which thread made each and whether it was closed."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at
        self.threads: list[int] = []
        self.made = [threading.Event() for _ in range(n)]
        self.closed = threading.Event()

    def __iter__(self):
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise ValueError(f"item {i} is damaged")
                self.threads.append(threading.get_ident())
                self.made[i].set()
                yield i
        finally:
            self.closed.set()


def test_items_come_in_order_and_the_next_is_made_while_the_caller_holds_one():
    items = Made(5)
    seen = []
    for i in parsed_ahead(items):
        if i + 1 < items.n:  # made meanwhile by the helper, not after the caller asks for it
            assert items.made[i + 1].wait(WAIT), f"item {i + 1} was not made while the caller held item {i}"
        seen.append(i)
    assert seen == list(range(5))
    assert items.threads[0] == threading.get_ident()  # the first (where a task opens its stream) here
    assert all(t != threading.get_ident() for t in items.threads[1:])
    assert items.closed.is_set() and not helpers_alive()


def test_at_most_depth_items_wait_ahead():
    items = Made(10)
    gen = parsed_ahead(items, depth=2)
    assert next(gen) == 0
    assert items.made[3].wait(WAIT)  # 1 and 2 handed over, 3 made and waiting to be
    assert not items.made[4].wait(0.3)
    assert list(gen) == list(range(1, 10))
    assert not helpers_alive()


def test_an_error_of_the_items_is_raised_in_its_place_after_the_items_before():
    seen = []
    with pytest.raises(ValueError, match="item 3 is damaged"):
        for i in parsed_ahead(Made(6, fail_at=3)):
            seen.append(i)
    assert seen == [0, 1, 2] and not helpers_alive()


def test_an_error_of_the_first_item_is_raised_with_no_thread_started():
    with pytest.raises(ValueError, match="item 0 is damaged"):
        next(parsed_ahead(Made(3, fail_at=0)))
    assert not helpers_alive()
    assert list(parsed_ahead(Made(0))) == []


@pytest.mark.parametrize("how", ["raise", "close"])
def test_a_caller_that_stops_early_leaves_no_thread_and_the_items_closed(how):
    items = Made(1000)
    gen = parsed_ahead(items)
    if how == "raise":  # as read_partition does
        with pytest.raises(RuntimeError, match="the caller's function failed"), contextlib.closing(gen):
            for i in gen:
                if i == 2:
                    raise RuntimeError("the caller's function failed")
    else:
        assert [next(gen), next(gen)] == [0, 1]
        gen.close()
    assert items.closed.wait(WAIT) and not helpers_alive()
    assert len(items.threads) < 10  # it stopped making them


def test_depth_below_one_is_refused():
    with pytest.raises(ValueError, match="depth must be >= 1"):
        next(parsed_ahead(Made(2), depth=0))


def test_files_opened_in_a_tasks_helper_draw_on_the_workers_tiers(cluster, storage_options, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    cluster.register_plugin(PrefetchWorkerPlugin(prefetch_storage=list(tiers(1))))
    fs = S3PrefetchFileSystem(**storage_options)

    def read_in_thread(path: str, helped: bool) -> tuple[bool, int]:
        plugin, out = current_worker_plugin(), []

        def read() -> None:
            with fs.open(path, block_size=64 * 1024) as f:
                out.append((f._engine.tiers is plugin.tiers, len(f.read())))

        thread = threading.Thread(target=helper_context().run if helped else lambda f: f(), args=(read,))
        thread.start()
        thread.join(WAIT)
        return out[0]

    assert cluster.submit(read_in_thread, path, True, pure=False).result() == (True, MiB)
    assert cluster.submit(read_in_thread, path, False, pure=False).result() == (False, MiB)  # a thread of its own


def streamed(tmp_path, func):
    from dask_prefetch import read_tractogram
    from dask_prefetch.testing.tractograms import synthetic_streamlines, trk_bytes

    path = tmp_path / "t.trk"
    if not path.exists():
        path.write_bytes(trk_bytes(synthetic_streamlines(3000, 5)))
    return read_tractogram(str(path), chunk_size="64 KiB").map_chunks(func, per="chunk")


@pytest.mark.parametrize("ahead", [0, 1, 2])
def test_parse_ahead_is_configured_and_gives_the_same_chunks(tmp_path, ahead):
    import dask

    helped = []

    def f(chunk) -> int:
        helped.append(bool(helpers_alive()))
        return len(chunk)

    with dask.config.set({"dask-prefetch.parse-ahead": ahead}):
        counts = streamed(tmp_path, f).compute(scheduler="sync")
    assert sum(counts) == 3000 and len(counts) == len(helped) > 4
    assert counts == streamed(tmp_path, len).compute(scheduler="sync")
    assert any(helped) == bool(ahead) and not helpers_alive()


def test_a_function_failing_on_a_chunk_fails_the_task_and_leaves_no_helper(tmp_path):
    calls = []

    def f(chunk) -> int:
        calls.append(len(chunk))
        if len(calls) == 2:
            raise KeyError("the user's function failed")
        return len(chunk)

    with pytest.raises(KeyError, match="the user's function failed"):
        streamed(tmp_path, f).compute(scheduler="sync")
    assert len(calls) == 2 and not helpers_alive()
