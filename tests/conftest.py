"""Fixtures: a real S3 server (moto, in a child process) on loopback, reset before every test."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import s3fs

from dask_prefetch import S3PrefetchFileSystem
from dask_prefetch.testing import LocalS3Server

BUCKET = "test-bucket"
MiB = 2**20


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3Server]:
    with LocalS3Server() as server:
        yield server


@pytest.fixture
def storage_options(s3_server: LocalS3Server) -> dict:
    """Options for s3fs against an empty server holding one empty bucket."""
    s3_server.reset()
    options = s3_server.storage_options()
    raw = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    raw.mkdir(BUCKET)
    return options


@pytest.fixture
def raw_fs(storage_options: dict) -> s3fs.S3FileSystem:
    """A plain s3fs filesystem, to put and replace objects."""
    return s3fs.S3FileSystem(**storage_options, skip_instance_cache=True)


@pytest.fixture
def fs(storage_options: dict) -> S3PrefetchFileSystem:
    return S3PrefetchFileSystem(**storage_options, skip_instance_cache=True)


@pytest.fixture
def tiers(tmp_path) -> Callable[..., list[tuple[str, float]]]:
    """``tiers(mib, mib, ...)``: fresh tier directories with those budgets."""

    def make(*budgets_mib: float) -> list[tuple[str, float]]:
        out = []
        for i, mib in enumerate(budgets_mib):
            d = tmp_path / f"tier{i}"
            d.mkdir(exist_ok=True)
            out.append((str(d), mib))
        return out

    return make


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def put_shards(raw: s3fs.S3FileSystem, sizes: list[int], prefix: str = "shard", seed: int = 0) -> list[str]:
    """Upload objects of random bytes; return their paths (``bucket/key``)."""
    paths = []
    for i, size in enumerate(sizes):
        path = f"{BUCKET}/{prefix}{i:03d}"
        raw.pipe(path, random_bytes(size, seed + i))
        paths.append(path)
    return paths


def logical_bytes(raw: s3fs.S3FileSystem, paths: list[str], header_bytes: int = 0) -> bytes:
    """What a prefetching file over ``paths`` must read."""
    return b"".join(raw.cat(p)[header_bytes if i else 0 :] for i, p in enumerate(paths))


def scratch_dirs(tier_dir: str) -> list[str]:
    return sorted(e.path for e in os.scandir(tier_dir) if e.name.startswith("dask-prefetch-"))


def disk_usage(directory: str) -> int:
    """Bytes allocated on disk under ``directory`` (what ``du`` counts)."""
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> None:
    """Poll ``predicate`` until it holds (tests only: the library itself never polls)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@contextlib.contextmanager
def client_with_both_plugins(storage: list[tuple[str, float]]) -> Iterator[Any]:
    """A client of an in-process cluster (2 workers x 1 thread, no work stealing) with both plugins."""
    import dask
    from distributed import Client, LocalCluster

    from dask_prefetch import PrefetchSchedulerPlugin, PrefetchWorkerPlugin

    with dask.config.set({"distributed.scheduler.work-stealing": False}):
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
            with Client(cluster) as client:
                client.register_plugin(PrefetchSchedulerPlugin())
                client.register_plugin(PrefetchWorkerPlugin(prefetch_storage=storage))
                yield client


def next_task_counters(client: Any) -> dict[str, tuple[int, int]]:
    """Per worker: files its plugin opened ahead for its next tasks, and how many of them a task claimed."""
    from dask_prefetch import PrefetchWorkerPlugin

    def counters(dask_worker) -> tuple[int, int]:
        plugin = dask_worker.plugins[PrefetchWorkerPlugin.name]
        return plugin.next_tasks.opened_ahead, plugin.next_tasks.claimed

    return client.run(counters)
