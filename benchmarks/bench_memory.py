"""Peak memory of a reader process: against block_size x concurrency, and of one task, streamed or not.

    python benchmarks/bench_memory.py                    # the engine: block_size x concurrency
    python benchmarks/bench_memory.py --task [--trk-mb 300] [--format trk.gz|trx] [--server s3rver|moto]

The engine table: each configuration reads the same 256 MiB object (local moto server) in a fresh
child process, 1 MiB ``readinto`` calls into one reused buffer, and reports the child's peak RSS.
Block files live in /dev/shm and are read with ``pread``, so they are not mapped into the reader.
If GET bodies were buffered, the peak would grow by about ``part_size x concurrency``.

``--task``: one ``read_tractogram`` task over one ``.trk.gz`` of ~``--trk-mb`` MB of records
(random walks, gzip level 1: one partition, as gzip has no random access) or, with ``--format
trx``, one deflated TRX written by trx-python from the same walks (a per-point ``fa`` in float16;
one partition too: deflate has no random access either) on a local S3 server,
computed in a fresh child process with ``scheduler="sync"``: ``map_chunks(f)`` (one call on the
whole parsed partition) against ``map_chunks(f, per="chunk")`` (a call per ``--chunk`` of records
as it is parsed). Two functions: ``count`` (streamlines, points and a float64 sum of x: no
temporaries) and ``arc`` (``chunk.arc_lengths()``: float64 temporaries the size of what it is
given). Reported per run: the child's peak RSS growth over its RSS after the graph was built (the
S3 client and the kernels exist by then), tracemalloc's peak (numpy arrays included), seconds.
Block files are in /dev/shm (tier budget ``--tier-mib``), outside the child's RSS.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np
import s3fs

from dask_prefetch.testing import LocalS3Server
from dask_prefetch.testing.memory import measure_read, peak_rss

MiB, MB = 2**20, 10**6
SIZE = 256 * MiB
TIER = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", action="store_true", help="one task's memory, streamed or not (else the engine table)")
    p.add_argument("--trk-mb", type=float, default=300, help="uncompressed TRK MB of the .trk.gz (--task)")
    p.add_argument("--chunk", default="2 MiB", help="read_tractogram's chunk_size (--task)")
    p.add_argument("--tier-mib", type=float, default=256, help="prefetch budget in /dev/shm (--task)")
    p.add_argument("--format", choices=["trk.gz", "trx"], default="trk.gz", help="the file one task reads (--task)")
    p.add_argument("--funcs", default="count,arc", help="functions to measure, comma-separated (--task)")
    p.add_argument("--server", choices=["s3rver", "moto"], default="s3rver")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def engine_table() -> None:
    with LocalS3Server() as server:
        options = server.storage_options()
        raw = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        raw.mkdir("memory")
        raw.pipe("memory/big", np.random.default_rng(0).bytes(SIZE))
        print(f"{'block MiB':>9} {'part MiB':>8} {'GETs':>4} {'in flight MiB':>13} {'peak RSS MiB':>12} {'growth MiB':>10}")
        for block, part, concurrency in [(8, 8, 1), (8, 8, 4), (32, 8, 16), (32, 32, 8), (64, 64, 4)]:
            total, base, peak = measure_read(options, "memory/big", TIER, block * MiB, part * MiB, concurrency)
            assert total == SIZE, total
            print(f"{block:>9} {part:>8} {concurrency:>4} {part * concurrency:>13} {peak / MiB:>12.0f} "
                  f"{(peak - base) / MiB:>10.0f}")


# -- one task, streamed or not ---------------------------------------------------------------


def count(chunk) -> tuple[int, int, float]:
    return len(chunk), len(chunk.points), float(chunk.points[:, 0].sum(dtype=np.float64))


def arc(chunk) -> tuple[int, int, float]:
    return len(chunk), len(chunk.points), float(chunk.arc_lengths().sum())


def current_rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def reset_peak_rss() -> None:
    """Start VmHWM afresh from the current RSS (Linux >= 4.0: writing 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def task_child(arg: str) -> None:
    """In the child: build the graph (S3 client, kernels), then compute the one task and measure it."""
    import tracemalloc

    from dask_prefetch import read_tractogram
    from dask_prefetch.formats.kernels import compiled

    options, url, per, func, chunk, tier_mib = json.loads(arg)
    compiled()
    tg = read_tractogram(url, storage_options=options, prefetch_storage=[(TIER, tier_mib)], chunk_size=chunk)
    assert tg.npartitions == 1
    bag = tg.map_chunks({"count": count, "arc": arc}[func], per=per)
    reset_peak_rss()
    base = current_rss()
    tracemalloc.start()
    t0 = time.perf_counter()
    results = bag.compute(scheduler="sync")
    seconds = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    totals = [int(sum(r[0] for r in results)), int(sum(r[1] for r in results)), float(sum(r[2] for r in results))]
    print(json.dumps({"calls": len(results), "totals": totals, "rss_growth": peak_rss() - base, "base_rss": base,
                      "traced_peak": traced, "seconds": seconds}))


def run_child(options: dict, url: str, per: str, func: str, chunk: str, tier_mib: float) -> dict:
    arg = json.dumps([options, url, per, func, chunk, tier_mib])
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", arg], capture_output=True, text=True,
                           env=env, timeout=1800)
    if child.returncode:
        raise RuntimeError(f"memory child failed:\n{child.stderr}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def trk_gz(mb: float, fmt: str = "trk.gz") -> tuple[bytes, int, int]:
    """A .trk.gz (or deflated TRX) of ~``mb`` MB of TRK records, its streamline and point counts."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_parsers import random_walks, trk_bytes

    walks = random_walks(7, mb * MB)
    n, points = len(walks), int(walks._lengths.sum())
    if fmt == "trk.gz":
        return gzip.compress(trk_bytes(walks), compresslevel=1), n, points
    import tempfile

    from dask_prefetch.testing.trx import write_trx

    with tempfile.TemporaryDirectory() as scratch:
        trk = os.path.join(scratch, "walks.trk")
        with open(trk, "wb") as f:
            f.write(trk_bytes(walks))
        del walks
        path = write_trx(os.path.join(scratch, "walks.trx"), trk, storage="deflated", dpv={"fa": np.float16},
                         dps={"weight": np.float32})
        with open(path, "rb") as f:
            return f.read(), n, points


def task_table(args: argparse.Namespace) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from s3rver import S3rverServer

    began = time.perf_counter()
    data, n, points = trk_gz(args.trk_mb, args.format)
    url = f"s3://memory/big.{args.format}"
    server = S3rverServer() if args.server == "s3rver" else LocalS3Server()
    with server:
        options = server.storage_options()
        raw = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        raw.mkdir("memory")
        raw.pipe(url[5:], data)
        kind = ".trk.gz" if args.format == "trk.gz" else "deflated TRX"
        print(f"one {kind}: {args.trk_mb:g} MB of records ({points * 12 / MiB:.0f} MiB of float32 points), "
              f"{len(data) / MB:.0f} MB compressed, {n} streamlines; chunk_size {args.chunk}; "
              f"tier {args.tier_mib:g} MiB in {TIER}; {args.server}; ready in {time.perf_counter() - began:.0f} s; "
              f"load {os.getloadavg()[0]:.2f}")
        print(f"{'function':<8} {'per':<10} {'calls':>6} {'peak RSS growth MiB':>20} {'tracemalloc peak MiB':>21} "
              f"{'seconds':>8}")
        for func in args.funcs.split(","):
            sums = {}
            for per in ("partition", "chunk"):
                r = run_child(options, url, per, func, args.chunk, args.tier_mib)
                assert r["totals"][:2] == [n, points], (r["totals"], n, points)
                sums[per] = r["totals"][2]
                print(f"{func:<8} {per:<10} {r['calls']:>6} {r['rss_growth'] / MiB:>20.0f} "
                      f"{r['traced_peak'] / MiB:>21.0f} {r['seconds']:>8.2f}", flush=True)
            assert np.isclose(sums["partition"], sums["chunk"], rtol=1e-9), sums


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    if args.child:
        task_child(args.child)
    elif args.task:
        task_table(args)
    else:
        engine_table()


if __name__ == "__main__":
    main()
