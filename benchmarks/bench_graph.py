"""Graph build at HYDI's shard count: ``read_tractogram("s3://b/t/*")`` against the listing alone.

Run from the repository root (after ``pip install -e .[test]``)::

    python benchmarks/bench_graph.py                    # 464 and 1856 shards, 5 runs each, s3rver
    python benchmarks/bench_graph.py --repeat 3 --profile benchmarks/results/graph.prof
    python benchmarks/bench_graph.py --tasks             # also what the tasks' header checks cost

The tractogram is stored the way HYDI is: a lone 1000-byte TRK header (``n_count`` 0) and N
shards, each a complete TRK file written by nibabel (its own header and a few random walks: the
bytes do not matter here, the number of objects does). Two prefixes hold N = ``--shards`` and
4 N objects on a local S3 server (s3rver; moto with ``--server moto``), no WAN proxy. Timed, in
the same run, each after one untimed warm-up (the S3 client is made once, as in a session):

* the listing alone: ``fs.glob(prefix + "*", detail=True)`` on a warm ``s3fs.S3FileSystem``,
  its listing cache cleared first (what any graph build must at least do);
* ``read_tractogram(url)``: the layout inferred (the call the issue times: a global header plus
  shards with their own headers, which it must recognise from their first bytes);
* ``read_tractogram(url, header_bytes=1000)``: the layout stated (no shard read at all);
* the same, to a collection: ``read_tractogram(url).lengths`` (the dask graph of N tasks).

Targets (issue 15, item 3): N shards <= 2 x the listing + 0.5 s; 4 N shards <= 5 x the time of N
(each checked for the layout inferred and stated). The lengths of one graph are computed once and checked against the ones written
(``--no-check`` skips that). ``--profile FILE`` writes a cProfile of one inferred build of 4 N
shards and prints where its time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import s3fs

from dask_prefetch import read_tractogram
from dask_prefetch.testing import LocalS3Server

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_parsers import trk_bytes
from bench_prefetch import machine
from s3rver import S3rverServer

HEADER = 1000
BUCKET = "bench"
LISTING, INFERRED, STATED, LENGTHS = (
    "listing alone (glob, detail=True)",
    "read_tractogram, layout inferred",
    "read_tractogram, header_bytes=1000",
    "read_tractogram(...).lengths",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shards", type=int, default=464, help="shards of the smaller tractogram (the larger has 4x)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per measure; the median is reported")
    p.add_argument("--server", choices=["s3rver", "moto"], default="s3rver")
    p.add_argument("--no-check", action="store_true", help="do not compute one graph's lengths")
    p.add_argument("--tasks", action="store_true",
                   help="also time computing the smaller graph's lengths, inferred (tasks check the shards' headers) "
                        "against stated (headers skipped), interleaved")
    p.add_argument("--profile", default="", help="write a cProfile of one inferred build of 4x the shards here")
    p.add_argument("--json", default="benchmarks/results/bench_graph.json")
    return p.parse_args(argv)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def upload(raw: s3fs.S3FileSystem, prefix: str, shards: int) -> np.ndarray:
    """A global header and ``shards`` small complete TRK files under ``prefix``; every streamline's length."""
    rng = np.random.default_rng(shards)
    objects = {f"{prefix}hydi.trk": trk_bytes([])}  # an empty tractogram: a lone header, n_count 0
    lengths = []
    for i in range(shards):
        walks = [np.cumsum(rng.normal(0, 1, (k, 3)), axis=0).astype(np.float32) for k in rng.integers(2, 30, 3)]
        objects[f"{prefix}hydi.pt{i:04d}"] = trk_bytes(walks)
        lengths.extend(len(w) for w in walks)
    assert len(objects[f"{prefix}hydi.trk"]) == HEADER
    raw.pipe(objects)  # concurrent PUTs
    return np.asarray(lengths)


def timed(fn: Callable[[], object], repeat: int) -> tuple[list[float], object]:
    fn()  # warm-up, untimed
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def measure(options: dict, prefix: str, repeat: int) -> dict[str, list[float]]:
    lister = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    url = f"s3://{prefix}*"

    def listing() -> int:
        lister.invalidate_cache()
        return len(lister.glob(f"{prefix}*", detail=True))

    methods: dict[str, Callable[[], object]] = {
        LISTING: listing,
        INFERRED: lambda: read_tractogram(url, storage_options=options),
        STATED: lambda: read_tractogram(url, storage_options=options, header_bytes=HEADER),
        LENGTHS: lambda: read_tractogram(url, storage_options=options).lengths,
    }
    return {name: timed(fn, repeat)[0] for name, fn in methods.items()}


def tasks(options: dict, prefix: str, truth: np.ndarray, repeat: int) -> dict[str, list[float]]:
    """Seconds to compute every partition's lengths (2 threads), the layout inferred or stated, interleaved."""
    builds = {"inferred (tasks check headers)": {}, "header_bytes=1000 (skipped)": {"header_bytes": HEADER}}
    times: dict[str, list[float]] = {name: [] for name in builds}
    for round_ in range(repeat + 1):  # the first round warms up, untimed
        for name, kwargs in builds.items():
            tg = read_tractogram(f"s3://{prefix}*", storage_options=options, **kwargs)
            t0 = time.perf_counter()
            got = tg.lengths.compute(scheduler="threads", num_workers=2)
            if round_:
                times[name].append(time.perf_counter() - t0)
            if not np.array_equal(got, truth):
                raise AssertionError(f"{name}: lengths differ from the ones written")
    n = len(tg.partitions)
    print(f"
computing the lengths of {n} partitions, median of {repeat} (min-max):")
    for name, t in times.items():
        print(f"  {name:<32} {statistics.median(t):.3f} s ({min(t):.3f}-{max(t):.3f}), "
              f"{statistics.median(t) / n * 1000:.2f} ms a partition")
    return times


def profile(options: dict, prefix: str, path: str) -> None:
    read_tractogram(f"s3://{prefix}*", storage_options=options)  # warm
    profiler = cProfile.Profile()
    profiler.enable()
    read_tractogram(f"s3://{prefix}*", storage_options=options)
    profiler.disable()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    profiler.dump_stats(path)
    print(f"\ncProfile of one inferred build ({prefix}*), by cumulative time (all of it in {path}):")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    print("by own time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    counts = (args.shards, 4 * args.shards)
    load = {"start": uptime()}
    print(load["start"])
    # s3rver 3.7.1 encrypts its ListObjectsV2 continuation tokens with DES, which Node >= 17 refuses
    # without OpenSSL's legacy provider: every listing of more than 1000 keys would fail (InternalError).
    os.environ["NODE_OPTIONS"] = (os.environ.get("NODE_OPTIONS", "") + " --openssl-legacy-provider").strip()
    server = S3rverServer() if args.server == "s3rver" else LocalS3Server()
    results: dict[int, dict[str, list[float]]] = {}
    with server:
        options = server.storage_options()
        raw = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        raw.mkdir(BUCKET)
        truth = {}
        started = time.perf_counter()
        for n in counts:
            truth[n] = upload(raw, f"{BUCKET}/t{n}/", n)
        print(f"uploaded a global header + {' and '.join(map(str, counts))} shards in "
              f"{time.perf_counter() - started:.0f} s ({args.server})", flush=True)
        for n in counts:
            results[n] = measure(options, f"{BUCKET}/t{n}/", args.repeat)
            print(f"{n} shards measured", flush=True)
        if not args.no_check:
            n = counts[0]
            got = read_tractogram(f"s3://{BUCKET}/t{n}/*", storage_options=options).lengths.compute()
            if not np.array_equal(got, truth[n]):
                raise AssertionError(f"{n} shards: lengths differ from the ones written")
            print(f"{n} shards: lengths computed equal to the ones written")
        if args.tasks:
            tasks(options, f"{BUCKET}/t{counts[0]}/", truth[counts[0]], args.repeat)
        if args.profile:
            profile(options, f"{BUCKET}/t{counts[1]}/", args.profile)
    load["end"] = uptime()
    report = summarise(args, counts, results)
    report.update(machine=machine(), load=load, server=args.server)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    print(f"{load['end']}\nwrote {args.json}")
    return report


def summarise(args: argparse.Namespace, counts: tuple[int, int], results: dict) -> dict:
    medians = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    small, large = counts
    print(f"\nmedian of {args.repeat} (min-max), seconds; per shard beyond the listing, ms")
    print(f"{'measure':<38}" + "".join(f"{f'{n} shards':>24}" for n in counts) + f"{'ms/shard':>10}")
    for name in results[small]:
        cells = "".join(
            f"{medians[n][name]:>10.3f} ({min(results[n][name]):.3f}-{max(results[n][name]):.3f})" for n in counts
        )
        extra = (medians[large][name] - medians[large][LISTING]) / large * 1000
        print(f"{name:<38}{cells}{'' if name == LISTING else f'{extra:>10.2f}'}")
    bound = 2 * medians[small][LISTING] + 0.5
    checks = {
        f"{small} shards, inferred <= 2 x listing + 0.5 s ({bound:.2f} s)": (medians[small][INFERRED], bound),
        f"{small} shards, stated <= 2 x listing + 0.5 s ({bound:.2f} s)": (medians[small][STATED], bound),
        f"{large} shards <= 5 x {small} shards, inferred": (medians[large][INFERRED], 5 * medians[small][INFERRED]),
        f"{large} shards <= 5 x {small} shards, stated": (medians[large][STATED], 5 * medians[small][STATED]),
    }
    print()
    for name, (got, limit) in checks.items():
        print(f"{'PASS' if got <= limit else 'MISS'}  {name}: {got:.3f} s (limit {limit:.3f} s)")
    return {
        "shards": list(counts),
        "repeat": args.repeat,
        "times": {str(n): r for n, r in results.items()},
        "medians": {str(n): m for n, m in medians.items()},
        "checks": {name: {"value": got, "limit": limit, "pass": got <= limit} for name, (got, limit) in checks.items()},
    }


if __name__ == "__main__":
    main()
