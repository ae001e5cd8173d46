"""Streamline compute on a 2-worker cluster over a simulated WAN: does prefetch hide the I/O?

Run from the repository root (after ``pip install -e .[test]``)::

    python benchmarks/bench_cluster.py                 # 12 shards x ~24 MB, 50 ms, 40 MiB/s, 3 runs
    python benchmarks/bench_cluster.py --repeat 5 --compute-scale 2 --server moto

Data and WAN as in ``bench_tractogram.py``: a lone 1000-byte TRK header (``n_count`` 0) + N shards,
each a complete nibabel-written TRK file, on a local S3 server (s3rver; moto with --server moto)
behind ``dask_prefetch.testing.WanProxy`` (first-byte latency, per-connection bandwidth cap).

Every method runs the same per-partition compute: resample each streamline to 20 equidistant
points along its arc length (numpy, vectorised over the chunk's flat points + lengths; repeated
``--compute-scale`` times) and return the streamlines' arc lengths and a 32^3 density histogram of
the resampled points; partitions are merged (arc lengths concatenated in order, histograms summed)
and checked against the same compute over the shards parsed in memory. Each method gets a fresh
``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` (start-up not timed, kept for
its repeats; methods interleave within each run):

(a) nibabel over plain s3fs: one ``client.submit`` per shard that opens it with
    ``s3fs.S3FileSystem(...).open(key, "rb")`` (default cache) and ``TrkFile.load(f, lazy_load=False)``.
(b) ``read_tractogram(paths, storage_options=..., prefetch_storage=[(storage, MiB)]).map_chunks(f)``
    folded with the bag: each task's file prefetches only once the task starts.
(c) as (b) without ``prefetch_storage``, on a cluster with ``PrefetchSchedulerPlugin`` and
    ``PrefetchWorkerPlugin(prefetch_storage=...)`` registered: shared per-worker tiers, and
    prefetching that can start before a task does.

References in the same runs: compute only (the compute over every partition's chunk in memory, one
thread: ``compute_total``) and transfer only (every 8 MiB range over the WAN, ``concurrency`` GETs in
flight: bench_prefetch's "download everything first"). Ideal = max(compute_total / 2 workers,
transfer). Workers' ``dask_prefetch.engine.process_stats()`` are read before and after each run; the
deltas give the mean task-start stall per opened file (time readers waited for a file's first byte).
Each run also records the CPU seconds of this process tree (psutil: us, S3 server, WAN proxy,
workers) and of the whole machine ("other" = load from outside the benchmark, which skews
figures). Server, proxy and client share the cores with the compute, so "floor" = (compute_total
+ the transfer's CPU seconds) / cores bounds any method from below here, whatever the overlap.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import dask
import numpy as np
import psutil
import s3fs
from nibabel.streamlines import TrkFile

import dask_prefetch
from dask_prefetch import read_tractogram
from dask_prefetch.streamlines.chunk import StreamlineChunk
from dask_prefetch.streamlines.trk import TrkReader
from dask_prefetch.testing import LocalS3Server, WanProxy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_prefetch import download_everything_first, timed, write_json
from bench_tractogram import HEADER, MB, MiB, machine, upload
from s3rver import S3rverServer

N_RESAMPLED, BINS, EXTENT = 20, 32, 128.0  # points per resampled streamline; histogram grid over +-EXTENT mm
A, B, C = "(a) nibabel + s3fs, task per shard", "(b) read_tractogram, per-task prefetch", "(c) + scheduler/worker plugins"
COMPUTE, TRANSFER = "ref: compute only (1 thread)", "ref: transfer only (WAN)"
IDEAL_TARGET, STALL_TARGET = 1.2, 0.2
Result = tuple[np.ndarray, np.ndarray]  # (arc length per streamline, float64; density histogram, int64)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shards", type=int, default=12)
    p.add_argument("--shard-mb", type=float, default=24, help="approximate TRK bytes per shard, MB")
    p.add_argument("--latency", type=float, default=0.05, help="first-byte latency, seconds")
    p.add_argument("--bandwidth-mib", type=float, default=40, help="per-connection MiB/s")
    p.add_argument("--compute-scale", type=int, default=2,
                   help="repeat the per-partition compute k times (2: compute / 2 workers ~ transfer here)")
    p.add_argument("--repeat", type=int, default=3, help="runs per method; the median is reported")
    p.add_argument("--storage", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    p.add_argument("--storage-mib", type=float, default=1024, help="prefetch budget (per file in (b), per worker in (c))")
    p.add_argument("--server", choices=["s3rver", "moto"], default="s3rver")
    p.add_argument("--json", default="benchmarks/results/bench_cluster.json")
    return p.parse_args(argv)


# -- the compute: the same function in every method -----------------------------------------


def resample(points: np.ndarray, lengths: np.ndarray, n: int = N_RESAMPLED) -> tuple[np.ndarray, np.ndarray]:
    """Arc length of each streamline, and each resampled to ``n`` points equidistant along it ((k*n, 3) float64)."""
    pts = points.astype(np.float64)
    starts = np.zeros(len(lengths), np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    ends = starts + lengths - 1
    seg = np.sqrt(((pts[1:] - pts[:-1]) ** 2).sum(axis=1))
    seg[starts[1:] - 1] = 0.0  # no segment joins consecutive streamlines
    s = np.concatenate([[0.0], np.cumsum(seg)])  # arc length from the chunk's first point, non-decreasing
    arc = s[ends] - s[starts]
    target = (s[starts][:, None] + arc[:, None] * np.linspace(0.0, 1.0, n)).ravel()
    lo, hi = np.repeat(starts, n), np.repeat(np.maximum(ends - 1, starts), n)
    i = np.clip(np.searchsorted(s, target, side="right") - 1, lo, hi)  # the segment holding each target
    j = np.minimum(i + 1, np.repeat(ends, n))
    span = s[j] - s[i]
    w = np.divide(target - s[i], span, out=np.zeros_like(span), where=span > 0)
    return arc, pts[i] + w[:, None] * (pts[j] - pts[i])


def compute(chunk: StreamlineChunk, scale: int = 1) -> Result:
    """One partition's work: arc lengths + density of resampled points (``scale`` times, same result)."""
    for _ in range(scale):
        arc, resampled = resample(chunk.points, chunk.lengths)
        hist, _ = np.histogramdd(resampled, bins=BINS, range=[(-EXTENT, EXTENT)] * 3)
    return arc, hist.astype(np.int64)


def merge(x: Result, y: Result) -> Result:
    return np.concatenate([x[0], y[0]]), x[1] + y[1]


def check(name: str, got: Result, truth: Result) -> None:
    if not (np.array_equal(got[0], truth[0]) and np.array_equal(got[1], truth[1])):
        raise AssertionError(f"{name}: result differs from the in-memory truth ({len(got[0])} vs {len(truth[0])} streamlines)")


# -- the methods: each returns the merged Result --------------------------------------------


def nibabel_shard(key: str, options: dict, scale: int) -> Result:
    with s3fs.S3FileSystem(**options).open(key, "rb") as f:
        streamlines = TrkFile.load(f, lazy_load=False).streamlines
    return compute(StreamlineChunk(streamlines.get_data(), np.asarray(streamlines._lengths, np.int64)), scale)


def nibabel_tasks(client: Any, options: dict, args: argparse.Namespace) -> Callable[[list[str]], Result]:
    def run(keys: list[str]) -> Result:
        futures = [client.submit(nibabel_shard, k, options, args.compute_scale, pure=False) for k in keys[1:]]
        return functools.reduce(merge, client.gather(futures))

    return run


def tractogram_tasks(client: Any, options: dict, args: argparse.Namespace, storage: list | None) -> Callable[[list[str]], Result]:
    def run(keys: list[str]) -> Result:
        tg = read_tractogram([f"s3://{k}" for k in keys], storage_options=options, prefetch_storage=storage)
        bag = tg.map_chunks(functools.partial(compute, scale=args.compute_scale))
        return bag.fold(merge).compute(scheduler=client)

    return run


def compute_only(chunks: list[StreamlineChunk], scale: int) -> Callable[[list[str]], Result]:
    return lambda keys: functools.reduce(merge, [compute(c, scale) for c in chunks])


def transfer_only(download: Callable, logical: int, truth: Result) -> Callable[[list[str]], Result]:
    def run(keys: list[str]) -> Result:
        timed(download, keys, logical, 0)  # raises unless every byte of the stream arrived
        return truth

    return run


# -- cluster plumbing -----------------------------------------------------------------------


def engine_totals() -> dict:
    """Runs on a worker: its process-wide prefetch counters (``{}`` until process_stats exists)."""
    import dask_prefetch.engine

    stats = getattr(dask_prefetch.engine, "process_stats", None)
    return dataclasses.asdict(stats()) if stats else {}


def summed(client: Any) -> dict[str, float]:
    """Counters summed over the workers (peaks too: only deltas of totals are used)."""
    totals: dict[str, float] = {}
    for stats in client.run(engine_totals).values():
        for key, value in stats.items():
            totals[key] = totals.get(key, 0) + value
    return totals


def warm_up() -> None:
    """Runs on a worker: import what the tasks use (start-up, not the methods' time)."""
    import nibabel.streamlines  # noqa: F401
    import s3fs  # noqa: F401

    import dask_prefetch.tractogram  # noqa: F401


def start_cluster(plugins: list) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.ERROR)
    client = Client(cluster, set_as_default=False)
    for plugin in plugins:
        client.register_plugin(plugin)
    client.run(warm_up)
    return cluster, client


def cpu_seconds() -> np.ndarray:
    """CPU seconds used so far by this process tree, and by the whole machine (not idle)."""
    ours = 0.0
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            ours += sum(proc.cpu_times()[:2])
        except psutil.Error:
            pass  # ended meanwhile
    t = psutil.cpu_times()
    return np.array([ours, sum(t) - t.idle - getattr(t, "iowait", 0.0)])


# -- harness --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("distributed", "distributed.core", "distributed.scheduler", "distributed.worker", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.ERROR)
    began, load_start = time.perf_counter(), os.getloadavg()
    storage = [(args.storage, args.storage_mib)]
    has_stats = hasattr(dask_prefetch.engine, "process_stats")
    setups: dict[str, list] = {A: [], B: []}
    if hasattr(dask_prefetch, "PrefetchSchedulerPlugin"):
        setups[C] = [dask_prefetch.PrefetchSchedulerPlugin(), dask_prefetch.PrefetchWorkerPlugin(prefetch_storage=storage)]
    else:
        print(f"dask_prefetch.PrefetchSchedulerPlugin is missing: {C} skipped")
    server = S3rverServer() if args.server == "s3rver" else LocalS3Server()
    clusters: dict[str, tuple[Any, Any]] = {}
    with server, WanProxy(server.endpoint_url, args.latency, args.bandwidth_mib * MiB) as proxy:
        direct = server.storage_options()
        wan = {**direct, "endpoint_url": proxy.endpoint_url}
        keys, shards, written = upload(s3fs.S3FileSystem(**direct, skip_instance_cache=True), args)
        sizes = [HEADER] + [len(s) for s in shards]
        logical = HEADER + sum(n - HEADER for n in sizes[1:])
        chunks = [StreamlineChunk.concat(list(TrkReader(io.BytesIO(s), f"shard {i}"))) for i, s in enumerate(shards)]
        truth = compute_only(chunks, 1)(keys)
        assert np.array_equal(np.concatenate([c.lengths for c in chunks]), written) and len(truth[0]) == len(written)
        print(f"{args.shards} TRK shards, {sum(sizes) / MB:.0f} MB, {len(written)} streamlines, {written.sum()} points "
              f"(ready in {time.perf_counter() - began:.0f} s); WAN: {args.latency * 1000:g} ms first byte, "
              f"{args.bandwidth_mib:g} MiB/s per connection; compute scale {args.compute_scale}; {os.cpu_count()} CPUs; "
              f"load average {os.getloadavg()[0]:.2f}")
        try:
            for name, plugins in setups.items():
                clusters[name] = start_cluster(plugins)
            clients = {name: client for name, (_, client) in clusters.items()}
            methods: dict[str, Callable[[list[str]], Result]] = {
                A: nibabel_tasks(clients[A], wan, args),
                B: tractogram_tasks(clients[B], wan, args, storage),
                **({C: tractogram_tasks(clients[C], wan, args, None)} if C in clients else {}),
                COMPUTE: compute_only(chunks, args.compute_scale),
                TRANSFER: transfer_only(download_everything_first(wan, in_flight=int(dask.config.get(
                    "dask-prefetch.concurrency"))), logical, truth),
            }
            times: dict[str, list[float]] = {name: [] for name in methods}
            cpu: dict[str, list[list[float]]] = {name: [] for name in methods}  # [ours, machine] per run
            stats: dict[str, list[dict[str, float]]] = {}
            print(f"clusters up after {time.perf_counter() - began:.0f} s", flush=True)
            for run in range(args.repeat):
                for name, fn in methods.items():  # interleaved, so drifts in the machine's load hit every method
                    before = summed(clients[name]) if has_stats and name in (B, C) else None
                    c0, t0 = cpu_seconds(), time.perf_counter()
                    result = fn(keys)
                    times[name].append(time.perf_counter() - t0)
                    cpu[name].append((cpu_seconds() - c0).tolist())
                    check(name, result, truth)
                    if before is not None:
                        after = summed(clients[name])
                        stats.setdefault(name, []).append({k: after[k] - before.get(k, 0) for k in after})
                print(f"run {run + 1}/{args.repeat} done (results identical to the truth)", flush=True)
        finally:
            for cluster, client in clusters.values():
                client.close()
                cluster.close()

    report = summarise(args, sum(sizes), times, cpu, stats)
    report.update(machine=machine(), streamlines=len(written), points=int(written.sum()), shard_bytes=sizes[1:],
                  load_average={"start": load_start, "end": os.getloadavg()}, wall_seconds=time.perf_counter() - began)
    write_json(args.json, report)
    print(f"total wall time {time.perf_counter() - began:.0f} s")
    return report


def stall_per_file(runs: list[dict[str, float]]) -> float:
    """Median over runs of the mean task-start stall per opened file, seconds."""
    per_run = [r.get("start_stall_seconds", 0.0) / r["files_opened"] for r in runs if r.get("files_opened")]
    return statistics.median(per_run) if per_run else float("nan")


def summarise(args: argparse.Namespace, total: int, times: dict[str, list[float]], cpu: dict[str, list[list[float]]],
              stats: dict[str, list[dict]]) -> dict:
    medians = {k: statistics.median(v) for k, v in times.items()}
    cpus = {k: statistics.median(c[0] for c in v) for k, v in cpu.items()}
    other = {k: statistics.median((c[1] - c[0]) / t for c, t in zip(v, times[k])) for k, v in cpu.items()}
    cores = os.cpu_count() or 1
    ideal = max(medians[COMPUTE] / 2, medians[TRANSFER])
    floor = (medians[COMPUTE] + cpus[TRANSFER]) / cores
    ref_name, ref = ("(c)", medians[C]) if C in medians else ("(b)", medians[B])
    print(f"\n{'method':<42} {'median s':>9} {'best s':>7} {'MiB/s':>6} {'CPU s':>6} {'cores':>5} {'other':>5} "
          f"{'vs ' + ref_name:>7}")
    for name, t in sorted(medians.items(), key=lambda kv: kv[1]):
        print(f"{name:<42} {t:>9.2f} {min(times[name]):>7.2f} {total / MiB / t:>6.0f} {cpus[name]:>6.2f} "
              f"{cpus[name] / t:>5.2f} {other[name]:>5.2f} {t / ref:>6.2f}x")
    print(f"{'ideal = max(compute / 2 workers, transfer)':<42} {ideal:>9.2f}\n"
          f"{'floor = (compute + transfer CPU) / cores':<42} {floor:>9.2f}")
    checks: dict[str, float] = {}
    print("\ntargets")
    ratios = "; ".join(f"{n[:3]} / ideal = {medians[n] / ideal:.2f}, / floor = {medians[n] / floor:.2f}"
                       for n in (C, B, A) if n in medians)
    if C in medians:
        checks[f"(c) <= {IDEAL_TARGET:g}x ideal"] = medians[C] / ideal
    print(f"  {'info' if C not in medians else 'PASS' if medians[C] / ideal <= IDEAL_TARGET else 'MISS'}  {ratios} "
          f"(target (c) / ideal <= {IDEAL_TARGET:g})")
    stalls = {name: stall_per_file(runs) for name, runs in stats.items()}
    for name, runs in stats.items():
        med = {k: statistics.median(r.get(k, 0) for r in runs) for k in ("bytes_fetched", "requests", "files_opened", "stall_seconds")}
        print(f"  info  {name[:3]} per run: {med['bytes_fetched'] / total:.2f}x the bytes fetched, {med['requests']:.0f} "
              f"GETs, {med['files_opened']:.0f} files opened, read stalls {med['stall_seconds']:.2f} s in all, "
              f"task-start stall {1000 * stalls[name]:.0f} ms per file")
    if B in stalls and C in stalls:
        ratio = stalls[C] / stalls[B] if stalls[B] else float("nan")
        checks[f"task-start stall (c)/(b) <= {STALL_TARGET:g}"] = ratio
        print(f"  {'PASS' if ratio <= STALL_TARGET else 'MISS'}  task-start stall per file (c) / (b) = {ratio:.2f} "
              f"(<= {STALL_TARGET:g}): {1000 * stalls[C]:.0f} vs {1000 * stalls[B]:.0f} ms")
    elif not stats:
        print("  info  dask_prefetch.engine.process_stats is missing: no stall figures")
    if max(other.values()) > 0.2:
        print(f"  WARN  up to {max(other.values()):.1f} cores busy outside the benchmark during some methods: re-run")
    return {"settings": vars(args), "bytes": total, "times": times, "medians": medians, "cpu_seconds_ours_machine": cpu,
            "ideal_seconds": ideal, "floor_seconds": floor, "engine_stat_deltas": stats,
            "task_start_stall_per_file": stalls, "targets": checks,
            "target_limits": {k: IDEAL_TARGET if "ideal" in k else STALL_TARGET for k in checks}}


if __name__ == "__main__":
    main()
