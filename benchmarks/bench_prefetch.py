"""Sequential reads of a sharded object over a simulated WAN: dask_prefetch vs s3fs's caches.

Run from the repository root (after ``pip install -e .[test]``)::

    python benchmarks/bench_prefetch.py                 # 8 shards x 32 MiB, 50 ms, 40 MiB/s, 3 runs
    python benchmarks/bench_prefetch.py --repeat 5 --json results.json

A local S3 server (s3rver; moto with --server moto) sits behind a proxy that delays each response's first byte and caps each
connection's bandwidth (``dask_prefetch.testing.WanProxy``). Every method reads the same logical
file (a 1000-byte global header, then each shard after its own 1000-byte header) in 1 MiB reads.

Workloads
---------
io        read as fast as possible (I/O-bound).
balanced  after each MiB, "compute" for as long as one connection takes to transfer a MiB
          (``time.sleep``: compute that releases the GIL, as numpy and parsers in C do).

Baselines, measured in the same run: s3fs's default cache (``readahead``), ``background``,
``adaptive`` and ``none``; "download everything first" (every 8 MiB range fetched with 10 GETs in
flight, then consumed); and the box's limit (the same with 24 GETs in flight on a 24-connection
pool, every range kept in memory: no tier, no ordering, no reader waiting).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from typing import Callable

import numpy as np
import s3fs
from fsspec.asyn import sync

from dask_prefetch import S3PrefetchFileSystem
from dask_prefetch.testing import LocalS3Server, WanProxy

sys.path.insert(0, os.path.dirname(__file__))
from s3rver import S3rverServer  # noqa: E402

MiB = 2**20
HEADER = 1000
READ = MiB
BUCKET = "bench"
BOX_LIMIT = "box limit (24 in flight, in memory)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--shard-mib", type=float, default=32)
    p.add_argument("--latency", type=float, default=0.05, help="first-byte latency, seconds")
    p.add_argument("--bandwidth-mib", type=float, default=40, help="per-connection MiB/s")
    p.add_argument("--repeat", type=int, default=3, help="runs per method; the median is reported")
    p.add_argument("--block-mib", type=float, default=32, help="dask_prefetch block_size")
    p.add_argument("--part-mib", type=float, default=8, help="dask_prefetch part_size")
    p.add_argument("--concurrency", type=_concurrency, default="auto",
                   help="dask_prefetch GETs in flight: a number, or auto (16 at first, adapted)")
    p.add_argument("--tier-fraction", type=float, default=0.5,
                   help="dask_prefetch's tier budget as a fraction of the data (issue 15: half of it)")
    p.add_argument("--storage", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    p.add_argument("--workloads", default="io,balanced")
    p.add_argument("--skip", default="", help="comma-separated methods to leave out (e.g. none)")
    p.add_argument("--server", choices=["s3rver", "moto"], default="s3rver",
                   help="local S3 server behind the WAN proxy (moto is too slow for 10+ streams)")
    p.add_argument("--json", default="benchmarks/results/bench_prefetch.json")
    return p.parse_args(argv)


def _concurrency(value: str) -> int | str:
    return value if value == "auto" else int(value)


# -- what each method does with the logical file -------------------------------------------


def consume(read: Callable[[int], bytes], total: int, compute_per_mib: float) -> int:
    got = 0
    while got < total:
        chunk = read(min(READ, total - got))
        if not chunk:
            break
        got += len(chunk)
        if compute_per_mib:
            time.sleep(compute_per_mib * len(chunk) / MiB)
    return got


def read_with_s3fs(options: dict, cache_type: str | None) -> Callable:
    def run(paths: list[str], total: int, compute: float) -> int:
        fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        got = 0
        for i, path in enumerate(paths):
            kwargs = {} if cache_type is None else {"cache_type": cache_type}
            with fs.open(path, "rb", **kwargs) as f:
                f.seek(HEADER if i else 0)
                got += consume(f.read, f.size - f.tell(), compute)
        return got

    return run


def read_with_prefetch(options: dict, args: argparse.Namespace, stats: list) -> Callable:
    def run(paths: list[str], total: int, compute: float) -> int:
        fs = S3PrefetchFileSystem(**options, skip_instance_cache=True)
        with fs.open(
            paths,
            header_bytes=HEADER,
            block_size=int(args.block_mib * MiB),
            part_size=int(args.part_mib * MiB),
            concurrency=args.concurrency,
            prefetch_storage=[(args.storage, args.tier_fraction * args.shard_mib * args.shards)],
        ) as f:
            got = consume(f.read, f.size, compute)
            stats.append(vars(f.stats).copy())
        return got

    return run


def download_everything_first(
    options: dict, in_flight: int = 10, range_size: int = 8 * MiB, pool: int = 32
) -> Callable:
    def run(paths: list[str], total: int, compute: float) -> int:
        fs = s3fs.S3FileSystem(**options, skip_instance_cache=True, config_kwargs={"max_pool_connections": pool})
        sizes = fs.sizes(paths)
        ranges = [(p, s, min(s + range_size, n)) for p, n in zip(paths, sizes) for s in range(0, n, range_size)]

        async def fetch_all() -> list[bytes]:
            gate = asyncio.Semaphore(in_flight)

            async def one(path: str, start: int, stop: int) -> bytes:
                async with gate:
                    return await fs._cat_file(path, start=start, end=stop)

            return await asyncio.gather(*(one(*r) for r in ranges))

        pieces = sync(fs.loop, fetch_all)
        # Close now, from this thread: s3fs's finalizer, run by a later garbage collection in a thread
        # with another event loop (a distributed Client's), would close it on that loop and fail noisily.
        s3fs.S3FileSystem.close_session(fs.loop, fs.s3)
        views = [memoryview(piece)[HEADER if start == 0 and path != paths[0] else 0 :]
                 for (path, start, _), piece in zip(ranges, pieces)]
        views.reverse()

        def read(n: int) -> bytes:  # hands out what was downloaded, in order, without re-assembling it
            out = bytearray()
            while len(out) < n and views:
                head = views[-1]
                take = head[: n - len(out)]
                out += take
                if len(take) == len(head):
                    views.pop()
                else:
                    views[-1] = head[len(take) :]
            return bytes(out)

        return consume(read, total, compute)

    return run


# -- harness -------------------------------------------------------------------------------


def timed(fn: Callable, paths: list[str], total: int, compute: float) -> float:
    started = time.perf_counter()
    got = fn(paths, total, compute)
    elapsed = time.perf_counter() - started
    if got != total:
        raise RuntimeError(f"read {got} bytes, expected {total}")
    return elapsed


def upload(raw: s3fs.S3FileSystem, shards: int, shard_bytes: int) -> tuple[list[str], int]:
    raw.mkdir(BUCKET)
    rng = np.random.default_rng(0)
    paths = [f"{BUCKET}/header.trk"]
    raw.pipe(paths[0], rng.bytes(HEADER))
    for i in range(shards):
        paths.append(f"{BUCKET}/data.pt{i:03d}")
        raw.pipe(paths[-1], rng.bytes(shard_bytes))
    return paths, HEADER + shards * (shard_bytes - HEADER)


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        **{pkg: version(pkg) for pkg in ("dask-prefetch", "s3fs", "fsspec", "aiobotocore", "moto")},
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    shard_bytes = int(args.shard_mib * MiB)
    bandwidth = args.bandwidth_mib * MiB
    workloads = args.workloads.split(",")
    skip = set(filter(None, args.skip.split(",")))
    server = S3rverServer() if args.server == "s3rver" else LocalS3Server()
    with server, WanProxy(server.endpoint_url, args.latency, bandwidth) as proxy:
        direct = server.storage_options()
        wan = {**direct, "endpoint_url": proxy.endpoint_url}
        paths, total = upload(s3fs.S3FileSystem(**direct, skip_instance_cache=True), args.shards, shard_bytes)
        print(f"{len(paths) - 1} shards x {args.shard_mib:g} MiB = {total / MiB:.0f} MiB; WAN: "
              f"{args.latency * 1000:g} ms first byte, {args.bandwidth_mib:g} MiB/s per connection; "
              f"{os.cpu_count()} CPUs")

        connections = 16 if args.concurrency == "auto" else args.concurrency
        server_time = timed(download_everything_first(direct, in_flight=connections), paths, total, 0)
        server_mibs = total / MiB / server_time
        ceiling = connections * args.bandwidth_mib
        verdict = (
            "the server is not the bottleneck"
            if server_mibs > ceiling
            else f"beyond ~{server_mibs / args.bandwidth_mib:.0f} connections this machine, not the WAN, sets the "
            "limit; 'download everything first' measures it"
        )
        print(f"local server alone (no WAN, {connections} GETs in flight): {server_mibs:.0f} MiB/s; the WAN "
              f"allows {args.bandwidth_mib:g} MiB/s per connection, {ceiling:.0f} MiB/s for {connections}: {verdict}")

        stats: list[dict] = []
        methods = {
            "dask_prefetch": read_with_prefetch(wan, args, stats),
            "s3fs default (readahead)": read_with_s3fs(wan, None),
            "s3fs background": read_with_s3fs(wan, "background"),
            "s3fs adaptive": read_with_s3fs(wan, "adaptive"),
            "s3fs none": read_with_s3fs(wan, "none"),
            "download everything first": download_everything_first(wan),
            BOX_LIMIT: download_everything_first(wan, in_flight=24, pool=24),
        }
        methods = {k: v for k, v in methods.items() if k not in skip}
        compute_per_mib = 1 / args.bandwidth_mib
        times: dict[str, dict[str, list[float]]] = {w: {} for w in workloads}
        cpu: dict[str, dict[str, list[float]]] = {w: {} for w in workloads}  # this process's CPU seconds
        if "balanced" in workloads:
            times["balanced"]["compute only"] = []
        for run in range(args.repeat):
            for workload in workloads:
                compute = compute_per_mib if workload == "balanced" else 0.0
                for name, fn in methods.items():
                    if workload == "balanced" and name in ("s3fs none", "s3fs background", BOX_LIMIT):
                        continue  # slowest baselines: the I/O-bound run already tells their story
                    cpu_started = time.process_time()
                    times[workload].setdefault(name, []).append(timed(fn, paths, total, compute))
                    cpu[workload].setdefault(name, []).append(time.process_time() - cpu_started)
                if workload == "balanced":
                    started = time.perf_counter()
                    consume(lambda n: b"\0" * n, total, compute)
                    times[workload]["compute only"].append(time.perf_counter() - started)
            print(f"run {run + 1}/{args.repeat} done", flush=True)

    report = summarise(args, total, times, server_mibs, stats, cpu)
    write_json(args.json, report)
    return report


def write_json(path: str, report: dict) -> None:
    """Write a benchmark report, making its folder if needed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {path}")


def summarise(args, total, times, server_mibs, stats, cpu) -> dict:
    medians = {w: {k: statistics.median(v) for k, v in ts.items()} for w, ts in times.items()}
    cpu_per_gib = {w: {k: statistics.median(v) * 2**30 / total for k, v in cs.items()} for w, cs in cpu.items()}
    print(f"\n{'workload':<9} {'method':<36} {'median s':>9} {'MiB/s':>7} {'vs dask_prefetch':>17} {'client CPU s/GiB':>17}")
    for workload, ms in medians.items():
        ours = ms.get("dask_prefetch", math.nan)
        for name, t in sorted(ms.items(), key=lambda kv: kv[1]):
            per_gib = cpu_per_gib.get(workload, {}).get(name, math.nan)
            print(f"{workload:<9} {name:<36} {t:>9.2f} {total / MiB / t:>7.0f} {t / ours:>16.2f}x {per_gib:>17.2f}")
    if stats:
        peaks = sorted(s["peak_in_flight"] for s in stats)
        limits = sorted(s.get("peak_concurrency", 0) for s in stats)
        print(f"dask_prefetch GETs in flight at most, per run: median {statistics.median(peaks):g} "
              f"(range {peaks[0]}-{peaks[-1]}); limit reached: median {statistics.median(limits):g} "
              f"(range {limits[0]}-{limits[-1]}); back-offs: {sum(s.get('concurrency_backoffs', 0) for s in stats)}")
    checks = {}
    io = medians.get("io", {})
    limit = io.get(BOX_LIMIT)
    ours = io.get("dask_prefetch")
    if ours is not None:
        for baseline in ("s3fs default (readahead)", "s3fs adaptive"):
            if baseline in io:
                checks[f"io: >= 4x faster than {baseline}"] = io[baseline] / ours
        if limit is not None:
            checks["io: <= 1.15x the box limit"] = ours / limit
    bal = medians.get("balanced", {})
    if "dask_prefetch" in bal and limit is not None:
        bound = max(limit, bal["compute only"])
        checks["balanced: <= 1.05x max(box limit, compute time)"] = bal["dask_prefetch"] / bound
    limits = {name: float(name.split(">= ")[1].split("x")[0]) if ">=" in name else float(name.split("<= ")[1].split("x")[0])
              for name in checks}
    print("\ntargets")
    for name, value in checks.items():
        ok = value >= limits[name] if ">=" in name else value <= limits[name]
        print(f"  {'PASS' if ok else 'MISS'}  {name}: {value:.2f}")
    return {
        "settings": vars(args),
        "machine": machine(),
        "logical_bytes": total,
        "server_mib_per_s_without_wan": server_mibs,
        "times": times,
        "medians": medians,
        "client_cpu_seconds": cpu,
        "client_cpu_seconds_per_gib": cpu_per_gib,
        "targets": checks,
        "target_limits": limits,
        "dask_prefetch_stats": stats,
    }


if __name__ == "__main__":
    main()
