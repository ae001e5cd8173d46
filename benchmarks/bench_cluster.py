"""Streamline compute on a 2-worker cluster over a simulated WAN: does prefetch hide the I/O?

Run from the repository root (after ``pip install -e .[test]``)::

    python benchmarks/bench_cluster.py [--repeat 3]    # 24 shards x ~12 MB, 50 ms, 40 MiB/s
    python benchmarks/bench_cluster.py --compute-scale 1 --server moto --skip a
    python benchmarks/bench_cluster.py --shards 16 --shard-mb 8.2 --sleep-s-per-mib 0.03 --skip a  # GIL-free (issue 15)

Data and WAN as in ``bench_tractogram.py``: a lone 1000-byte TRK header (``n_count`` 0) + N complete
TRK shards on a local S3 server (s3rver, or moto) behind ``WanProxy``. The same compute runs per
partition everywhere: resample each streamline to 20 points equidistant along its arc length
(numpy, vectorised over the chunk's flat points + lengths; ``--compute-scale`` times) and return the
arc lengths and a 32^3 density histogram of the resampled points, merged in order and checked
against the same compute on the shards parsed in memory. Every run of a method gets a fresh
``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` (start-up, imports and the
workers' S3 clients not timed; closed after, as an idle cluster costs ~0.1 core); methods interleave.

(a) nibabel over plain s3fs: a ``client.submit`` per shard: ``s3fs.S3FileSystem(...).open(key)``
    (default cache), ``TrkFile.load(f, lazy_load=False)``.
(b) ``read_tractogram(..., prefetch_storage=[(storage, MiB)]).map_chunks(f)``, folded with the bag:
    each task's file starts prefetching when the task starts.
(c) as (b) without ``prefetch_storage``, with ``PrefetchSchedulerPlugin`` and ``PrefetchWorkerPlugin``
    registered (``store=`` the bucket: each worker opens its connections at setup): workers open their next
    partitions while the current one computes.
(d) as (c), streamed: ``map_chunks(f, per="chunk")`` runs the compute on each 2 MiB chunk of records as
    it is parsed, while the rest of the partition arrives (arc lengths joined, histograms summed:
    checked against the same compute on the same chunks in memory).

The task stream of every cluster run (``distributed.get_task_stream``) gives each worker's timeline:
when its first task starts after the job is submitted, how long that first task takes against the
later ones (the median), and the idle gaps between its tasks (their sum and the largest).

References: compute only (chunks in memory, one thread = ``compute_total``; and on a cluster with the
chunks scattered first, where allocation costs more: distributed spawns workers with
``MALLOC_TRIM_THRESHOLD_``, which ``--mmap-threshold-mib 32`` offsets) and transfer only
(bench_prefetch's "download everything first").
Ideal = max(compute_total / 2, transfer); cluster ideal = max(cluster compute, transfer); floor =
(CPU seconds of both) / cores, as S3 server, proxy and client share the cores with the compute.
The workers' ``process_stats()`` before and after each run give the mean task-start stall per opened
file. psutil gives the CPU seconds of this process tree and of the machine ("other": outside load).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import dask
import numpy as np
import psutil
import s3fs
from nibabel.streamlines import TrkFile

import dask_prefetch
from dask_prefetch import read_tractogram
from dask_prefetch.config import get_concurrency
from dask_prefetch.formats.chunk import StreamlineChunk
from dask_prefetch.formats.trk import TrkReader
from dask_prefetch.testing import LocalS3Server, WanProxy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_prefetch import download_everything_first, timed, write_json
from bench_tractogram import BUCKET, HEADER, MB, MiB, machine, upload
from s3rver import S3rverServer

N_RESAMPLED, BINS, EXTENT = 20, 32, 128.0  # points per resampled streamline; histogram grid over +-EXTENT mm
A, B, C = "(a) nibabel + s3fs, task per shard", "(b) read_tractogram, per-task prefetch", "(c) + scheduler/worker plugins"
D = "(d) (c) streamed: map_chunks per chunk"
COMPUTE, TRANSFER = "ref: compute only (1 thread)", "ref: transfer only (WAN)"
ON_CLUSTER = "ref: compute only (cluster, in memory)"
IDEAL_TARGET, STALL_TARGET = 1.15, 0.2  # issue 15: <= 1.15x the ideal
Result = tuple[np.ndarray, np.ndarray]  # (arc length per streamline, float64; density histogram, int64)
Method = Callable[[list[str]], Result]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shards", type=int, default=24, help="12 per worker: real tractograms have hundreds")
    p.add_argument("--shard-mb", type=float, default=12, help="approximate TRK bytes per shard, MB")
    p.add_argument("--latency", type=float, default=0.05, help="first-byte latency, seconds")
    p.add_argument("--bandwidth-mib", type=float, default=40, help="per-connection MiB/s")
    p.add_argument("--compute-scale", type=int, default=2,
                   help="repeat the per-partition compute k times (2: compute / 2 workers ~ transfer here)")
    p.add_argument("--sleep-s-per-mib", type=float, default=0.0,
                   help="a compute that releases the GIL instead: sleep this long per MiB of points (0: numpy)")
    p.add_argument("--repeat", type=int, default=3, help="runs per method; the median is reported")
    p.add_argument("--storage", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    p.add_argument("--storage-mib", type=float, default=1024, help="prefetch budget (per file in (b), per worker in (c))")
    p.add_argument("--server", choices=["s3rver", "moto"], default="s3rver")
    p.add_argument("--skip", default="", help="comma-separated methods to leave out: a, b, c, d")
    p.add_argument("--mmap-threshold-mib", type=float, default=None,
                   help="start the workers with MALLOC_MMAP_THRESHOLD_ set (distributed's MALLOC_TRIM_THRESHOLD_ "
                        "otherwise makes every numpy temporary >= 128 KiB a fresh mapping)")
    p.add_argument("--json", default="benchmarks/results/bench_cluster.json")
    args = p.parse_args(argv)
    if args.compute_scale < 1:
        p.error("--compute-scale must be >= 1")
    if not args.sleep_s_per_mib >= 0:
        p.error("--sleep-s-per-mib must be >= 0")
    return args


def resample(points: np.ndarray, lengths: np.ndarray, n: int = N_RESAMPLED) -> tuple[np.ndarray, np.ndarray]:
    """Each streamline's arc length, and its ``n`` points equidistant along it (``(k*n, 3)`` float64)."""
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


def compute(chunk: StreamlineChunk, scale: int = 1, sleep_s_per_mib: float = 0.0) -> Result:
    """One partition's work: arc lengths + density of resampled points (``scale`` times, same result).

    With ``sleep_s_per_mib``, a compute that releases the GIL (as numpy's larger kernels and C
    parsers do) instead: it sleeps that long per MiB of the chunk's points and returns each
    streamline's first x coordinate (float64) and an empty histogram, so the bytes are still checked.
    """
    if sleep_s_per_mib:
        time.sleep(sleep_s_per_mib * chunk.points.nbytes / MiB)
        return first_x(chunk)
    for _ in range(scale):
        arc, resampled = resample(chunk.points, chunk.lengths)
        hist, _ = np.histogramdd(resampled, bins=BINS, range=[(-EXTENT, EXTENT)] * 3)
    return arc, hist.astype(np.int64)


def first_x(chunk: StreamlineChunk) -> Result:
    """The sleeping compute's result: each streamline's first x coordinate (float64), an empty histogram."""
    return chunk.points[chunk.offsets, 0].astype(np.float64), np.zeros((BINS,) * 3, np.int64)


def merge(x: Result, y: Result) -> Result:
    return np.concatenate([x[0], y[0]]), x[1] + y[1]


def nibabel_shard(key: str, options: dict, kernel: Callable[[StreamlineChunk], Result]) -> Result:
    """Method (a)'s task: one shard through plain s3fs and nibabel."""
    with s3fs.S3FileSystem(**options).open(key, "rb") as f:
        streamlines = TrkFile.load(f, lazy_load=False).streamlines
    return kernel(StreamlineChunk(streamlines.get_data(), np.asarray(streamlines._lengths, np.int64)))


def submit_each(client: Any, func: Callable, items: list, *args: Any) -> Result:
    """``func(item, *args)`` as one task per item, the results merged in order."""
    return functools.reduce(merge, client.gather([client.submit(func, x, *args, pure=False) for x in items]))


def with_tractogram(
    client: Any, options: dict, kernel: Callable[[StreamlineChunk], Result], storage: list | None, keys: list[str],
    per: str = "partition",
) -> Result:
    """Methods (b), (c) and (d): read_tractogram, the compute per partition (or per chunk), folded with the bag."""
    tg = read_tractogram([f"s3://{k}" for k in keys], storage_options=options, prefetch_storage=storage)
    return tg.map_chunks(kernel, per=per).fold(merge).compute(scheduler=client)


def timeline(tasks: list[dict], submitted: float) -> list[dict[str, float]]:
    """Per worker (by when it started working): first-task start after ``submitted``, first-task duration,
    the later tasks' median duration, the idle gaps between tasks (sum, largest), from a task stream."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for t in tasks:
        for ss in t.get("startstops", ()):
            if ss["action"] == "compute":
                spans.setdefault(t["worker"], []).append((ss["start"], ss["stop"]))
    out = []
    for runs in sorted((sorted(v) for v in spans.values()), key=lambda v: v[0][0]):
        long = [r for r in runs if r[1] - r[0] > 0.01]  # the partitions' tasks, not the folds' merges
        first = long[0] if long else runs[0]
        gaps = [max(0.0, b[0] - a[1]) for a, b in zip(runs, runs[1:])]
        later = [r[1] - r[0] for r in long[1:]]
        out.append({"first_start": first[0] - submitted, "first_seconds": first[1] - first[0],
                    "later_median_seconds": statistics.median(later) if later else float("nan"),
                    "tasks": len(long), "gaps_sum": sum(gaps), "gap_max": max(gaps, default=0.0)})
    return out


def compute_only(chunks: list[StreamlineChunk], kernel: Callable[[StreamlineChunk], Result]) -> Method:
    return lambda keys: functools.reduce(merge, [kernel(c) for c in chunks])


def compute_on_cluster(
    client: Any, chunks: list[StreamlineChunk], kernel: Callable[[StreamlineChunk], Result]
) -> Method:
    held = client.scatter(chunks)  # before the clock starts, spread over the workers
    return lambda keys: submit_each(client, kernel, held)


def transfer_only(download: Callable, logical: int, truth: Result) -> Method:
    return lambda keys: (timed(download, keys, logical, 0), truth)[1]  # timed raises unless every byte arrived


def engine_totals(client: Any) -> dict[str, float]:
    """The workers' ``process_stats()`` summed (peaks too: only deltas of totals are used)."""

    def on_worker() -> dict:
        return dataclasses.asdict(dask_prefetch.process_stats())

    per_worker = list(client.run(on_worker).values())
    return {key: sum(stats[key] for stats in per_worker) for key in per_worker[0]}


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


def warm_up(options: dict) -> None:
    """On a worker: imports, the TRK kernels (numba) and the S3 clients (botocore's models) tasks will
    reuse: start-up, not timed."""
    import nibabel.streamlines  # noqa: F401

    from dask_prefetch.formats.kernels import compiled

    compiled()

    for fs in (s3fs.S3FileSystem(**options), dask_prefetch.S3PrefetchFileSystem(**options)):
        fs.ls(BUCKET)
        fs.invalidate_cache()  # tasks must look their objects up themselves


@contextlib.contextmanager
def task_stream(client: Any) -> Iterator[Any]:
    """``distributed.get_task_stream`` on ``client`` (None: nothing recorded, None)."""
    if client is None:
        yield None
        return
    from distributed import get_task_stream

    with get_task_stream(client=client) as stream:
        yield stream


def print_timelines(timelines: dict[str, list[list[dict[str, float]]]]) -> None:
    """Each method's per-worker timeline, medians over the runs (workers ranked by when they started)."""
    print(f"\n{'timeline (median of runs)':<42} {'worker':>6} {'1st start s':>11} {'1st task s':>10} "
          f"{'later tasks s':>13} {'gaps s':>7} {'max gap s':>9}")
    for name, runs in sorted(timelines.items()):
        for w in range(max(len(r) for r in runs)):
            rows = [r[w] for r in runs if len(r) > w]
            med = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
            print(f"{name:<42} {w + 1:>6} {med['first_start']:>11.3f} {med['first_seconds']:>10.3f} "
                  f"{med['later_median_seconds']:>13.3f} {med['gaps_sum']:>7.3f} {med['gap_max']:>9.3f}")


@contextlib.contextmanager
def fresh_cluster(plugins: list | None, options: dict) -> Iterator[Any]:
    """A client of a new 2-worker cluster with ``plugins`` registered (None: no cluster, None)."""
    if plugins is None:
        yield None
        return
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster, set_as_default=False) as client:
        for plugin in plugins:
            client.register_plugin(plugin)
        client.run(warm_up, options)
        yield client


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("distributed", "distributed.core", "distributed.scheduler", "distributed.worker", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.ERROR)
    began, load_start = time.perf_counter(), os.getloadavg()
    if args.mmap_threshold_mib is not None:
        environ = "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_"
        dask.config.set({environ: int(args.mmap_threshold_mib * MiB)})
    storage = [(args.storage, args.storage_mib)]
    has_stats = hasattr(dask_prefetch, "process_stats")
    if not has_stats:
        print("dask_prefetch.process_stats is missing: no stall figures")
    plugins: dict[str, Callable[[], list]] = {A: list, B: list, ON_CLUSTER: list}
    if hasattr(dask_prefetch, "PrefetchSchedulerPlugin"):
        plugins[C] = plugins[D] = lambda: [  # the workers' connections to the store opened at setup
            dask_prefetch.PrefetchSchedulerPlugin(),
            dask_prefetch.PrefetchWorkerPlugin(prefetch_storage=storage, store=f"s3://{BUCKET}", storage_options=wan),
        ]
    else:
        print(f"dask_prefetch.PrefetchSchedulerPlugin is missing: {C} skipped")
    server = S3rverServer() if args.server == "s3rver" else LocalS3Server()
    with server, WanProxy(server.endpoint_url, args.latency, args.bandwidth_mib * MiB) as proxy:
        direct = server.storage_options()
        wan = {**direct, "endpoint_url": proxy.endpoint_url}
        keys, shards, written = upload(s3fs.S3FileSystem(**direct, skip_instance_cache=True), args)
        sizes = [HEADER] + [len(s) for s in shards]
        logical = HEADER + sum(n - HEADER for n in sizes[1:])  # the stream read_tractogram parses
        pieces = [list(TrkReader(io.BytesIO(s), f"shard {i}")) for i, s in enumerate(shards)]  # (d)'s chunks
        chunks = [StreamlineChunk.concat(p) for p in pieces]
        truth_kernel = first_x if args.sleep_s_per_mib else compute  # the result, without the compute's time
        truth = compute_only(chunks, truth_kernel)(keys)
        streamed_truth = compute_only([c for p in pieces for c in p], truth_kernel)(keys)
        kernel = functools.partial(compute, scale=args.compute_scale, sleep_s_per_mib=args.sleep_s_per_mib)
        assert np.array_equal(np.concatenate([c.lengths for c in chunks]), written) and len(truth[0]) == len(written)
        print(f"{args.shards} TRK shards, {sum(sizes) / MB:.0f} MB, {len(written)} streamlines, {written.sum()} points "
              f"(ready in {time.perf_counter() - began:.0f} s); WAN: {args.latency * 1000:g} ms first byte, "
              f"{args.bandwidth_mib:g} MiB/s per connection; "
              + (f"compute: sleep {args.sleep_s_per_mib:g} s per MiB of points; " if args.sleep_s_per_mib
                 else f"compute scale {args.compute_scale}; ")
              + f"{os.cpu_count()} CPUs; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        in_flight = get_concurrency()[0]  # as many GETs in flight as the engine starts with
        methods: dict[str, Callable[[Any], Method]] = {  # client (None for the references) -> method
            A: lambda client: lambda keys: submit_each(client, nibabel_shard, keys[1:], wan, kernel),
            B: lambda client: functools.partial(with_tractogram, client, wan, kernel, storage),
            C: lambda client: functools.partial(with_tractogram, client, wan, kernel, None),
            D: lambda client: functools.partial(with_tractogram, client, wan, kernel, None, per="chunk"),
            COMPUTE: lambda _: compute_only(chunks, kernel),
            ON_CLUSTER: lambda client: compute_on_cluster(client, chunks, kernel),
            TRANSFER: lambda _: transfer_only(download_everything_first(wan, in_flight), logical, truth),
        }
        skip = {f"({m.strip()})" for m in args.skip.split(",")}
        methods = {k: v for k, v in methods.items() if k.startswith("ref") or (k in plugins and k[:3] not in skip)}
        times: dict[str, list[float]] = {name: [] for name in methods}
        cpu: dict[str, list[list[float]]] = {name: [] for name in methods}  # [ours, machine] per run
        stats: dict[str, list[dict[str, float]]] = {}
        timelines: dict[str, list[list[dict[str, float]]]] = {}
        for run in range(args.repeat):
            for name, make in methods.items():  # interleaved: drifts in the machine's load hit every method
                with fresh_cluster(plugins[name]() if name in plugins else None, wan) as client:
                    before = engine_totals(client) if has_stats and name in (B, C, D) else None
                    fn = make(client)
                    with task_stream(client if name in (A, B, C, D) else None) as stream:
                        c0, t0, submitted = cpu_seconds(), time.perf_counter(), time.time()
                        got = fn(keys)
                        times[name].append(time.perf_counter() - t0)
                    cpu[name].append((cpu_seconds() - c0).tolist())
                    if before is not None:
                        after = engine_totals(client)
                        stats.setdefault(name, []).append({k: after[k] - before.get(k, 0) for k in after})
                if stream is not None:
                    timelines.setdefault(name, []).append(timeline(stream.data, submitted))
                expected = streamed_truth if name == D else truth
                if not (np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])):
                    raise AssertionError(f"{name}: result differs from the in-memory truth")
            print(f"run {run + 1}/{args.repeat} done (results identical to the truth)", flush=True)

    report = summarise(sum(sizes), times, cpu, stats)
    report["timelines"] = timelines
    print_timelines(timelines)
    report.update(settings=vars(args), machine=machine(), streamlines=len(written), points=int(written.sum()),
                  shard_bytes=sizes[1:], load_average={"start": load_start, "end": os.getloadavg()},
                  wall_seconds=time.perf_counter() - began)
    write_json(args.json, report)
    print(f"total wall time {time.perf_counter() - began:.0f} s")
    return report


def summarise(total: int, times: dict[str, list[float]], cpu: dict[str, list[list[float]]], stats: dict) -> dict:
    medians = {k: statistics.median(v) for k, v in times.items()}
    cpus = {k: statistics.median(c[0] for c in v) for k, v in cpu.items()}
    other = {k: statistics.median((c[1] - c[0]) / t for c, t in zip(v, times[k])) for k, v in cpu.items()}
    cores = os.cpu_count() or 1
    bounds = {"ideal": max(medians[COMPUTE] / 2, medians[TRANSFER]), "cluster ideal": max(medians[ON_CLUSTER], medians[TRANSFER]),
              "floor": (cpus[ON_CLUSTER] + cpus[TRANSFER]) / cores}
    ideal, ref_name = bounds["ideal"], next(n for n in (C, D, B, A, COMPUTE) if n in medians)
    print(f"\n{'method':<42} {'median s':>9} {'best s':>7} {'MiB/s':>6} {'CPU s':>6} {'cores':>5} {'other':>5} "
          f"{'vs ' + ref_name[:3]:>7}")
    for name, t in sorted(medians.items(), key=lambda kv: kv[1]):
        print(f"{name:<42} {t:>9.2f} {min(times[name]):>7.2f} {total / MiB / t:>6.0f} {cpus[name]:>6.2f} "
              f"{cpus[name] / t:>5.2f} {other[name]:>5.2f} {t / medians[ref_name]:>6.2f}x")
    print(f"{'ideal = max(compute / 2, transfer)':<42} {ideal:>9.2f}\n"
          f"{'cluster ideal = max(its compute, transfer)':<42} {bounds['cluster ideal']:>9.2f}\n"
          f"{'floor = their CPU seconds / cores':<42} {bounds['floor']:>9.2f}\n\ntargets")
    checks: dict[str, float] = {}
    if C in medians:
        checks[f"(c) <= {IDEAL_TARGET:g}x ideal"] = medians[C] / ideal
    if D in medians:
        checks[f"(d) <= {IDEAL_TARGET:g}x ideal"] = medians[D] / ideal
    ratios = "; ".join(f"{n[:3]} " + ", ".join(f"{medians[n] / v:.2f}" for v in bounds.values())
                       for n in (D, C, B, A) if n in medians)
    verdict = "info" if C not in medians else "PASS" if medians[C] / ideal <= IDEAL_TARGET else "MISS"
    print(f"  {verdict}  / ideal, / cluster ideal, / floor: {ratios} (target (c) / ideal <= {IDEAL_TARGET:g})")
    stalls: dict[str, float] = {}
    for name, runs in stats.items():
        med = {k: statistics.median(r.get(k, 0) for r in runs) for k in ("bytes_fetched", "requests", "stall_seconds")}
        stalls[name] = statistics.median(r["start_stall_seconds"] / max(r["files_opened"], 1) for r in runs)
        print(f"  info  {name[:3]} per run: {med['bytes_fetched'] / total:.2f}x the bytes fetched, {med['requests']:.0f} "
              f"GETs, read stalls {med['stall_seconds']:.2f} s in all, task-start stall {1000 * stalls[name]:.0f} ms "
              f"per file ({statistics.median(r['files_opened'] for r in runs):.0f} files)")
    if B in stalls and C in stalls:
        ratio = stalls[C] / stalls[B] if stalls[B] else float("nan")
        checks[f"task-start stall (c)/(b) <= {STALL_TARGET:g}"] = ratio
        print(f"  {'PASS' if ratio <= STALL_TARGET else 'MISS'}  task-start stall per file (c) / (b) = {ratio:.2f} "
              f"(<= {STALL_TARGET:g}): {1000 * stalls[C]:.0f} vs {1000 * stalls[B]:.0f} ms")
    if max(other.values()) > 0.2:
        print(f"  WARN  up to {max(other.values()):.1f} cores busy outside the benchmark during a method: re-run when quiet")
    return {"bytes": total, "times": times, "medians": medians, "cpu_seconds_ours_machine": cpu, "bounds_seconds": bounds,
            "engine_stat_deltas": stats, "task_start_stall_per_file": stalls, "targets": checks,
            "target_limits": {k: IDEAL_TARGET if "ideal" in k else STALL_TARGET for k in checks}}


if __name__ == "__main__":
    main()
