"""One big TRK file on a 2-worker cluster over a simulated WAN: split into partitions, or read as one stream?

Run from the repository root (after ``pip install -e .[test]``)::

    python benchmarks/bench_trk_split.py [--size-mb 1024] [--repeat 3]

One TRK file of random walks (``--size-mb``) on a local S3 server (s3rver) behind ``WanProxy``
(50 ms first byte, 40 MiB/s per connection). Each run gets a fresh ``LocalCluster(n_workers=2,
threads_per_worker=1)`` with both plugins; the same compute as ``bench_cluster.py`` runs per
partition (resample to 20 points, arc lengths, a density histogram), folded in order and checked
the same across methods (see ``same``):

* one partition (``npartitions=1``): what every TRK file got before it could be split;
* split by default (one partition per started 256 MiB);
* split 8 ways.

Also reported: the graph build (the cuts' windows are read then), the windows' bytes (what
finding the cuts costs) and the bytes the workers fetched beyond the file's size.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import statistics
import sys
import time

import numpy as np
import s3fs

from dask_prefetch import read_tractogram
from dask_prefetch.tractography import splitting
from dask_prefetch.testing import WanProxy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cluster import compute, engine_totals, fresh_cluster, merge
from bench_parsers import random_walks, trk_bytes
from bench_prefetch import write_json
from bench_tractogram import MB, MiB, machine
from s3rver import S3rverServer

BUCKET = "bench"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size-mb", type=float, default=1024, help="TRK file size, MB")
    p.add_argument("--latency", type=float, default=0.05, help="first-byte latency, seconds")
    p.add_argument("--bandwidth-mib", type=float, default=40, help="per-connection MiB/s")
    p.add_argument("--repeat", type=int, default=3, help="runs per method; the median is reported")
    p.add_argument("--storage", default="/dev/shm" if os.path.isdir("/dev/shm") else "/tmp")
    p.add_argument("--storage-mib", type=float, default=512, help="prefetch budget per worker")
    p.add_argument("--json", default="benchmarks/results/bench_trk_split.json")
    return p.parse_args(argv)


def run(client, options: dict, key: str, npartitions: int | None) -> tuple[float, float, int, tuple]:
    """(graph build s, compute s, partitions, result) of one read of ``key``."""
    t0 = time.perf_counter()
    tg = read_tractogram(f"s3://{key}", storage_options=options, npartitions=npartitions)
    t1 = time.perf_counter()
    result = tg.map_chunks(functools.partial(compute, scale=1)).fold(merge).compute(scheduler=client)
    return t1 - t0, time.perf_counter() - t1, tg.npartitions, result


def same(result: tuple, truth: tuple) -> bool:
    """The same computed figures, to rounding: each arc length is a difference of a cumulative sum over its
    partition's points, so its last bits (and a resampled point's side of a histogram edge) follow where the
    partition starts. The streamlines themselves are checked exactly by ``fingerprint``."""
    arc, hist = result
    return len(arc) == len(truth[0]) and np.allclose(arc, truth[0], rtol=1e-6) and np.allclose(hist, truth[1], atol=2)


def _chunk_sum(chunk) -> int:
    return int(chunk.points.view(np.uint32).astype(np.uint64).sum())


def fingerprint(client, options: dict, key: str, npartitions: int | None) -> tuple:
    """Exactly what was read: every streamline's point count, in order, and the integer sum of the points' bits."""
    tg = read_tractogram(f"s3://{key}", storage_options=options, npartitions=npartitions)
    counts = tg.n_points.compute(scheduler=client)
    return counts.tobytes(), sum(tg.map_chunks(_chunk_sum).compute(scheduler=client))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("distributed", "distributed.core", "distributed.scheduler", "distributed.worker", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import dask_prefetch

    began, load_start = time.perf_counter(), os.getloadavg()
    data = trk_bytes(random_walks(7, args.size_mb * MB))
    methods = {"one partition": 1, "split (default: 256 MiB each)": None, "split 8 ways": 8}
    times: dict[str, list[float]] = {m: [] for m in methods}
    builds: dict[str, list[float]] = {m: [] for m in methods}
    extra: dict[str, list[float]] = {m: [] for m in methods}
    parts: dict[str, int] = {}
    prints: dict[str, tuple] = {}
    storage = [(args.storage, args.storage_mib)]
    with S3rverServer() as server, WanProxy(server.endpoint_url, args.latency, args.bandwidth_mib * MiB) as proxy:
        direct = server.storage_options()
        wan = {**direct, "endpoint_url": proxy.endpoint_url}
        raw = s3fs.S3FileSystem(**direct, skip_instance_cache=True)
        raw.mkdir(BUCKET)
        key = f"{BUCKET}/big.trk"
        raw.pipe(key, data)
        print(f"one TRK file of {len(data) / MB:.0f} MB ({len(data) / MiB:.0f} MiB); WAN {args.latency * 1000:g} ms, "
              f"{args.bandwidth_mib:g} MiB/s per connection; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}",
              flush=True)
        truth = None
        for r in range(args.repeat):
            for name, k in methods.items():  # interleaved
                plugins = [dask_prefetch.PrefetchSchedulerPlugin(), dask_prefetch.PrefetchWorkerPlugin(prefetch_storage=storage)]
                with fresh_cluster(plugins, wan) as client:
                    before = engine_totals(client)
                    build, elapsed, n, result = run(client, wan, key, k)
                    after = engine_totals(client)
                    if r == 0:  # untimed: the very same streamlines, whatever the partitions
                        prints[name] = fingerprint(client, wan, key, k)
                times[name].append(build + elapsed)
                builds[name].append(build)
                extra[name].append((after["bytes_fetched"] - before["bytes_fetched"]) / len(data) - 1)
                parts[name] = n
                if truth is None:
                    truth = result
                elif not same(result, truth) or prints[name] != prints["one partition"]:
                    raise AssertionError(f"{name}: result differs from the one-partition read")
            print(f"run {r + 1}/{args.repeat} done (results identical)", flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    base = med["one partition"]
    print(f"\n{'method':<32} {'parts':>5} {'median s':>9} {'build s':>8} {'speed-up':>8} {'extra fetched':>13}")
    for name in methods:
        print(f"{name:<32} {parts[name]:>5} {med[name]:>9.2f} {statistics.median(builds[name]):>8.2f} "
              f"{base / med[name]:>7.2f}x {100 * statistics.median(extra[name]):>12.1f}%")
    window = splitting.WINDOW_BYTES
    print(f"finding each cut reads one {window // 1024} KiB window at graph build (larger only where no record "
          f"starts in it): {window / len(data) * 100:.3f} % of the file per cut")
    report = {"times": times, "medians": med, "builds": builds, "extra_fetched_fraction": extra, "partitions": parts,
              "window_bytes": window, "bytes": len(data), "settings": vars(args), "machine": machine(),
              "load_average": {"start": load_start, "end": os.getloadavg()}, "wall_seconds": time.perf_counter() - began}
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
