"""PrefetchWorkerPlugin on a real LocalCluster: one budget per worker, metrics, teardown."""

from __future__ import annotations

import os
import threading
import urllib.request

import pytest
from conftest import BUCKET, MiB, disk_usage, put_shards, wait_until
from distributed import Client, LocalCluster

from dask_prefetch import PrefetchWorkerPlugin, S3PrefetchFileSystem
from dask_prefetch.cluster import current_worker_plugin
from dask_prefetch.config import get_concurrency
from dask_prefetch.testing import FaultProxy


def read_whole(fs: S3PrefetchFileSystem, path: str) -> int:
    """A task: read one object through rolling prefetch, slowly enough for the window to fill."""
    with fs.open(path, block_size=64 * 1024, part_size=32 * 1024) as f:
        total = 0
        while chunk := f.read(16 * 1024):
            total += len(chunk)
        return total


@pytest.fixture
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=3, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            yield client


def worker_dirs(tier: str) -> list[str]:
    return [e.path for e in os.scandir(tier) if e.name.startswith("dask-prefetch-")]


def test_one_budget_per_worker_shared_by_its_tasks(cluster, storage_options, raw_fs, tiers):
    paths = put_shards(raw_fs, [MiB] * 12)
    ((tier, mib),) = tiers(0.5)
    cluster.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[(tier, mib)]))
    dirs = worker_dirs(tier)
    assert len(dirs) == 2  # a private directory per worker
    peaks = dict.fromkeys(dirs, 0)
    done = threading.Event()

    def sample():
        while not done.is_set():
            for d in dirs:
                peaks[d] = max(peaks[d], disk_usage(d))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fs = S3PrefetchFileSystem(**storage_options)
        sizes = cluster.gather(cluster.map(read_whole, [fs] * len(paths), paths))  # 3 at a time per worker
    finally:
        done.set()
        sampler.join()
    assert sizes == [MiB] * 12
    # 3 concurrent files per worker, each of which alone would fill 0.5 MiB: together they stay within it
    assert all(0 < peak <= 0.5 * MiB for peak in peaks.values()), peaks

    def metrics() -> dict:  # as the scheduler (and dashboard) last heard them, with each heartbeat
        return {addr: info["metrics"] for addr, info in cluster.scheduler_info()["workers"].items()}

    # A closed file's last blocks are freed when their GETs have wound down, which one heartbeat may miss.
    wait_until(lambda: all(m["prefetch_open_files"] == m["prefetch_tier0_bytes"] == 0 for m in metrics().values()))
    for m in metrics().values():
        assert m["prefetch_requests"] > 0 and m["prefetch_open_files"] == 0 and m["prefetch_in_flight"] == 0
        assert m["prefetch_tier0_bytes"] == 0
    assert sum(m["prefetch_bytes_fetched"] for m in metrics().values()) >= 12 * MiB
    assert sum(m["prefetch_bytes_served"] for m in metrics().values()) == 12 * MiB
    assert all(0 <= m["prefetch_reads_waited"] <= m["prefetch_reads"] for m in metrics().values())
    assert sum(m["prefetch_reads"] for m in metrics().values()) >= 12 * MiB // (64 * 1024)  # once per block at least

    cluster.unregister_worker_plugin(PrefetchWorkerPlugin.name)
    wait_until(lambda: worker_dirs(tier) == [])


def test_registering_twice_is_a_no_op_and_arguments_are_checked(cluster, tiers):
    ((tier, mib),) = tiers(1)
    cluster.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[(tier, mib)]))
    cluster.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[(tier, mib)]))
    assert len(worker_dirs(tier)) == 2
    with pytest.raises(ValueError, match="must be > 0 MiB"):
        PrefetchWorkerPlugin(prefetch_storage=[(tier, 0)])
    with pytest.raises(TypeError, match=r"\(directory, MiB\) pairs"):
        PrefetchWorkerPlugin(prefetch_storage=[tier])


def test_explicit_storage_still_gets_a_budget_of_its_own(cluster, storage_options, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    shared, own = tiers(1, 1)
    cluster.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[shared]))
    fs = S3PrefetchFileSystem(**storage_options)

    def read(path: str, storage) -> tuple[bool, str, int]:
        plugin = current_worker_plugin()
        with fs.open(path, block_size=64 * 1024, prefetch_storage=storage) as f:
            data = f.read()
            (scratch,) = f._engine.files.scratch  # the tier directory its blocks went to
            return f._engine.tiers is plugin.tiers, scratch, len(data)

    shared_budget, where, n = cluster.submit(read, path, [own], pure=False).result()
    assert not shared_budget and where == own[0] and n == MiB
    shared_budget, where, n = cluster.submit(read, path, None, pure=False).result()
    assert shared_budget and os.path.dirname(where) == shared[0] and n == MiB  # inside the worker's directory


def test_prometheus_metrics_on_the_workers_http_endpoint(cluster, storage_options, raw_fs, tiers):
    parser = pytest.importorskip("prometheus_client.parser")
    paths = put_shards(raw_fs, [MiB] * 4)
    ((tier, mib),) = tiers(4)
    cluster.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[(tier, mib)]))
    fs = S3PrefetchFileSystem(**storage_options)
    assert cluster.gather(cluster.map(read_whole, [fs] * len(paths), paths)) == [MiB] * 4
    ports = cluster.run(lambda dask_worker: dask_worker.http_server.port)
    samples: dict[tuple[str, str], float] = {}
    for address, port in ports.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
        for family in parser.text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.startswith("dask_prefetch_") and sample.labels.get("worker") == address:
                    samples[(address, sample.name)] = sample.value
    for address in ports:
        assert samples[(address, "dask_prefetch_open_files")] == 0
        assert samples[(address, "dask_prefetch_in_flight_requests")] == 0
    assert sum(v for (_, name), v in samples.items() if name == "dask_prefetch_served_bytes_total") == 4 * MiB
    assert sum(v for (_, name), v in samples.items() if name == "dask_prefetch_files_opened_total") == 4
    assert sum(v for (_, name), v in samples.items() if name == "dask_prefetch_fetched_bytes_total") >= 4 * MiB


def test_waits_for_data_show_in_fine_performance_metrics(cluster, s3_server, storage_options, raw_fs, tiers):
    from dask_prefetch.testing import WanProxy

    (path,) = put_shards(raw_fs, [MiB])
    with WanProxy(s3_server.endpoint_url, latency=0.2, bandwidth=4 * MiB) as proxy:  # the task must wait
        fs = S3PrefetchFileSystem(**{**storage_options, "endpoint_url": proxy.endpoint_url})
        assert cluster.submit(read_whole, fs, path, pure=False).result() == MiB

    def waited() -> float:
        metrics = cluster.run_on_scheduler(lambda dask_scheduler: dict(dask_scheduler.cumulative_worker_metrics))
        return sum(v for k, v in metrics.items() if isinstance(k, tuple) and "prefetch-wait" in k)

    wait_until(lambda: waited() > 0.2)  # reported with the workers' heartbeats


@pytest.mark.parametrize("with_scheduler_plugin, threads", [(False, 1), (True, 1), (True, 4)])
def test_a_budget_of_exactly_one_block_makes_progress(storage_options, raw_fs, tiers, with_scheduler_plugin, threads):
    """#16.4: files opened ahead of their tasks must not starve the running task's cursor block."""
    import dask

    from dask_prefetch import PrefetchSchedulerPlugin, read_tractogram
    from dask_prefetch.testing.tractograms import sharded_tractogram, upload_sharded

    shards = sharded_tractogram(12 * 1.15, 12)  # ~1.15 MB each: two blocks per shard after the header

    upload_sharded(raw_fs, f"{BUCKET}/one-block", shards)
    ((tier, _),) = tiers(1)
    with dask.config.set({"dask-prefetch.read-timeout": 10}):  # stuck reads fail fast (they waited forever)
        with LocalCluster(n_workers=2, threads_per_worker=threads, processes=False, dashboard_address=":0") as lc:
            with Client(lc) as client:
                if with_scheduler_plugin:
                    client.register_plugin(PrefetchSchedulerPlugin())
                client.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[(tier, 1)]))
                tg = read_tractogram(f"s3://{BUCKET}/one-block.*", storage_options=storage_options, block_size="1 MiB")
                assert tg.npartitions == 12  # more than the threads: some are opened ahead
                assert tg.lengths.sum().compute() == sum(len(s) for shard in shards for s in shard)
                served = sum(client.run(bytes_served_by_plugin).values())
                # each task reads the global header and a shard, all through the one-block tiers: its body, or
                # all of it when the graph build sampled the shards' headers and the tasks check the rest
                skip = 0 if tg.partitions[0].shard_heads else 1000
                shards = raw_fs.glob(f"{BUCKET}/one-block.pt*")
                assert served == sum(1000 + raw_fs.size(p) - skip for p in shards)


def bytes_served_by_plugin(dask_worker) -> int:
    """Bytes the worker's prefetch plugin served to its tasks."""
    (plugin,) = [p for p in dask_worker.plugins.values() if isinstance(p, PrefetchWorkerPlugin)]
    return plugin.stats().bytes_served


def opened_on(fs: S3PrefetchFileSystem, path: str) -> tuple[bool, str, int]:
    """A task: read ``path``; whether it drew on the worker plugin's tiers, under which directory, how many bytes."""
    plugin = current_worker_plugin()
    with fs.open(path, block_size=64 * 1024) as f:
        data = f.read()
        (scratch,) = f._engine.files.scratch
        return plugin is not None and f._engine.tiers is plugin.tiers, os.path.dirname(scratch), len(data)


def test_a_plugin_registered_under_another_name_is_found(cluster, storage_options, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    ((tier, mib),) = tiers(1)
    cluster.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[(tier, mib)]), name="my-prefetch")
    fs = S3PrefetchFileSystem(**storage_options)
    shared, where, n = cluster.submit(opened_on, fs, path, pure=False).result()
    assert shared and n == MiB
    assert where == tier  # inside that worker's private directory under the plugin's tier
    assert sum(cluster.run(bytes_served_by_plugin).values()) == MiB


def test_a_second_prefetch_plugin_on_a_worker_is_refused(cluster, storage_options, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    first, second = tiers(1, 1)
    cluster.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[first]))
    with pytest.raises(ValueError, match="already has a PrefetchWorkerPlugin, registered as 'dask-prefetch'"):
        cluster.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[second]), name="other")
    assert worker_dirs(second[0]) == []  # refused before making anything
    fs = S3PrefetchFileSystem(**storage_options)
    shared, where, _ = cluster.submit(opened_on, fs, path, pure=False).result()
    assert shared and where == first[0]  # the first one still serves the tasks
    cluster.unregister_worker_plugin("other")  # the refused one leaves the first one's metrics alone
    infos = cluster.run(lambda dask_worker: "prefetch_bytes_served" in dask_worker.metrics)
    assert all(infos.values()) and len(worker_dirs(first[0])) == 2


def test_missing_storage_directories_are_made_private_on_the_workers(cluster, tmp_path):
    base = tmp_path / "base"
    base.mkdir(mode=0o755)
    new = base / "new" / "dir"
    cluster.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[(str(new), 1)]))
    assert len(worker_dirs(str(new))) == 2
    assert [oct(p.stat().st_mode & 0o777) for p in (base, base / "new", new)] == ["0o755", "0o700", "0o700"]


def test_storage_that_cannot_be_a_directory_fails_in_one_line(cluster, tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    bad = str(tmp_path / "file" / "dir")
    with pytest.raises(NotADirectoryError) as info:
        cluster.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[(bad, 1)]))
    assert str(info.value) == f"prefetch_storage directory {bad!r} cannot be made: a component of its path is a file"


def test_setup_sweeps_dead_workers_leftovers_at_once(cluster, tiers):
    import subprocess
    import sys

    from dask_prefetch.cache.tiers import ScratchDirectory

    ((tier, mib),) = tiers(1)
    ScratchDirectory(tier).remove()  # this process has swept the tier once already (a long-lived client)
    code = (
        "import os, sys; from dask_prefetch.cache.tiers import ScratchDirectory;"
        "s = ScratchDirectory(sys.argv[1]); open(s.file('7'), 'wb').write(b'stale');"
        "print(s.path, flush=True); os._exit(0)"  # dies without cleaning up, as a SIGKILLed worker
    )
    dead = subprocess.run([sys.executable, "-c", code, tier], capture_output=True, text=True, check=True)
    assert os.path.isdir(dead.stdout.strip())
    cluster.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[(tier, mib)]))
    assert not os.path.exists(dead.stdout.strip())  # gone by setup, before any task opens a file
    assert len(worker_dirs(tier)) == 2


def plugin_connections(dask_worker) -> int:
    (plugin,) = [p for p in dask_worker.plugins.values() if isinstance(p, PrefetchWorkerPlugin)]
    return plugin.connections


def test_setup_opens_connections_to_the_store_its_tasks_will_read(cluster, s3_server, storage_options, raw_fs, tiers):
    """The first task's start GETs find open connections (on a cold client none is sent before all are signed)."""
    ((tier, mib),) = tiers(1)
    n = get_concurrency()[0] + 1  # a file's start GETs and its header object's
    with FaultProxy(s3_server.endpoint_url) as proxy:
        options = {**storage_options, "endpoint_url": proxy.endpoint_url}
        plugin = PrefetchWorkerPlugin(prefetch_storage=[(tier, mib)], store=f"s3://{BUCKET}", storage_options=options)
        cluster.register_plugin(plugin)
        assert list(cluster.run(plugin_connections).values()) == [n, n]
        assert proxy.counts().get("method:HEAD", 0) == 2 * n  # HEAD bucket, each worker
        (path,) = put_shards(raw_fs, [MiB])
        assert cluster.submit(read_whole, S3PrefetchFileSystem(**options), path, pure=False).result() == MiB


def test_a_store_that_cannot_be_reached_is_logged_not_raised(cluster, storage_options, tiers, caplog):
    ((tier, mib),) = tiers(1)
    plugin = PrefetchWorkerPlugin(
        prefetch_storage=[(tier, mib)], store="s3://no-such-bucket", storage_options=storage_options
    )
    with caplog.at_level("WARNING", logger="dask_prefetch.cluster.worker"):
        cluster.register_plugin(plugin)
    assert list(cluster.run(plugin_connections).values()) == [0, 0]
    assert "no-such-bucket" in caplog.text


@pytest.mark.parametrize("kwargs", [{"store": 3}, {"store": "s3://b", "storage_options": [("anon", True)]}])
def test_store_arguments_are_checked(kwargs):
    with pytest.raises(TypeError):
        PrefetchWorkerPlugin(**kwargs)
