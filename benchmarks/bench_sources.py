"""The S3 range sources against each other in one run: aiobotocore (s3fs's client) and obstore.

Run from the repository root (after ``pip install -e .[bench]``)::

    python benchmarks/bench_sources.py                 # 8 shards x 32 MiB, 50 ms, 40 MiB/s, 5 runs each
    python benchmarks/bench_sources.py --repeat 3 --json results.json

The I/O-bound case of ``bench_prefetch.py``: a local S3 server (s3rver; moto with ``--server moto``)
behind the WAN proxy (``dask_prefetch.testing.WanProxy``: first-byte latency, per-connection
bandwidth), the same logical file (a 1000-byte header, then each shard after its own 1000-byte
header) read in 1 MiB reads through ``S3PrefetchFileSystem(s3_client=...)``. Each run makes a fresh
filesystem and reads the file twice: "cold" (the client is built on the read path, as in a task
that got a freshly unpickled filesystem) and "warm" (the same filesystem again: client reused).

The machine may be shared: the sources alternate run by run (A B, B A, A B, ...), the load
average is recorded around every run, and each run's CPU seconds per MiB are measured (psutil)
for the reading process (obstore's Rust threads included), the S3 server and the proxy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import psutil
import s3fs

from dask_prefetch import S3PrefetchFileSystem
from dask_prefetch.sources import S3_CLIENTS
from dask_prefetch.testing import LocalS3Server, WanProxy

sys.path.insert(0, os.path.dirname(__file__))
from bench_prefetch import HEADER, MiB, consume, download_everything_first, machine, upload, write_json  # noqa: E402
from s3rver import S3rverServer  # noqa: E402

#: Each run reads the file twice on one filesystem: first with the client made on the read path, then reused.
PHASES = ("cold", "warm")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--shard-mib", type=float, default=32)
    p.add_argument("--latency", type=float, default=0.05, help="first-byte latency, seconds")
    p.add_argument("--bandwidth-mib", type=float, default=40, help="per-connection MiB/s")
    p.add_argument("--repeat", type=int, default=5, help="runs per source (at least 3); the median is reported")
    p.add_argument("--block-mib", type=float, default=32, help="dask_prefetch block_size")
    p.add_argument("--part-mib", type=float, default=8, help="dask_prefetch part_size")
    p.add_argument("--concurrency", type=int, default=16, help="dask_prefetch GETs in flight")
    p.add_argument("--sources", default=",".join(S3_CLIENTS), help="comma-separated s3_client values")
    p.add_argument("--storage", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    p.add_argument("--server", choices=["s3rver", "moto"], default="s3rver",
                   help="local S3 server behind the WAN proxy (moto is too slow for 10+ streams)")
    p.add_argument("--json", default="benchmarks/results/bench_sources.json")
    args = p.parse_args(argv)
    if args.repeat < 3:
        p.error("--repeat must be at least 3 (medians of fewer runs say little on a shared machine)")
    unknown = set(args.sources.split(",")) - set(S3_CLIENTS)
    if unknown:
        p.error(f"--sources: unknown {sorted(unknown)}; choose from {', '.join(S3_CLIENTS)}")
    return args


def read_once(fs: S3PrefetchFileSystem, paths: list[str], total: int, args: argparse.Namespace) -> dict:
    """Read the logical file once through ``fs``; its time and what the engine counted."""
    started = time.perf_counter()
    with fs.open(
        paths,
        header_bytes=HEADER,
        block_size=int(args.block_mib * MiB),
        part_size=int(args.part_mib * MiB),
        concurrency=args.concurrency,
        prefetch_storage=[(args.storage, 4 * args.shard_mib * args.shards)],
    ) as f:
        got = consume(f.read, f.size, 0.0)
        stats = vars(f.stats).copy()
    elapsed = time.perf_counter() - started
    if got != total:
        raise RuntimeError(f"read {got} bytes, expected {total}")
    return {"seconds": elapsed, "stats": stats}


def cpu_seconds(processes: dict[str, psutil.Process]) -> dict[str, float]:
    """User + system CPU seconds so far of each process (its threads included)."""
    out = {}
    for name, proc in processes.items():
        times = proc.cpu_times()
        out[name] = times.user + times.system
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    clients = args.sources.split(",")
    shard_bytes = int(args.shard_mib * MiB)
    server = S3rverServer() if args.server == "s3rver" else LocalS3Server()
    with server, WanProxy(server.endpoint_url, args.latency, args.bandwidth_mib * MiB) as proxy:
        direct = server.storage_options()
        wan = {**direct, "endpoint_url": proxy.endpoint_url}
        paths, total = upload(s3fs.S3FileSystem(**direct, skip_instance_cache=True), args.shards, shard_bytes)
        server_pid = server._proc.pid if isinstance(server, S3rverServer) else server.pid
        processes = {"reader": psutil.Process(), "server": psutil.Process(server_pid)}
        processes["proxy"] = psutil.Process(proxy.pid)
        print(f"{len(paths) - 1} shards x {args.shard_mib:g} MiB = {total / MiB:.0f} MiB; WAN: "
              f"{args.latency * 1000:g} ms first byte, {args.bandwidth_mib:g} MiB/s per connection; "
              f"{os.cpu_count()} CPUs; load {_load()}")
        started = time.perf_counter()
        download_everything_first(direct, in_flight=args.concurrency)(paths, total, 0.0)
        server_mibs = total / MiB / (time.perf_counter() - started)
        print(f"local server alone (no WAN, {args.concurrency} GETs in flight): {server_mibs:.0f} MiB/s; the WAN "
              f"allows {args.concurrency * args.bandwidth_mib:.0f} MiB/s for {args.concurrency} connections")

        runs: list[dict[str, Any]] = []
        for run in range(args.repeat):
            order = clients if run % 2 == 0 else clients[::-1]  # alternate: drifting load hits both alike
            for client in order:
                fs = S3PrefetchFileSystem(**wan, s3_client=client, skip_instance_cache=True)
                for phase in PHASES:  # cold: the client is built on the read path; warm: it is reused
                    load_before = os.getloadavg()
                    cpu_before = cpu_seconds(processes)
                    result = read_once(fs, paths, total, args)
                    cpu_after = cpu_seconds(processes)
                    cpu = {name: (cpu_after[name] - cpu_before[name]) / (total / MiB) for name in processes}
                    runs.append({"run": run, "source": client, "phase": phase, **result, "cpu_s_per_mib": cpu,
                                 "load_before": load_before, "load_after": os.getloadavg()})
                    print(f"run {run + 1}/{args.repeat} {client:<11} {phase} {result['seconds']:6.2f} s   "
                          "CPU ms/MiB: " + "  ".join(f"{name} {1000 * v:5.2f}" for name, v in cpu.items())
                          + f"   first bytes after {result['stats']['start_stall_seconds']:.2f} s"
                          f"   load {load_before[0]:.2f}", flush=True)

    report = summarise(args, total, clients, runs, server_mibs)
    write_json(args.json, report)
    return report


def summarise(args: argparse.Namespace, total: int, clients: list[str], runs: list[dict], server_mibs: float) -> dict:
    medians: dict[str, dict[str, dict[str, Any]]] = {}
    for phase in PHASES:
        for client in clients:
            mine = [r for r in runs if r["source"] == client and r["phase"] == phase]
            medians.setdefault(phase, {})[client] = {
                "seconds": statistics.median(r["seconds"] for r in mine),
                "min_seconds": min(r["seconds"] for r in mine),
                "max_seconds": max(r["seconds"] for r in mine),
                "start_stall_seconds": statistics.median(r["stats"]["start_stall_seconds"] for r in mine),
                "cpu_s_per_mib": {
                    name: statistics.median(r["cpu_s_per_mib"][name] for r in mine)
                    for name in mine[0]["cpu_s_per_mib"]
                },
            }
    loads = [r["load_before"][0] for r in runs]
    print(f"\n{'phase':<5} {'source':<12} {'median s':>9} {'range s':>13} {'MiB/s':>7} {'1st bytes s':>12}"
          "   CPU ms/MiB (median): reader server proxy")
    for phase, by_client in medians.items():
        for client, m in by_client.items():
            cpu = m["cpu_s_per_mib"]
            print(f"{phase:<5} {client:<12} {m['seconds']:>9.2f} {m['min_seconds']:>6.2f}-{m['max_seconds']:<6.2f} "
                  f"{total / MiB / m['seconds']:>7.0f} {m['start_stall_seconds']:>12.2f}   "
                  f"{1000 * cpu['reader']:>20.2f} {1000 * cpu['server']:>6.2f} {1000 * cpu['proxy']:>5.2f}")
        if {"aiobotocore", "obstore"} <= by_client.keys():
            ratio = by_client["obstore"]["seconds"] / by_client["aiobotocore"]["seconds"]
            paired = paired_ratios(runs, phase)
            print(f"{phase:<5} obstore / aiobotocore: {ratio:.2f} (medians); per run, side by side: "
                  f"median {statistics.median(paired):.2f}, {sum(r < 1 for r in paired)} of {len(paired)} below 1")
    print(f"load average (1 min) before the reads: {min(loads):.2f}-{max(loads):.2f}")
    return {
        "settings": vars(args),
        "machine": {**machine(), **{pkg: _version(pkg) for pkg in ("obstore", "psutil")}},
        "logical_bytes": total,
        "server_mib_per_s_without_wan": server_mibs,
        "runs": runs,
        "medians": medians,
        "load_1min_before_reads": [min(loads), max(loads)],
        "paired_ratios_obstore_over_aiobotocore": {
            phase: paired_ratios(runs, phase) for phase in PHASES if {"aiobotocore", "obstore"} <= set(clients)
        },
    }


def paired_ratios(runs: list[dict], phase: str) -> list[float]:
    """obstore's time over aiobotocore's within each run (the two read back to back, under the same load)."""
    by_run: dict[int, dict[str, float]] = {}
    for r in runs:
        if r["phase"] == phase:
            by_run.setdefault(r["run"], {})[r["source"]] = r["seconds"]
    return [t["obstore"] / t["aiobotocore"] for t in by_run.values() if {"obstore", "aiobotocore"} <= t.keys()]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
