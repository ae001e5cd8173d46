"""The sizing model against measured runs: ``dask_prefetch.sizing`` predicted vs the real job, config by config.

Run from the repository root (after ``pip install -e .[test]``)::

    python benchmarks/bench_plan.py                      # 10 configurations, 5 runs each, s3rver
    python benchmarks/bench_plan.py --repeat 5 --only io-c8,cluster-w2

Every configuration is a small job over the WAN proxy of the other benchmarks
(``dask_prefetch.testing.WanProxy``: 50 ms to first byte, 40 MiB/s per connection) in front of a
local S3 server (s3rver; moto with ``--server moto``), with their data writers:

io        bench_prefetch's sequential read of one logical file (a 1000-byte global header and N
          random-byte shards after their own 1000-byte headers) in 1 MiB reads, one stream: one
          worker, one thread, one partition, no plugins (the file's own tier budget, half the data).
balanced  the same, "computing" after each MiB for as long as one connection takes to move it
          (``time.sleep``, 1/40 s per MiB), as the bytes arrive: the model's streamed compute.
cluster   bench_cluster's TRK tractogram (a lone header + N complete TRK shards) read with
          ``read_tractogram(...).map_chunks(f)`` on a fresh ``LocalCluster`` (1 or 2 workers,
          1 thread each) with both plugins, ``f`` sleeping a set number of seconds per MiB of
          its partition (0: I/O and parsing only).

For each, :class:`~dask_prefetch.sizing.PlanInputs` is built for exactly that run, from
measurements made before it, never from its own wall time:

* latency and one connection's bandwidth: ``dask-prefetch plan``'s probe through the proxy;
* shard sizes: ``dask-prefetch plan``'s listing;
* the node's link (``nic_bps``): the box's limit, measured just before each configuration (the
  box is shared): one stream of the engine with 32 GETs of 4 MiB in flight on objects of their own,
  far more than the WAN's connections need, so the cores (client, proxy, server) set the rate;
* ``parse_s_per_mib``: the readers' CPU per MiB, timed on the data in memory (random bytes: a copy
  through a tier file on the storage, 1 MiB at a time; TRK: the parser on every shard, plus that copy);
* ``task_overhead_s``: 2 x 40 no-op tasks on the cluster, one thread, per task (cluster only);
* ``graph_s_per_shard`` and ``job_overhead_s``: the graph build of that data (``read_tractogram``;
  ``fs.open`` for one stream) timed alone on all the shards and on the first one: the slope is the
  cost per shard, what the one-shard build takes beyond it and its two latencies is fixed; on the
  cluster, plus a one-task no-op job's submission and gathering (less one task's overhead);
* the compute rate, workers x threads, tier budget, block and part sizes, concurrency as set.

Then the job runs ``--repeat`` times (median reported), predicted vs measured and their ratio are
printed (target: within +-15 %), and the load average (``os.getloadavg``) before and after each
configuration is recorded: the box is shared.
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
from types import SimpleNamespace
from typing import Any

import dask
import s3fs

from dask_prefetch import S3PrefetchFileSystem, read_tractogram
from dask_prefetch.cli.plan import list_objects, probe
from dask_prefetch.formats.chunk import StreamlineChunk
from dask_prefetch.formats.trk import TrkReader
from dask_prefetch.sizing import MiB, Plan, PlanInputs, predict
from dask_prefetch.testing import LocalS3Server, WanProxy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_prefetch  # noqa: E402
import bench_tractogram  # noqa: E402
from bench_cluster import task_stream, timeline, warm_up  # noqa: E402
from bench_prefetch import BUCKET, HEADER, consume, download_everything_first, timed, write_json  # noqa: E402
from s3rver import S3rverServer  # noqa: E402

TOLERANCE = 0.15
#: Bytes of one reader's read, as in bench_prefetch.
READ = bench_prefetch.READ


@dataclasses.dataclass(frozen=True)
class Config:
    """One measured job: its data, its settings, its compute."""

    name: str
    kind: str  # "io", "balanced" or "cluster"
    shards: int
    shard_mib: float  # random-byte shards: MiB each; TRK shards: about this many MB each
    block_mib: float = 32
    part_mib: float = 8
    concurrency: int | str = "auto"
    workers: int = 1
    compute_s_per_mib: float = 0.0  # cluster: per MiB of the partition, after it is read
    tier_mib: float | None = None  # None: half the data (one stream), 1024 MiB (cluster)

    @property
    def data_key(self) -> tuple:
        return ("trk" if self.kind == "cluster" else "raw", self.shards, self.shard_mib)


CONFIGS = [
    Config("io-c8", "io", 8, 16, block_mib=32, part_mib=8, concurrency=8),
    Config("io-c16-b8", "io", 8, 16, block_mib=8, part_mib=4, concurrency=16),
    Config("io-auto", "io", 8, 16, block_mib=32, part_mib=8, concurrency="auto"),
    Config("balanced-c8", "balanced", 8, 16, block_mib=16, part_mib=8, concurrency=8),
    Config("io-16sh-c8", "io", 16, 4, block_mib=8, part_mib=4, concurrency=8),
    Config("balanced-16sh-auto", "balanced", 16, 4, block_mib=8, part_mib=4, concurrency="auto"),
    Config("cluster-w1-io", "cluster", 8, 6, workers=1, concurrency="auto"),
    Config("cluster-w2-io", "cluster", 8, 6, workers=2, concurrency=8, block_mib=8, part_mib=4),
    Config("cluster-w2-compute", "cluster", 8, 6, workers=2, concurrency="auto", compute_s_per_mib=0.05),
    Config("cluster-w1-compute-c16", "cluster", 8, 6, workers=1, concurrency=16, block_mib=8, part_mib=8,
           compute_s_per_mib=0.05),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--latency", type=float, default=0.05, help="first-byte latency set on the proxy, seconds")
    p.add_argument("--bandwidth-mib", type=float, default=40, help="per-connection MiB/s set on the proxy")
    p.add_argument("--repeat", type=int, default=5, help="runs per configuration; the median is reported")
    p.add_argument("--only", default="", help="comma-separated configuration names (default: all)")
    p.add_argument("--storage", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    p.add_argument("--server", choices=["s3rver", "moto"], default="s3rver")
    p.add_argument("--json", default="benchmarks/results/bench_plan.json")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    return args


# -- measurements feeding the model (never the run's own wall time) ------------------------


@dataclasses.dataclass
class DataSet:
    """What one upload gave: keys in order (global header first), shard bytes, the logical size."""

    keys: list[str]
    shards: list[bytes] | None  # TRK shards' bytes (for the parse timing); None for random bytes
    logical: int


def upload(raw: s3fs.S3FileSystem, cfg: Config) -> DataSet:
    """Empty the bucket, then write ``cfg``'s data with bench_prefetch's or bench_tractogram's writer."""
    if raw.exists(BUCKET):
        raw.rm(BUCKET, recursive=True)
    raw.invalidate_cache()
    if cfg.kind == "cluster":
        keys, shards, _ = bench_tractogram.upload(raw, SimpleNamespace(shards=cfg.shards, shard_mb=cfg.shard_mib))
        return DataSet(keys, shards, HEADER + sum(len(s) - HEADER for s in shards))
    keys, logical = bench_prefetch.upload(raw, cfg.shards, int(cfg.shard_mib * MiB))
    return DataSet(keys, None, logical)


def upload_box(raw: s3fs.S3FileSystem, objects: int = 16, object_bytes: int = 8 * MiB) -> DataSet:
    """Random bytes in a bucket of their own, for :func:`box_limit_bps`: a 1000-byte header + ``objects``."""
    bucket = f"{BUCKET}-box"
    if not raw.exists(bucket):
        raw.mkdir(bucket)
    keys = [f"{bucket}/header"] + [f"{bucket}/p{i:03d}" for i in range(objects)]
    raw.pipe(keys[0], os.urandom(HEADER))
    for key in keys[1:]:
        raw.pipe(key, os.urandom(object_bytes))
    return DataSet(keys, None, HEADER + objects * (object_bytes - HEADER))


def tier_round_trip_s_per_mib(storage: str, nbytes: int = 64 * MiB) -> float:
    """CPU seconds per MiB of a block through a tier file: written and read back 1 MiB at a time (median of 3)."""
    piece = os.urandom(READ)
    times = []
    for _ in range(3):
        fd, path = tempfile.mkstemp(dir=storage, prefix="bench-plan-")
        try:
            started = time.process_time()
            for offset in range(0, nbytes, READ):
                os.pwrite(fd, piece, offset)
            for offset in range(0, nbytes, READ):
                os.pread(fd, READ, offset)
            times.append(time.process_time() - started)
        finally:
            os.close(fd)
            os.unlink(path)
    return statistics.median(times) / (nbytes / MiB)


def trk_parse_s_per_mib(shards: list[bytes]) -> float:
    """CPU seconds per MiB of the TRK parser over the shards in memory (median of 3, after a warm-up)."""
    from dask_prefetch.formats.kernels import compiled

    compiled()
    total = sum(len(s) for s in shards)
    times = []
    for run in range(4):
        started = time.process_time()
        for i, s in enumerate(shards):
            StreamlineChunk.concat(list(TrkReader(io.BytesIO(s), f"shard {i}")))
        if run:
            times.append(time.process_time() - started)
    return statistics.median(times) / (total / MiB)


def box_limit_bps(wan: dict, storage: str, data: DataSet, runs: int = 3) -> float:
    """Bytes/s the box moves through the proxy now: one stream of the engine, 32 GETs of 4 MiB in flight.

    The WAN would carry 32 x 40 MiB/s x 4 / (4 + 2) ~ 850 MiB/s; the client, the proxy and the server
    share the box's cores (with whatever else runs), so what arrives is the box's limit: the node's
    link of the model. Timed from ``open`` returning to the last byte read (median of ``runs``), the
    whole data in the tier, no compute.
    """
    times = []
    for _ in range(runs):
        fs = S3PrefetchFileSystem(**wan, skip_instance_cache=True)
        with fs.open(data.keys, header_bytes=HEADER, block_size=8 * MiB, part_size=4 * MiB, concurrency=32,
                     prefetch_storage=[(storage, data.logical / MiB + 8)]) as f:  # fmt: skip
            started = time.perf_counter()
            got = consume(f.read, f.size, 0.0)
            times.append(time.perf_counter() - started)
        if got != data.logical:
            raise RuntimeError(f"box limit: read {got} bytes, expected {data.logical}")
    return data.logical / statistics.median(times)


def task_overhead_s(client: Any, tasks: int = 40) -> float:
    """Seconds per no-op task of a bag on the cluster, one partition each (median of 2)."""
    import dask.bag as db

    times = []
    for _ in range(2):
        bag = db.from_sequence(range(tasks), npartitions=tasks).map_partitions(lambda part: [len(part)])
        started = time.perf_counter()
        bag.compute(scheduler=client)
        times.append(time.perf_counter() - started)
    threads = sum(client.nthreads().values())
    return statistics.median(times) * threads / tasks


# -- the jobs ------------------------------------------------------------------------------


def sleep_per_mib(s_per_mib: float, chunk: StreamlineChunk) -> int:
    """The cluster's compute: ``s_per_mib`` seconds per MiB of the chunk's records (points + counts)."""
    nbytes = chunk.points.nbytes + 4 * len(chunk.lengths)
    if s_per_mib:
        time.sleep(s_per_mib * nbytes / MiB)
    return nbytes


def settings(cfg: Config) -> dict:
    """``dask-prefetch.*`` configuration for ``cfg`` (the cluster's workers inherit it)."""
    return {"dask-prefetch.block-size": int(cfg.block_mib * MiB), "dask-prefetch.part-size": int(cfg.part_mib * MiB),
            "dask-prefetch.concurrency": cfg.concurrency}


def tier_mib(cfg: Config, data: DataSet | None) -> float:
    """The tier budget: as set, or 1 GiB per worker (cluster), or half the data (one stream)."""
    if cfg.tier_mib is not None:
        return cfg.tier_mib
    return 1024.0 if cfg.kind == "cluster" else 0.5 * cfg.shards * cfg.shard_mib  # as bench_prefetch's


def one_stream(cfg: Config, wan: dict, storage: str, data: DataSet, stats: list[dict]) -> float:
    """Seconds of one run of an io/balanced job: open, read every byte (computing as it arrives), close.

    The file's engine counters are appended to ``stats``.
    """
    compute = cfg.compute_s_per_mib if cfg.kind == "balanced" else 0.0
    started = time.perf_counter()
    fs = S3PrefetchFileSystem(**wan, skip_instance_cache=True)
    with fs.open(data.keys, header_bytes=HEADER, block_size=int(cfg.block_mib * MiB),
                 part_size=int(cfg.part_mib * MiB), concurrency=cfg.concurrency,
                 prefetch_storage=[(storage, tier_mib(cfg, data))]) as f:  # fmt: skip
        got = consume(f.read, f.size, compute)
        stats.append({k: v for k, v in vars(f.stats).items() if isinstance(v, (int, float))})
    elapsed = time.perf_counter() - started
    if got != data.logical:
        raise RuntimeError(f"{cfg.name}: read {got} bytes, expected {data.logical}")
    return elapsed


def open_stream(cfg: Config, wan: dict, storage: str, data: DataSet) -> Callable[[list[str]], None]:
    """One stream's "graph build": a fresh filesystem's ``fs.open`` of ``keys`` (pins every object), closed."""

    def build(keys: list[str]) -> None:
        fs = S3PrefetchFileSystem(**wan, skip_instance_cache=True)
        fs.open(keys, header_bytes=HEADER, block_size=int(cfg.block_mib * MiB),
                prefetch_storage=[(storage, tier_mib(cfg, data))]).close()  # fmt: skip

    return build


def build_tractogram(wan: dict) -> Callable[[list[str]], None]:
    """A cluster job's graph build: ``read_tractogram(keys)`` with a fresh S3 client and listing."""

    def build(keys: list[str]) -> None:
        S3PrefetchFileSystem.clear_instance_cache()
        read_tractogram([f"s3://{k}" for k in keys], storage_options=wan)

    return build


def graph_constants(build: Callable[[list[str]], None], keys: list[str], counted: int, latency: float,
                    runs: int = 3) -> tuple[float, float]:  # fmt: skip
    """``(graph_s_per_shard, fixed seconds)`` of a build, timed alone on all ``keys`` and on the first two.

    ``counted``: shards the model counts among ``keys`` (all of them for one stream, the global
    header aside for a cluster job). The slope between the two is the cost per shard; what the
    smaller build takes beyond that and its two latencies (listing, header) is fixed (the client made).
    """
    def seconds(ks: list[str]) -> float:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            build(ks)
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    few = counted - len(keys) + 2
    t_all, t_few = seconds(keys), seconds(keys[:2])
    per_shard = max(0.0, (t_all - t_few) / (counted - few))
    return per_shard, max(0.0, t_few - 2 * latency - few * per_shard)


def submit_gather_s(client: Any, runs: int = 3) -> float:
    """Seconds of a one-task no-op job on the cluster: submission, the task, the result back (median)."""
    import dask.bag as db

    times = []
    for _ in range(runs):
        bag = db.from_sequence([0], npartitions=1).map_partitions(lambda part: [len(part)])
        started = time.perf_counter()
        bag.compute(scheduler=client)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@contextlib.contextmanager
def cluster(cfg: Config, wan: dict, storage: str) -> Iterator[Any]:
    """A client of a fresh ``LocalCluster`` (``cfg.workers`` x 1 thread) with both plugins, warmed up."""
    from distributed import Client, LocalCluster

    import dask_prefetch

    with dask.config.set(settings(cfg)), LocalCluster(
        n_workers=cfg.workers, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=logging.ERROR,
    ) as lc, Client(lc, set_as_default=False) as client:  # fmt: skip
        client.register_plugin(dask_prefetch.PrefetchSchedulerPlugin())
        worker_plugin = dask_prefetch.PrefetchWorkerPlugin(prefetch_storage=[(storage, tier_mib(cfg, None))])
        client.register_plugin(worker_plugin)
        client.run(warm_up, wan)
        yield client


def cluster_job(cfg: Config, wan: dict, storage: str, data: DataSet) -> tuple[float, dict, list[dict]]:
    """One cluster run on a fresh cluster (not timed): seconds of the graph build + compute, the no-op
    task overhead and one-task job (``task``, ``job``), and each worker's timeline (bench_cluster's:
    first start, first task, later tasks, gaps)."""
    with cluster(cfg, wan, storage) as client:
        overhead = {"task": task_overhead_s(client), "job": submit_gather_s(client)}
        # The client's build gets a fresh S3 client and listing; the workers' tasks reuse the S3 client
        # warm_up made on each (their filesystem instance, as in a session), as bench_cluster's do.
        S3PrefetchFileSystem.clear_instance_cache()
        with task_stream(client) as stream:
            started, submitted = time.perf_counter(), time.time()
            tg = read_tractogram([f"s3://{k}" for k in data.keys], storage_options=wan)
            got = sum(tg.map_chunks(functools.partial(sleep_per_mib, cfg.compute_s_per_mib)).compute(scheduler=client))
            elapsed = time.perf_counter() - started
        lines = timeline(stream.data, submitted)
    expected = data.logical - HEADER
    if got != expected:
        raise RuntimeError(f"{cfg.name}: {got} record bytes, expected {expected}")
    return elapsed, overhead, lines


# -- the model's inputs for one run ---------------------------------------------------------


def plan_inputs(cfg: Config, link: Any, sizes: tuple[int, ...], nic_bps: float, parse: float,
                overhead: float, graph: float, job: float, data: DataSet) -> PlanInputs:  # fmt: skip
    """:class:`PlanInputs` for exactly this run: measured link, listed sizes, the settings as set."""
    common = dict(shard_sizes=sizes, job_overhead_s=job, header_bytes=HEADER, latency_s=link.latency_s,
                  bandwidth_bps=link.bandwidth_bps,
                  parse_s_per_mib=parse, graph_s_per_shard=graph, block_bytes=int(cfg.block_mib * MiB),
                  part_bytes=int(cfg.part_mib * MiB), concurrency=cfg.concurrency,
                  tier_bytes=int(tier_mib(cfg, data) * MiB))  # fmt: skip
    if cfg.kind == "cluster":
        return PlanInputs(**common, workers=cfg.workers, threads=1, workers_per_node=cfg.workers, nic_bps=nic_bps,
                          compute_s_per_mib=cfg.compute_s_per_mib, task_overhead_s=overhead, plugins=True)
    compute = cfg.compute_s_per_mib if cfg.kind == "balanced" else 0.0
    return PlanInputs(**common, workers=1, threads=1, nic_bps=nic_bps, npartitions=1, plugins=False,
                      compute_s_per_mib=compute, compute_streamed=True, task_overhead_s=0.0)


def with_balanced_compute(cfg: Config, bandwidth_mib: float) -> Config:
    """A balanced configuration computes for as long as one connection takes to move each MiB."""
    return dataclasses.replace(cfg, compute_s_per_mib=1 / bandwidth_mib) if cfg.kind == "balanced" else cfg


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("distributed", "distributed.core", "distributed.scheduler", "distributed.worker", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.ERROR)
    only = set(filter(None, args.only.split(",")))
    configs = [with_balanced_compute(c, args.bandwidth_mib) for c in CONFIGS if not only or c.name in only]
    began = time.perf_counter()
    print(f"{len(configs)} configurations; WAN {args.latency * 1e3:g} ms, {args.bandwidth_mib:g} MiB/s a "
          f"connection; {os.cpu_count()} CPUs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows: list[dict] = []
    server = S3rverServer() if args.server == "s3rver" else LocalS3Server()
    with server, WanProxy(server.endpoint_url, args.latency, args.bandwidth_mib * MiB) as proxy:
        direct = server.storage_options()
        wan = {**direct, "endpoint_url": proxy.endpoint_url}
        raw = s3fs.S3FileSystem(**direct, skip_instance_cache=True)
        box = upload_box(raw)
        data, measured = None, {}
        for cfg in configs:
            if data is None or measured.get("key") != cfg.data_key:
                data = upload(raw, cfg)
                measured = measure_data(cfg, wan, args, data)
            rows.append(run_config(cfg, wan, args, data, measured, box))
    report = summarise(rows)
    report.update(settings=vars(args), machine=bench_tractogram.machine(), wall_seconds=time.perf_counter() - began)
    write_json(args.json, report)
    return report


def measure_data(cfg: Config, wan: dict, args: argparse.Namespace, data: DataSet) -> dict:
    """Per data set: the listing, the probe, the readers' CPU per MiB."""
    listing = list_objects([f"s3://{BUCKET}/*"], {**wan, "skip_instance_cache": True})
    listed = dict(zip(listing.paths, listing.shard_sizes))  # the listing sorts by name; the job reads in key order
    if listing.header_object is not None:
        listed[data.keys[0]] = listing.header_object
    sizes = tuple(listed[k] for k in data.keys)
    # One stream reads the global header as its first "shard"; a cluster's tasks read the shards only.
    sizes = sizes[1:] if cfg.kind == "cluster" else sizes
    largest = max(range(len(listing.shard_sizes)), key=listing.shard_sizes.__getitem__)
    link = probe(listing.fs, listing.paths[largest], gets=5)
    round_trip = tier_round_trip_s_per_mib(args.storage)
    parse = round_trip + (trk_parse_s_per_mib(data.shards) if data.shards else 0.0)
    m = {"key": cfg.data_key, "sizes": sizes, "link": link, 
         "parse_s_per_mib": parse, "tier_round_trip_s_per_mib": round_trip}
    print(f"\ndata {cfg.data_key}: {len(sizes)} shards read, {data.logical / MiB:.1f} MiB; probed "
          f"{link.latency_s * 1e3:.1f} ms, {link.bandwidth_bps / MiB:.1f} MiB/s per connection; parse "
          f"{parse * 1e3:.2f} ms/MiB (tier round trip {round_trip * 1e3:.2f})",
          flush=True)
    return m


def run_config(cfg: Config, wan: dict, args: argparse.Namespace, data: DataSet, m: dict, box: DataSet) -> dict:
    """Measure the box's limit and the graph constant, run the job ``repeat`` times, predict it, print one row."""
    load_before = os.getloadavg()
    nic = box_limit_bps(wan, args.storage, box)
    latency = m["link"].latency_s
    times, overheads, stats = [], [], []
    with dask.config.set(settings(cfg)):
        if cfg.kind == "cluster":
            graph, fixed = graph_constants(build_tractogram(wan), data.keys, len(data.keys) - 1, latency)
            for _ in range(args.repeat):
                elapsed, overhead, lines = cluster_job(cfg, wan, args.storage, data)
                stats.append({"timeline": lines})
                times.append(elapsed)
                overheads.append(overhead)
        else:
            build = open_stream(cfg, wan, args.storage, data)
            graph, fixed = graph_constants(build, data.keys, len(data.keys), latency)
            times = [one_stream(cfg, wan, args.storage, data, stats) for _ in range(args.repeat)]
    task = statistics.median(o["task"] for o in overheads) if overheads else 0.0
    # A cluster job's fixed cost: the build's, plus submitting and gathering (a one-task job less its task).
    job = fixed + (max(0.0, statistics.median(o["job"] for o in overheads) - task) if overheads else 0.0)
    inputs = plan_inputs(cfg, m["link"], m["sizes"], nic, m["parse_s_per_mib"], task, graph, job, data)
    p = predict(inputs)
    measured = statistics.median(times)
    ratio = p.wall_s / measured
    row = {"config": dataclasses.asdict(cfg), "name": cfg.name, "predicted_s": p.wall_s, "measured_s": measured,
           "runs_s": times, "ratio": ratio, "pass": abs(ratio - 1) <= TOLERANCE, "bottleneck": p.bottleneck,
           "breakdown": p.breakdown, "stream_gets": p.stream_gets, "stream_limit": p.stream_limit,
           "inputs": {k: v for k, v in dataclasses.asdict(inputs).items() if k != "shard_sizes"},
           "shard_sizes": list(inputs.shard_sizes), "box_limit_bps": nic, "graph_s_per_shard": graph,
           "task_overhead_s": task, "job_overhead_s": job,
           "load_before": load_before, "load_after": os.getloadavg(), "engine_stats": stats}  # fmt: skip
    print(f"{cfg.name:<24} predicted {p.wall_s:6.2f} s  measured {measured:6.2f} s (runs "
          f"{', '.join(f'{t:.2f}' for t in times)})  ratio {ratio:.2f}  {'PASS' if row['pass'] else 'MISS'}  "
          f"[{p.bottleneck}; {p.stream_gets} GETs by {p.stream_limit}; graph {graph * 1e3:.1f} ms/shard"
          f" + {job * 1e3:.0f} ms{f', task {task * 1e3:.1f} ms' if overheads else ''}; load {load_before[0]:.2f}->"
          f"{row['load_after'][0]:.2f}]", flush=True)
    if stats and cfg.kind == "cluster":
        for w, line in enumerate(stats[len(stats) // 2]["timeline"]):
            print(f"  worker {w + 1} (run {len(stats) // 2 + 1}): first start {line['first_start']:.3f} s, first task "
                  f"{line['first_seconds']:.3f} s, later tasks {line['later_median_seconds']:.3f} s (median), "
                  f"{line['tasks']} tasks, gaps {line['gaps_sum']:.3f} s")
    elif stats:
        print(f"  engine: peak in flight {[s.get('peak_in_flight') for s in stats]}, read stalls "
              f"{[round(s.get('stall_seconds', 0), 2) for s in stats]} s, GETs {[s.get('requests') for s in stats]}")
    return row


def summarise(rows: list[dict]) -> dict:
    print(f"\n{'config':<24} {'predicted s':>11} {'measured s':>10} {'ratio':>6}  verdict  bottleneck")
    for r in rows:
        print(f"{r['name']:<24} {r['predicted_s']:>11.2f} {r['measured_s']:>10.2f} {r['ratio']:>6.2f}  "
              f"{'PASS' if r['pass'] else 'MISS':<7}  {r['bottleneck']}")
    passed = sum(r["pass"] for r in rows)
    print(f"\n{passed}/{len(rows)} within +-{TOLERANCE:.0%}; load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return {"rows": rows, "passed": passed, "tolerance": TOLERANCE}


if __name__ == "__main__":
    main()
