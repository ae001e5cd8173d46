"""A bounded soak: 200 open/seek/read/close cycles, four at a time, under random S3 faults.

Every byte is checked, and afterwards nothing is left behind: no thread, file descriptor, cache
file, open engine or memory growth beyond a small bound.
"""

from __future__ import annotations

import gc
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import dask.config
import numpy as np
from conftest import put_shards, wait_until

from dask_prefetch import S3PrefetchFileSystem, process_stats
from dask_prefetch.engine import stats as engine_stats
from dask_prefetch.testing import FaultProxy

CYCLES = 200
THREADS = 4
RATES = {"slowdown": 0.03, "reset": 0.05, "stall": 0.02}


def open_descriptors() -> dict[str, int]:
    """This process's descriptors: sockets, and everything else (files, directories, pipes)."""
    kinds = {"socket": 0, "other": 0}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the descriptor listdir itself used
            continue
        kinds["socket" if target.startswith("socket:") else "other"] += 1
    return kinds


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_soak_under_random_faults(s3_server, storage_options, raw_fs, tmp_path):
    paths = put_shards(raw_fs, [300_000, 200_000, 150_001, 100_000])
    objects = {p: raw_fs.cat(p) for p in paths}
    storage = []
    for i, mib in enumerate((0.125, 0.25)):
        (tmp_path / f"tier{i}").mkdir()
        storage.append((str(tmp_path / f"tier{i}"), mib))

    def expected(selection: list[str], header_bytes: int) -> bytes:
        return b"".join(objects[p][header_bytes if i else 0 :] for i, p in enumerate(selection))

    def cycle(fs: S3PrefetchFileSystem, rng: np.random.Generator) -> int:
        first = int(rng.integers(0, len(paths)))
        selection = paths[first : first + int(rng.integers(1, 4))]
        header_bytes = int(rng.choice([0, 1000])) if len(selection) > 1 else 0
        truth = expected(selection, header_bytes)
        f = fs.open(
            selection, header_bytes=header_bytes, block_size=64 * 1024, part_size=64 * 1024, prefetch_storage=storage
        )
        checked = 0
        for _ in range(int(rng.integers(2, 7))):
            at = int(rng.integers(0, len(truth)))
            f.seek(at)
            got = f.read(int(rng.integers(1, 150_000)))
            assert got == truth[at : at + len(got)] and (got or at == len(truth))
            checked += len(got)
        how = int(rng.integers(0, 3))
        if how == 0:
            f.close()
        elif how == 1:
            with f:
                checked += len(f.read(1000))
        else:
            del f  # left to garbage collection
        return checked

    settings = {"dask-prefetch.stall-timeout": "0.3s", "dask-prefetch.retries": 10}
    with FaultProxy(s3_server.endpoint_url, RATES, stall_seconds=2, seed=7) as proxy, dask.config.set(settings):
        options = {**storage_options, "endpoint_url": proxy.endpoint_url}
        fs = S3PrefetchFileSystem(**options, skip_instance_cache=True)
        warm = np.random.default_rng(0)
        for _ in range(8):  # warm up: connection pool, event loop thread, caches
            cycle(fs, warm)
        gc.collect()
        threads_before = set(threading.enumerate())
        fds_before = open_descriptors()
        rss_before = rss_bytes()
        before = process_stats()

        def worker(seed: int) -> int:
            rng = np.random.default_rng(seed)
            return sum(cycle(fs, rng) for _ in range(CYCLES // THREADS))

        with ThreadPoolExecutor(THREADS) as pool:
            checked = sum(pool.map(worker, range(1, THREADS + 1)))
        gc.collect()
        wait_until(lambda: set(threading.enumerate()) <= threads_before, timeout=10)
        counts = proxy.counts()

    after = process_stats()
    fds_after = open_descriptors()
    assert checked > 5 * 2**20
    assert counts["reset"] >= 10 and counts["stall"] >= 3 and counts["slowdown"] >= 5  # faults really happened
    assert after.gets_resumed - before.gets_resumed > 0  # (a reset GET of a block evicted meanwhile is just dropped)
    assert not engine_stats._live  # every engine closed (by close, with, or garbage collection)
    assert fds_after["other"] <= fds_before["other"]  # no block file, lock or directory left open
    assert fds_after["socket"] <= fds_before["socket"] + 64  # at most a full connection pool
    assert all(os.listdir(d) == [] for d, _ in storage)  # every cache file removed
    assert rss_bytes() - rss_before < 64 * 2**20
