"""A sharded TRK tractogram over a simulated WAN: ``read_tractogram`` vs nibabel over plain s3fs.

Run from the repository root (after ``pip install -e .[test]``)::

    python benchmarks/bench_tractogram.py              # 8 shards x ~32 MB, 50 ms, 40 MiB/s, 3 runs
    python benchmarks/bench_tractogram.py --repeat 5 --skip distributed

The tractogram is stored the way large ones are split: a lone 1000-byte TRK header (``n_count``
0) followed by N shards, each a complete TRK file written by nibabel (its own header + body;
random walks of 20-200 points, non-trivial voxel-to-RAS affine). A local S3 server (s3rver;
moto with --server moto) sits behind ``dask_prefetch.testing.WanProxy`` (first-byte latency and
a per-connection bandwidth cap), as in ``bench_prefetch.py``. Each method ends with the
points-per-streamline of every streamline, in order:

(a) nibabel over plain s3fs, the way people do it today: for each shard in order,
    ``s3fs.S3FileSystem(...).open(path, "rb")`` (default cache) and
    ``nibabel.streamlines.TrkFile.load(f, lazy_load=False)``; sequential, one process.
(b) ``read_tractogram(paths, storage_options=..., prefetch_storage=[(storage, MiB)]).lengths.compute()``
    with Dask's default threaded scheduler (one task per shard).
(c) the same on ``distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False)``
    (cluster start-up not timed).

For reference, in the same runs: the local server without the WAN (every 8 MiB range with
``dask-prefetch.concurrency`` GETs in flight: what this machine can serve), the bytes alone over the
WAN ("download everything first", 10 GETs in flight, from bench_prefetch.py) and the parsing alone
(TrkReader over each shard's bytes in memory, one thread). All lengths are checked against the ones
the shards were written with. ``--npartitions`` groups shards into fewer, longer streams.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version

import dask
import dask.utils
import numpy as np
import s3fs
from nibabel.streamlines import TrkFile

from dask_prefetch import read_tractogram
from dask_prefetch.config import get_concurrency
from dask_prefetch.formats.trk import TrkReader
from dask_prefetch.testing import LocalS3Server, WanProxy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_parsers import random_walks, trk_bytes
from bench_prefetch import download_everything_first, timed
from s3rver import S3rverServer

MiB = 2**20
MB = 10**6
HEADER = 1000
BUCKET = "bench"
TARGET = 2.5
A, B, C = "(a) nibabel + s3fs default", "(b) read_tractogram, threads", "(c) read_tractogram, LocalCluster"
DOWNLOAD, PARSE = "ref: download everything first", "ref: parse only (in memory)"
SERVER = "ref: local server alone (no WAN)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--shard-mb", type=float, default=32, help="approximate TRK bytes per shard, MB")
    p.add_argument("--latency", type=float, default=0.05, help="first-byte latency, seconds")
    p.add_argument("--bandwidth-mib", type=float, default=40, help="per-connection MiB/s")
    p.add_argument("--repeat", type=int, default=3, help="runs per method; the median is reported")
    p.add_argument("--storage", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    p.add_argument("--storage-mib", type=float, default=2048, help="prefetch tier budget, MiB")
    p.add_argument("--npartitions", type=int, default=None,
                   help="read_tractogram npartitions (default: one per shard)")
    p.add_argument("--skip", default="", help="comma-separated: distributed, references")
    p.add_argument("--server", choices=["s3rver", "moto"], default="s3rver",
                   help="local S3 server behind the WAN proxy (moto is too slow for 10+ streams)")
    p.add_argument("--json", default="benchmarks/results/bench_tractogram.json")
    return p.parse_args(argv)


# -- data ----------------------------------------------------------------------------------


def upload(raw: s3fs.S3FileSystem, args: argparse.Namespace) -> tuple[list[str], list[bytes], np.ndarray]:
    """The global header and the shards: their keys, the shards' bytes, and every streamline's length."""
    raw.mkdir(BUCKET)
    keys = [f"{BUCKET}/hydi.trk"]
    raw.pipe(keys[0], trk_bytes([]))  # an empty tractogram: a lone header, n_count 0
    shards, lengths = [], []
    for i in range(args.shards):
        walks = random_walks(100 + i, args.shard_mb * MB)
        shards.append(trk_bytes(walks))
        lengths.append(np.asarray(walks._lengths))
        keys.append(f"{BUCKET}/hydi.pt{i:03d}")
        raw.pipe(keys[-1], shards[-1])
    head = raw.cat_file(keys[0])
    assert len(head) == HEADER and head[988:992] == b"\0\0\0\0", "the global header must be 1000 bytes, n_count 0"
    return keys, shards, np.concatenate(lengths)


# -- the methods: each returns every streamline's point count, in order ---------------------


def nibabel_over_s3fs(options: dict) -> Callable[[list[str]], np.ndarray]:
    def run(keys: list[str]) -> np.ndarray:
        fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        lengths = []
        for key in keys[1:]:  # each shard is a complete TRK file
            with fs.open(key, "rb") as f:
                trk = TrkFile.load(f, lazy_load=False)
            lengths.append(np.asarray(trk.streamlines._lengths))
        return np.concatenate(lengths)

    return run


def with_read_tractogram(options: dict, args: argparse.Namespace, scheduler) -> Callable[[list[str]], np.ndarray]:
    def run(keys: list[str]) -> np.ndarray:
        tractogram = read_tractogram(
            [f"s3://{k}" for k in keys],
            storage_options=options,
            prefetch_storage=[(args.storage, args.storage_mib)],
            npartitions=args.npartitions,
        )
        return tractogram.lengths.compute(scheduler=scheduler)

    return run


def bytes_only(download: Callable, logical: int, truth: np.ndarray) -> Callable[[list[str]], np.ndarray]:
    """The transfer alone (bench_prefetch's "download everything first"): no parsing, so no lengths of its own."""

    def run(keys: list[str]) -> np.ndarray:
        timed(download, keys, logical, 0)  # raises unless every byte of the stream arrived
        return truth

    return run


def parse_in_memory(shards: list[bytes]) -> Callable[[list[str]], np.ndarray]:
    def run(keys: list[str]) -> np.ndarray:
        return np.concatenate([c.lengths for shard in shards for c in TrkReader(io.BytesIO(shard), "shard")])

    return run


# -- harness -------------------------------------------------------------------------------


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        **{pkg: version(pkg) for pkg in ("dask-prefetch", "dask", "distributed", "nibabel", "s3fs", "fsspec", "aiobotocore")},
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    skip = set(filter(None, args.skip.split(",")))
    concurrency = get_concurrency()[0]  # as many GETs in flight as the engine starts with
    load_start = os.getloadavg()
    server = S3rverServer() if args.server == "s3rver" else LocalS3Server()
    cluster = client = None
    with server, WanProxy(server.endpoint_url, args.latency, args.bandwidth_mib * MiB) as proxy:
        direct = server.storage_options()
        wan = {**direct, "endpoint_url": proxy.endpoint_url}
        started = time.perf_counter()
        keys, shards, truth = upload(s3fs.S3FileSystem(**direct, skip_instance_cache=True), args)
        sizes = [HEADER] + [len(s) for s in shards]
        logical = HEADER + sum(n - HEADER for n in sizes[1:])  # the stream read_tractogram parses
        print(f"{args.shards} TRK shards, {sum(sizes) / MB:.0f} MB, {len(truth)} streamlines, {truth.sum()} points "
              f"(written and uploaded in {time.perf_counter() - started:.0f} s); WAN: {args.latency * 1000:g} ms "
              f"first byte, {args.bandwidth_mib:g} MiB/s per connection; {os.cpu_count()} CPUs; load average "
              f"{os.getloadavg()[0]:.2f}")

        # A task per group of shards, 2 at a time (2 threads); a task's GETs in flight are capped by its parts.
        n_parts = min(args.npartitions or args.shards, args.shards)
        tasks = min(2, n_parts)
        part = dask.utils.parse_bytes(dask.config.get("dask-prefetch.part-size"))
        parts_per_task = -(-(sum(sizes[1:]) // n_parts) // part)
        per_task = min(concurrency, parts_per_task)
        ceiling = tasks * per_task * args.bandwidth_mib
        print(f"the WAN allows {args.bandwidth_mib:g} MiB/s per connection: {ceiling:.0f} MiB/s for {tasks} tasks x "
              f"{per_task} GETs ({n_parts} partitions of ~{parts_per_task} parts of {part / MiB:g} MiB)")

        methods: dict[str, Callable[[list[str]], np.ndarray]] = {
            SERVER: bytes_only(download_everything_first(direct, in_flight=concurrency), logical, truth),
            A: nibabel_over_s3fs(wan),
            B: with_read_tractogram(wan, args, "threads"),
        }
        if "distributed" not in skip:
            from distributed import Client, LocalCluster

            for name in ("distributed", "distributed.core", "distributed.scheduler", "distributed.worker"):
                logging.getLogger(name).setLevel(logging.ERROR)
            cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0")
            client = Client(cluster, set_as_default=False)
            methods[C] = with_read_tractogram(wan, args, client)
        if "references" not in skip:
            methods[DOWNLOAD] = bytes_only(download_everything_first(wan), logical, truth)
            methods[PARSE] = parse_in_memory(shards)

        times: dict[str, list[float]] = {name: [] for name in methods}
        try:
            for run in range(args.repeat):
                for name, fn in methods.items():
                    t0 = time.perf_counter()
                    lengths = fn(keys)
                    times[name].append(time.perf_counter() - t0)
                    if not np.array_equal(lengths, truth):
                        raise AssertionError(f"{name}: lengths differ from the ones written ({len(lengths)} vs {len(truth)})")
                print(f"run {run + 1}/{args.repeat} done (lengths identical across methods)", flush=True)
        finally:
            if client is not None:
                client.close()
                cluster.close()

    report = summarise(args, sum(sizes), times, ceiling, concurrency)
    report.update(machine=machine(), streamlines=len(truth), points=int(truth.sum()),
                  shard_bytes=sizes[1:], load_average={"start": load_start, "end": os.getloadavg()})
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {args.json}")
    return report


def summarise(args, total: int, times: dict[str, list[float]], ceiling: float, concurrency: int) -> dict:
    medians = {k: statistics.median(v) for k, v in times.items()}
    server_mibs = total / MiB / medians[SERVER]
    ours = medians[B]
    print(f"\n{'method':<36} {'median s':>9} {'best s':>7} {'MiB/s':>7} {'vs (b)':>8}")
    for name, t in sorted(medians.items(), key=lambda kv: kv[1]):
        print(f"{name:<36} {t:>9.2f} {min(times[name]):>7.2f} {total / MiB / t:>7.0f} {t / ours:>7.2f}x")
    speedup = medians[A] / ours
    checks = {f"(b) >= {TARGET:g}x faster than (a)": speedup}
    print("\ntargets")
    print(f"  {'PASS' if speedup >= TARGET else 'MISS'}  (b) read_tractogram >= {TARGET:g}x faster than (a) nibabel + "
          f"s3fs: {speedup:.2f}x")
    if C in medians:
        print(f"  info  (c) LocalCluster vs (a): {medians[A] / medians[C]:.2f}x faster")
    ours_mibs = total / MiB / ours
    if server_mibs > ceiling:
        verdict = "the local server is not the bottleneck"
    else:
        verdict = (f"beyond ~{server_mibs / args.bandwidth_mib:.0f} connections this machine, not the WAN, sets the "
                   "limit; 'download everything first' measures it")
    print(f"  info  local server alone ({concurrency} GETs in flight) {server_mibs:.0f} MiB/s vs WAN ceiling "
          f"{ceiling:.0f} MiB/s: {verdict}")
    print(f"  info  (b) moves {ours_mibs:.0f} MiB/s: {ours_mibs / server_mibs:.0%} of the local server alone, "
          f"{ours_mibs / ceiling:.0%} of the WAN ceiling"
          + (f"; parsing alone takes {medians[PARSE]:.2f} s of one core" if PARSE in medians else ""))
    return {
        "settings": vars(args),
        "bytes": total,
        "server_mib_per_s_without_wan": server_mibs,
        "wan_ceiling_mib_per_s": ceiling,
        "times": times,
        "medians": medians,
        "targets": checks,
        "target_limits": {name: TARGET for name in checks},
    }


if __name__ == "__main__":
    main()
