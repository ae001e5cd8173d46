"""``dask-prefetch plan``: list the objects, probe the link with a few ranged GETs, print the sizing model's prediction.

The model is :mod:`dask_prefetch.sizing` (pure); this module only gathers its inputs (one listing,
a few GETs through the package's range sources) and prints its answer.
"""

from __future__ import annotations

import importlib
import json
import math
import statistics
import time
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TextIO

import click

from ..sizing import BOTTLENECKS, GiB, MiB, Plan, PlanInputs, Recommendation, predict, recommend

#: The model's own defaults (what the CLI's options default to, so the two never disagree).
MODEL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PlanInputs)}

#: A first object this small in front of others is a global header (e.g. TRK's 1000 bytes), not a shard.
GLOBAL_HEADER_MAX = 64 * 1024
PROBE_BYTES = 8 * MiB
#: Bytes of each latency GET: small, but not one (s3rver answers ``Range: bytes=0-0`` with the whole object).
LATENCY_BYTES = 1024


class Concurrency(click.ParamType):
    """``auto`` or a count of GETs in flight (at least 1)."""

    name = "auto|N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        try:
            number = int(str(value))
        except ValueError:
            self.fail(f"{value!r} is neither 'auto' nor a whole number.", param, ctx)
        if number < 1:
            self.fail(f"{value!r} must be 'auto' or at least 1.", param, ctx)
        return number


class JsonObject(click.ParamType):
    """A JSON object (``--storage-options '{"anon": true}'``)."""

    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except ValueError as e:
            self.fail(f"{value!r} is not JSON: {e}", param, ctx)
        if not isinstance(parsed, dict):
            self.fail(f"{value!r} is not a JSON object.", param, ctx)
        return parsed


@dataclass(frozen=True)
class Listing:
    """What one listing said: the shards' sizes, a global header in front of them, where from."""

    shard_sizes: tuple[int, ...]
    header_object: int | None  # bytes of a global header object in front (None: none)
    paths: tuple[str, ...]
    fs: Any


@dataclass(frozen=True)
class Probe:
    """One connection's first-byte latency and bandwidth, from a few ranged GETs of one object."""

    latency_s: float
    bandwidth_bps: float
    gets: int
    nbytes: int  # bytes of the bandwidth GET


def list_objects(paths: Sequence[str], storage_options: dict | None) -> Listing:
    """Sizes from one listing of a glob (or a prefix, or the objects named), in name order.

    Raises
    ------
    FileNotFoundError
        If nothing matches.
    """
    from fsspec.core import url_to_fs

    fs, _ = url_to_fs(paths[0], **(storage_options or {}))
    entries: dict[str, dict] = {}
    for url in paths:
        path = fs._strip_protocol(url)
        if any(c in path for c in "*?["):
            entries.update(fs.glob(path, detail=True))
        else:
            info = fs.info(path)
            if info.get("type") == "directory":
                entries.update(fs.find(path, detail=True))
            else:
                entries[info["name"]] = info
    files = sorted((name, int(info["size"])) for name, info in entries.items() if info.get("type", "file") == "file")
    if not files:
        raise FileNotFoundError(f"no objects match {' '.join(paths)}")
    header = None
    small = [i for i, (_, size) in enumerate(files) if size <= GLOBAL_HEADER_MAX]
    # The global header sorts first ("a.trk" before "b.pt000"), or is the one small object wherever it
    # sorts ("t.trk" after "t.pt000").
    at = 0 if small[:1] == [0] else small[0] if len(small) == 1 else None
    if len(files) > 1 and at is not None:
        header = files[at][1]
        files = files[:at] + files[at + 1 :]
    return Listing(tuple(size for _, size in files), header, tuple(name for name, _ in files), fs)


def probe(fs: Any, path: str, gets: int = 3, nbytes: int = PROBE_BYTES) -> Probe:
    """Time ranged GETs of ``path`` through the package's range source for ``fs``.

    One GET first, untimed (it makes the client); then ``gets`` GETs of :data:`LATENCY_BYTES`, whose time to the
    answer is the first-byte latency (their median); then one GET of up to ``nbytes``, whose bytes
    over the time from its answer to its last byte are one connection's bandwidth.
    """
    from fsspec.asyn import sync

    from ..sources import ObjectVersion, source_for

    source = source_for(fs)
    info = sync(source.loop, source.info, path)
    etag, version_id = source.version(info)
    shard = ObjectVersion(path, int(info["size"]), etag, version_id)
    stop = max(1, min(shard.size, nbytes))
    small = max(1, min(shard.size, LATENCY_BYTES))

    async def one(start: int, end: int) -> tuple[float, float, int]:
        began = time.perf_counter()
        body = await source.open_range(shard, start, end)
        answered = time.perf_counter()
        got = 0
        try:
            while True:
                piece = await body.read(MiB)
                if not piece:
                    break
                got += len(piece)
        finally:
            body.close()
        return answered - began, time.perf_counter() - answered, got

    async def run() -> Probe:
        await one(0, small)  # the client is made here
        firsts = [(await one(0, small))[0] for _ in range(gets)]
        first, rest, got = await one(0, stop)
        latency = statistics.median(firsts)
        bandwidth = got / rest if rest > 0 else math.inf
        return Probe(latency, bandwidth, gets + 2, got)

    if shard.size == 0:
        raise ValueError(f"{path} is empty: nothing to probe (give --latency-ms and --bandwidth-mibs)")
    return sync(source.loop, run)


def _size(nbytes: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes:.0f} B"


def _mib(nbytes: float) -> str:
    return f"{nbytes / GiB:g} GiB" if nbytes >= GiB and nbytes % GiB == 0 else f"{nbytes / MiB:g} MiB"


def _seconds(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.3g} s" if s < 10 else f"{s:.1f} s"


def report(p: Plan, rec: Recommendation, link_source: str, out: TextIO | None = None, memory: int | None = None) -> None:
    """Print the prediction, where the time goes, the bottleneck and the recommended settings."""
    i = p.inputs
    echo = lambda line="": click.echo(line, file=out)  # noqa: E731
    shards = len(i.shard_sizes)
    echo(f"job: {shards} shards, {_size(i.data_bytes)} ({_size(i.data_bytes / shards)} each on average), "
         f"{p.inputs.partitions} partitions; {i.workers} workers x {i.threads} threads, "
         f"{i.workers_per_node} per node, NIC {i.nic_bps * 8 / 1e9:g} Gb/s per node")  # fmt: skip
    echo(f"link: {i.latency_s * 1e3:.3g} ms to first byte, {i.bandwidth_bps / MiB:.3g} MiB/s per connection "
         f"({link_source})")  # fmt: skip
    compute = f"{i.compute_s_per_mib:g} s/MiB compute" if i.compute_s_per_mib else "no compute (I/O only)"
    echo(f"settings: block-size {_mib(i.block_bytes)}, part-size {_mib(i.part_bytes)}, concurrency "
         f"{i.concurrency}, {_mib(i.tier_bytes)} of tiers per worker, next-task-bytes {_mib(i.next_task_bytes)}"
         f"{'' if i.plugins else ' (no plugins: per-file budgets, nothing opened ahead)'}; {compute}, "
         f"parse {i.parse_s_per_mib:g} s/MiB")  # fmt: skip
    echo()
    echo(f"predicted wall time: {_seconds(p.wall_s)} ({_size(p.throughput_bps)}/s)")
    echo(f"bottleneck: {p.bottleneck} ({BOTTLENECKS[p.bottleneck]})")
    echo()
    echo(f"  {'where the time goes':<24}{'seconds':>10}{'share':>8}")
    for name, seconds in p.breakdown.items():
        share = seconds / p.wall_s if p.wall_s > 0 else 0.0
        echo(f"  {name:<24}{seconds:>10.2f}{share:>7.0%}")
    echo()
    echo(f"per worker: link {_size(p.link_bps)}/s, {p.tasks_per_worker} partitions of {_size(p.partition_bytes)}, "
         f"{p.rounds} rounds; per stream: {p.stream_gets} GETs in flight (set by {p.stream_limit}), "
         f"{_size(p.get_bps)}/s per connection, {_size(p.head_bytes)} of each partition fetched ahead")  # fmt: skip
    within = f"within {_mib(memory)} of tiers per worker" if memory is not None else "within the tier budget"
    gain = rec.baseline.wall_s / rec.plan.wall_s if rec.plan.wall_s > 0 else 1.0
    echo(f"recommended ({within}): block-size {_mib(rec.block_bytes)}, part-size {_mib(rec.part_bytes)}, "
         f"concurrency {rec.concurrency}, {_mib(rec.tier_bytes)} of tiers per worker, "
         f"next-task-bytes {_mib(rec.next_task_bytes)} -> {_seconds(rec.plan.wall_s)} "
         f"({'as fast as the settings given, with no more memory' if gain < 1.005 else f'{gain:.2f}x faster'}; "
         f"bottleneck then: {rec.plan.bottleneck})")  # fmt: skip


def _record_bytes(chunk: Any) -> int:
    """What a measured job computes per partition: the bytes of its records (points and counts)."""
    return int(chunk.points.nbytes + 4 * len(chunk.lengths))


def load_function(spec: str) -> Callable[[Any], Any]:
    """The callable named ``"package.module:name"`` (``--function``).

    Raises
    ------
    click.UsageError
        If ``spec`` is not of that form, the module cannot be imported, or the name is not a callable in it.
    """
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise click.UsageError(f"--function wants package.module:name, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise click.UsageError(f"--function {spec}: cannot import {module_name!r}: {e}") from None
    func = getattr(module, name, None)
    if not callable(func):
        raise click.UsageError(f"--function {spec}: {module_name!r} has no callable {name!r}")
    return func


def time_function(paths: Sequence[str], storage_options: dict | None, func: Callable[[Any], Any]) -> Timing:
    """Thread-seconds per MiB of ``func`` on the first partition of ``read_tractogram(paths)``, as read.

    The partition is read first (not timed), ``func`` called once on it to warm up (imports, JIT),
    then timed on a second call: the compute the model needs (``compute_s_per_mib``), per MiB of
    the bytes the partition reads.
    """
    from ..tractography.tractogram import read_tractogram

    tractogram = read_tractogram(list(paths) if len(paths) > 1 else paths[0], storage_options=storage_options)
    (chunk,) = tractogram.to_chunks().to_delayed()[0].compute(scheduler="sync")
    func(chunk)
    started = time.perf_counter()
    func(chunk)
    seconds = time.perf_counter() - started
    nbytes = max(tractogram.partitions[0].nbytes, 1)
    return Timing(seconds / (nbytes / MiB), seconds, nbytes)


@dataclass(frozen=True)
class Timing:
    """The user's function timed on one partition: seconds per MiB, seconds, and the partition's bytes."""

    s_per_mib: float
    seconds: float
    nbytes: int


def measure_job(
    paths: Sequence[str], storage_options: dict | None, scheduler: Any = None, func: Callable[[Any], Any] | None = None
) -> float:
    """Seconds of the job the plan is for, run now: ``read_tractogram(paths).map_chunks(f)``.

    The graph build is timed with it, as the model counts it. ``scheduler``: a ``distributed``
    client or a scheduler name; None: the default client if one is running (``Client(...)`` in
    this process), else ``"threads"``. ``func``: the user's function (``--function``), or None:
    a no-op, to compare with a plan given ``--compute-s-per-mib 0``.
    """
    from ..tractography.tractogram import read_tractogram

    if scheduler is None:
        try:
            from distributed import default_client

            scheduler = default_client()
        except (ImportError, ValueError):  # no distributed, or no client running
            scheduler = "threads"
    started = time.perf_counter()
    tractogram = read_tractogram(list(paths) if len(paths) > 1 else paths[0], storage_options=storage_options)
    tractogram.map_chunks(func or _record_bytes).compute(scheduler=scheduler)
    return time.perf_counter() - started


def plot(inputs: PlanInputs, path: str) -> None:
    """Predicted wall time against the number of workers (1 to 4x the given), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = max(4, 4 * inputs.workers)
    counts = sorted({max(1, round(top * k / 64)) for k in range(1, 65)} | {inputs.workers})
    walls = [predict(inputs.replace(workers=w)).wall_s for w in counts]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(counts, walls, marker=".")
    here = predict(inputs)
    ax.plot([inputs.workers], [here.wall_s], "o", color="C3", label=f"{inputs.workers} workers: {_seconds(here.wall_s)}")
    ax.set_xlabel(f"workers ({inputs.threads} threads each, {inputs.workers_per_node} per node)")
    ax.set_ylabel("predicted wall time (s)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{len(inputs.shard_sizes)} shards, {_size(inputs.data_bytes)}", fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_plan(
    paths: Sequence[str],
    *,
    data_gb: float | None,
    shards: int | None,
    storage_options: dict | None,
    latency_ms: float | None,
    bandwidth_mibs: float | None,
    probe_gets: int,
    memory_mib: float | None,
    plot_path: str | None,
    out: TextIO | None = None,
    measure: bool = False,
    function: str | None = None,
    **model: Any,
) -> tuple[Plan, Recommendation]:
    """Gather the inputs (listing, probe or options), predict, print; returns the plan and recommendation.

    ``measure``: then run the job (:func:`measure_job`, on the running client if any) and print the
    measured wall time against the predicted one. ``function``: ``"package.module:name"``, the
    user's function, timed on the first partition for the compute (:func:`time_function`; it
    replaces ``compute_s_per_mib``) and run by ``measure``'s job.
    """
    if paths and (data_gb is not None or shards is not None):
        raise click.UsageError("give objects to list, or --data-gb and --shards (on paper), not both")
    if not paths and (data_gb is None or shards is None):
        raise click.UsageError("give objects to list (a URL or glob), or --data-gb and --shards to plan on paper")
    if not paths and (latency_ms is None or bandwidth_mibs is None):
        raise click.UsageError("on paper (no objects to probe), give --latency-ms and --bandwidth-mibs")
    if measure and not paths:
        raise click.UsageError("--measure runs the job: give the objects to read, not --data-gb and --shards")
    if function is not None and not paths:
        raise click.UsageError(
            "--function is timed on a partition: give the objects to read, not --data-gb and --shards"
        )
    func = load_function(function) if function is not None else None
    sources = []
    if paths:
        listing = list_objects(paths, storage_options)
        sizes = listing.shard_sizes
        if latency_ms is None or bandwidth_mibs is None:
            largest = max(range(len(sizes)), key=sizes.__getitem__)
            measured = probe(listing.fs, listing.paths[largest], gets=probe_gets)
            if latency_ms is None:
                latency_ms = measured.latency_s * 1e3
                sources.append(f"latency probed: median of {probe_gets} GETs")
            if bandwidth_mibs is None:
                bandwidth_mibs = measured.bandwidth_bps / MiB
                sources.append(f"bandwidth probed: one GET of {_size(measured.nbytes)}")
        if listing.header_object is not None:
            sources.append(f"a {listing.header_object}-byte global header in front, not a shard")
        if func is not None:
            timing = time_function(paths, storage_options, func)
            model["compute_s_per_mib"] = timing.s_per_mib
            sources.append(f"compute timed: {function} took {_seconds(timing.seconds)} on partition 0 "
                           f"({_size(timing.nbytes)})")  # fmt: skip
        inputs = PlanInputs(shard_sizes=sizes, latency_s=latency_ms / 1e3, bandwidth_bps=bandwidth_mibs * MiB, **model)
    else:
        inputs = PlanInputs.uniform(round(data_gb * 1e9), shards, latency_s=latency_ms / 1e3,
                                    bandwidth_bps=bandwidth_mibs * MiB, **model)  # fmt: skip
    given = [] if any("probed" in s for s in sources) else ["given"]
    p = predict(inputs)
    memory = round(memory_mib * MiB) if memory_mib is not None else None
    rec = recommend(inputs, memory)
    report(p, rec, "; ".join(given + sources), out, memory if memory is not None else inputs.tier_bytes)
    if plot_path:
        try:
            plot(inputs, plot_path)
        except ImportError:
            raise click.ClickException("--plot needs matplotlib: pip install 'dask-prefetch[plot]'") from None
        click.echo(f"wrote {plot_path}", file=out)
    if measure:
        seconds = measure_job(paths, storage_options, func=func)
        click.echo(f"measured wall time: {_seconds(seconds)} (predicted {_seconds(p.wall_s)}: "
                   f"{p.wall_s / seconds:.2f} x the measured)", file=out)  # fmt: skip
    return p, rec

