"""PrefetchSchedulerPlugin + PrefetchWorkerPlugin on real clusters: placement, cross-task prefetch, worker loss."""

from __future__ import annotations

import math
import os
import time

import dask
import numpy as np
import pytest
from conftest import BUCKET, wait_until
from distributed import Client, LocalCluster, get_task_stream
from distributed.diagnostics.plugin import SchedulerPlugin
from test_tractogram import layout, random_walks

from dask_prefetch import (
    PrefetchSchedulerPlugin,
    PrefetchWorkerPlugin,
    process_stats,
    read_tractogram,
    register_plugins,
)
from dask_prefetch.cluster.scheduler import balanced_groups
from dask_prefetch.formats import StreamlineChunk
from dask_prefetch.testing import WanProxy

N_SHARDS = 8


@pytest.fixture(scope="module")
def tractogram_objects() -> tuple[dict[str, bytes], list[np.ndarray]]:
    shards = [random_walks(n, 100 + seed) for seed, n in enumerate([40, 90, 60, 120, 30, 70, 110, 50])]
    return layout("global-header", shards)


@pytest.fixture
def sharded(raw_fs, tractogram_objects) -> list[np.ndarray]:
    objects, expected = tractogram_objects
    for name, data in objects.items():
        raw_fs.pipe(f"{BUCKET}/{name}", data)
    return expected


@pytest.fixture
def cluster():
    # Work stealing off: it may move a placed task to an idle worker, which these tests would count as misplaced.
    with dask.config.set({"distributed.scheduler.work-stealing": False}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
            with Client(cluster) as client:
                yield client


class PlacementRecorder(SchedulerPlugin):
    """Registered after PrefetchSchedulerPlugin: what it decided, as the graph arrived."""

    name = "placement-recorder"

    def __init__(self) -> None:
        self.placed: dict = {}

    def update_graph(self, scheduler, *, tasks, **kwargs) -> None:
        for key in tasks:
            ts = scheduler.tasks[key]
            if partition_of(key) is not None:
                self.placed[key] = (ts.priority, set(ts.worker_restrictions or ()), ts.loose_restrictions)


def slow_count(chunk: StreamlineChunk) -> int:
    """Per-partition compute long enough for the next partition to be opened meanwhile."""
    time.sleep(0.2)
    return len(chunk.lengths)


def partition_of(key) -> int | None:
    """The partition index of a (fused) read task's key, None for other tasks."""
    return key[1] if isinstance(key, tuple) and "read-tractogram" in key[0] else None


def test_balanced_groups_are_contiguous_and_follow_capacity():
    assert balanced_groups([1] * 4, [1, 1]) == [0, 0, 1, 1]
    assert balanced_groups([1] * 6, [2, 1]) == [0, 0, 0, 0, 1, 1]
    assert balanced_groups([10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1]) == [0] + [1] * 10  # by bytes, not count
    assert balanced_groups([5, 5], [1, 1, 1]) == [0, 2]  # fewer items than workers
    assert balanced_groups([], [1]) == []
    groups = balanced_groups(list(np.random.default_rng(0).integers(1, 100, 464)), [2, 2, 2])
    assert groups == sorted(groups) and set(groups) == {0, 1, 2}


@pytest.mark.parametrize("collection", ["lengths", "map_chunks", "unoptimized"])
def test_placement_survives_default_optimization(cluster, storage_options, sharded, collection):
    cluster.register_plugin(PrefetchSchedulerPlugin())
    cluster.register_plugin(PlacementRecorder())
    tg = read_tractogram(f"s3://{BUCKET}/hydi.*", storage_options=storage_options)
    assert tg.npartitions == N_SHARDS
    job = tg.map_chunks(slow_count).sum() if collection == "map_chunks" else tg.lengths.sum()
    expected = len(sharded) if collection == "map_chunks" else sum(len(s) for s in sharded)
    with get_task_stream(cluster) as stream:
        # By default bag and array tasks are fused (and annotations dropped); read tasks are still found.
        assert job.compute(optimize_graph=collection != "unoptimized") == expected
    placed = cluster.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins[PlacementRecorder.name].placed)
    assert len(placed) == N_SHARDS
    by_priority = sorted(placed.values(), key=lambda p: p[0])
    workers = [next(iter(restrictions)) for _, restrictions, _ in by_priority]
    assert all(len(r) == 1 and loose for _, r, loose in by_priority)  # one worker each, loose (never stuck)
    assert len(set(workers)) == 2 and sum(a != b for a, b in zip(workers, workers[1:])) == 1, workers  # two runs
    ran_on = {t["key"]: t["worker"] for t in stream.data if t["key"] in placed}
    assert ran_on == {key: next(iter(r)) for key, (_, r, _) in placed.items()}  # and that is where they ran
    wait_until(lambda: cluster.run_on_scheduler(_placed) == {})  # forgotten with their tasks


def test_next_partitions_are_opened_ahead_and_claimed(cluster, storage_options, sharded, tiers):
    ((tier, mib),) = tiers(64)
    cluster.register_plugin(PrefetchSchedulerPlugin())
    cluster.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[(tier, mib)]))
    tg = read_tractogram(f"s3://{BUCKET}/hydi.*", storage_options=storage_options)
    chunks = tg.map_chunks(lambda chunk: (time.sleep(0.2), chunk)[1]).compute()
    got = StreamlineChunk.concat(chunks)
    np.testing.assert_array_equal(got.lengths, [len(s) for s in sharded])
    np.testing.assert_array_equal(got.points, np.concatenate(sharded))

    def counters(dask_worker) -> dict:
        plugin = dask_worker.plugins[PrefetchWorkerPlugin.name]
        stats = plugin.stats()
        return dict(
            ahead=plugin.next_tasks.opened_ahead,
            claimed=plugin.next_tasks.claimed,
            pending=plugin.next_tasks.pending(),
            opened=stats.files_opened,
            open_now=plugin.open_files(),
            held=plugin.tiers.tiers[0].used,
        )

    per_worker = cluster.run(counters)
    # Every partition but the first of each worker thread was opened while another one computed.
    assert sum(c["claimed"] for c in per_worker.values()) == N_SHARDS - 2, per_worker
    assert sum(c["opened"] for c in per_worker.values()) == N_SHARDS  # none opened twice
    for c in per_worker.values():
        assert c["ahead"] == c["claimed"] and c["pending"] == 0 and c["open_now"] == 0 and c["held"] == 0


def test_running_reads_get_their_first_bytes_before_anything_is_opened_ahead(
    s3_server, storage_options, sharded, tiers
):
    """The first task's GETs must not share the link and the cores with the next tasks' heads."""
    ((tier, mib),) = tiers(64)
    with WanProxy(s3_server.endpoint_url, latency=0.3, bandwidth=math.inf) as proxy:
        far = {**storage_options, "endpoint_url": proxy.endpoint_url}
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as lc:
            with Client(lc) as client:
                register_plugins(client, prefetch_storage=[(tier, mib)])
                tg = read_tractogram(f"s3://{BUCKET}/hydi.*", storage_options=far)
                got = StreamlineChunk.concat(tg.map_chunks(lambda chunk: (time.sleep(0.1), chunk)[1]).compute())
                np.testing.assert_array_equal(got.points, np.concatenate(sharded))

                def counters(dask_worker) -> tuple[int, int, int]:
                    ahead = dask_worker.plugins[PrefetchWorkerPlugin.name].next_tasks
                    return ahead.held_back, ahead.opened_ahead, ahead.claimed

                ((held_back, opened_ahead, claimed),) = client.run(counters).values()
    # The job starts with one task running and the next ones queued: the first opening ahead waits
    # for that task's first bytes (>= 0.3 s away). Then nothing stalls: every next file is claimed.
    assert held_back >= 1 and opened_ahead == claimed == N_SHARDS - 1, (held_back, opened_ahead, claimed)


def test_files_opened_ahead_for_tasks_that_never_claim_them_are_closed(cluster, storage_options, sharded, tiers):
    ((tier, mib),) = tiers(64)
    cluster.register_plugin(PrefetchSchedulerPlugin())
    cluster.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[(tier, mib)]))
    tg = read_tractogram(f"s3://{BUCKET}/hydi.*", storage_options=storage_options)
    future = cluster.compute(tg.map_chunks(lambda chunk: time.sleep(5)))
    wait_until(
        lambda: (
            sum(cluster.run(lambda dask_worker: dask_worker.plugins["dask-prefetch"].next_tasks.pending()).values())
            >= 2
        )
    )
    future.cancel()  # the queued tasks leave the workers without running

    def idle(dask_worker) -> bool:
        plugin = dask_worker.plugins["dask-prefetch"]
        return plugin.next_tasks.pending() == 0 and plugin.open_files() == 0 and plugin.tiers.tiers[0].used == 0

    def leftovers() -> list[str]:  # inside each worker's directory: its lock file only
        return [f for d in os.scandir(tier) for f in os.listdir(d.path) if f != ".lock"]

    wait_until(lambda: all(cluster.run(idle).values()) and not leftovers(), timeout=30)


def test_without_the_worker_plugin_placement_alone_still_reads_correctly(cluster, storage_options, sharded, tiers):
    cluster.register_plugin(PrefetchSchedulerPlugin())
    before = sum(cluster.run(lambda: process_stats().files_opened).values())
    tg = read_tractogram(f"s3://{BUCKET}/hydi.*", storage_options=storage_options, prefetch_storage=tiers(16))
    np.testing.assert_array_equal(tg.lengths.compute(), [len(s) for s in sharded])
    assert sum(cluster.run(lambda: process_stats().files_opened).values()) - before >= N_SHARDS


def test_a_killed_worker_partitions_run_elsewhere(storage_options, sharded, tiers):
    ((tier, mib),) = tiers(64)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, Client(lc) as c:
        c.register_plugin(PrefetchSchedulerPlugin())
        c.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[(tier, mib)]))
        tg = read_tractogram(f"s3://{BUCKET}/hydi.*", storage_options=storage_options)
        future = c.compute(tg.map_chunks(slow_count).sum())
        placed = {}
        wait_until(lambda: placed.update(c.run_on_scheduler(_placed)) or len(set(placed.values())) == 2, timeout=30)
        victim = sorted(set(placed.values()))[1]
        wait_until(lambda: _memory_reads(c) >= 1, timeout=60)
        try:
            c.run(os._exit, 1, workers=[victim])  # killed mid-job; its nanny starts a new one
        except Exception:
            pass
        assert future.result(timeout=120) == len(sharded)
        restricted = c.run_on_scheduler(
            lambda dask_scheduler: [
                k for k, ts in dask_scheduler.tasks.items() if victim in (ts.worker_restrictions or ())
            ]
        )
        assert restricted == []
        wait_until(lambda: len(c.scheduler_info()["workers"]) == 2, timeout=60)
        # The new worker's plugin swept the killed one's directory: one directory per live worker.
        c.run(lambda dask_worker: dask_worker.plugins["dask-prefetch"].tiers is not None)
        assert len([d for d in os.listdir(tier) if d.startswith("dask-prefetch-")]) == 2
    wait_until(lambda: not os.listdir(tier), timeout=30)  # cluster closed: teardown removed them


def _placed(dask_scheduler) -> dict:
    return dict(dask_scheduler.plugins[PrefetchSchedulerPlugin.name].placed)


def _memory_reads(client: Client) -> int:
    return client.run_on_scheduler(
        lambda dask_scheduler: sum(
            ts.state == "memory" for k, ts in dask_scheduler.tasks.items() if partition_of(k) is not None
        )
    )


def test_preload_installs_both_plugins_from_config(storage_options, sharded, tiers):
    ((tier, mib),) = tiers(64)
    preload = ["dask_prefetch.preload"]
    with dask.config.set({"dask-prefetch.storage": [[tier, mib]]}):
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=False,
                dashboard_address=":0",
                preload=preload,
                scheduler_kwargs={"preload": preload},
            ) as lc,
            Client(lc) as c,
        ):
            assert PrefetchSchedulerPlugin.name in c.run_on_scheduler(
                lambda dask_scheduler: list(dask_scheduler.plugins)
            )
            dirs = c.run(lambda dask_worker: dask_worker.plugins["dask-prefetch"]._directories[0].path)
            assert all(os.path.dirname(d) == tier for d in dirs.values()) and len(set(dirs.values())) == 2
            tg = read_tractogram(f"s3://{BUCKET}/hydi.*", storage_options=storage_options)
            np.testing.assert_array_equal(tg.lengths.compute(), [len(s) for s in sharded])
            assert (
                sum(c.run(lambda dask_worker: dask_worker.plugins["dask-prefetch"].stats().files_opened).values())
                == N_SHARDS
            )


def test_register_plugins_is_idempotent(cluster, tiers):
    ((tier, mib),) = tiers(64)
    register_plugins(cluster, prefetch_storage=[(tier, mib)])
    register_plugins(cluster, prefetch_storage=[(tier, mib)])
    assert len(os.listdir(tier)) == 2  # one directory per worker, not two
    assert PrefetchSchedulerPlugin.name in cluster.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins))


@pytest.mark.skipif(not hasattr(Client, "register_worker_plugin"), reason="distributed >= 2026.6 removed it")
def test_the_older_registration_methods_work_where_they_exist(cluster, tiers):
    ((tier, mib),) = tiers(64)
    cluster.register_scheduler_plugin(PrefetchSchedulerPlugin())
    cluster.register_worker_plugin(PrefetchWorkerPlugin(prefetch_storage=[(tier, mib)]))
    assert len(os.listdir(tier)) == 2
