"""The sizing model: a job's wall time predicted from the store, the cluster and the settings, before it runs.

Pure: no I/O, no Dask, no store client. :class:`PlanInputs` describes the job (shards, the link,
the cluster, the compute, the settings); :func:`predict` gives a :class:`Plan` (the wall time,
where it goes, the bottleneck); :func:`recommend` searches the settings that minimise the time
within a memory budget. ``dask_prefetch.plan(...)`` is :func:`plan`; ``dask-prefetch plan`` prints it.

How the engine works, in the terms the model uses (units: bytes and seconds)
-----------------------------------------------------------------------------
*One GET.* A ranged GET of ``P`` bytes costs the first-byte latency ``L`` plus ``P / b`` (``b``: one
connection's bandwidth), so a connection doing GETs back to back moves
``r = b * P / (P + L * b)`` bytes per second: the *per-GET efficiency* ``P / (P + L b)`` of ``b``.

*One stream* (the open file of one running task: its partition's shards end to end) keeps
``k = min(concurrency, tier GETs, parts)`` GETs in flight:

* ``concurrency``: a fixed number, or ``auto``: from 16, a quarter more at a time while that raises
  the throughput, up to ``max-concurrency`` (64). Each step takes about two GET durations (the
  round after a change is not judged), during which the stream runs at ``limit / level`` of its
  rate: climbing to a level costs that *ramp*. The model takes the level, from the start up to the
  stream's other limits, whose reading time with its ramp is the shortest (more GETs than fill the
  link bring nothing and cost a longer climb; a short stream ends before a long climb pays).
* tier GETs: space is reserved a block at a time before its GETs start, and a stream holds at most
  its fair share ``F`` of the worker's tiers (one budget per worker with the plugins: the budget
  less what files opened ahead hold, split among the running streams; without them each file has
  the whole budget): ``max(1, F // block) * ceil(block / P)`` GETs (a tier of ``B`` bytes holds at
  most ``B / P`` GETs' worth).
* parts: a partition of 8 MiB read in 8 MiB parts is one GET, whatever the concurrency.

``x`` bytes in ``n`` parts, ``k`` at a time, take ``n / k`` waves of ``L + x / n / b`` seconds,
never less than the longest GET (``L + P / b``, or a whole shard shorter than a part: a 5.7 MiB
shard in 4 MiB parts ends with its 4 MiB GET, not at the mean), and never less than ``x / link``
(:func:`stream_seconds`).

*One worker* shares one link, ``link = min(NIC / workers per node, pool * r)`` (the connection
pool caps the GETs of all its streams). Its ``T`` threads each run tasks one after the other; a
task reads its partition of ``S`` bytes (parsing as bytes arrive: ``S * parse``), then computes on
it (``S * compute``):

* read phase ``= max(wait + stream_seconds(S - H), S * parse)``, where ``H`` is the head
  prefetched before the task started (cross-task prefetch, with both plugins: up to
  ``next-task-bytes`` of each of the next queued partitions, at least one block; as the worker's
  ``NextTaskPrefetcher``, as many partitions as it takes for their heads to add up to
  ``next-task-bytes`` per thread, at most half the budget and 4 partitions per thread: ``a`` per
  thread). The ``a`` heads of a thread arrive side by side while its tasks run, so each cycle must
  cover ``fetch(H) / a`` with its CPU time: ``wait = max(0, fetch(H) / a - S * (compute + parse))``;
* a *streamed* compute (``compute_streamed``: on the bytes as they arrive) joins the parse in the
  read phase, ``S * (parse + compute)``, and nothing is left after the last byte; the next head is
  then fetched during the whole previous cycle: ``t = max(max(0, fetch(H) / a - t) + rest, CPU)``,
  solved for the steady state;
* cycle ``t = read phase + S * compute + task overhead`` (no ``S * compute`` when streamed);
* at most ``readers = budget // block`` streams of a worker hold a block at once (with the
  plugins' one budget; a shard shorter than a block is one shorter block): below ``T``, reads take
  turns, ``first read + (ceil(tasks / readers) - 1) * read phase + S * compute``, and nothing is
  opened ahead;
* the first task of each thread has no head, and all ``T`` start at once on ``link / T`` each:
  its read phase is ``max(stream_seconds(S) on link / T, L + S * parse)``.

A worker then takes the longer of its two paths:

* threads: ``first cycle + (rounds - 1) * t``, ``rounds = ceil(tasks per worker / T)``;
* link: ``L + bytes per worker / link + S * compute`` (the link idles for one latency at the start,
  and the last partition computes after its last byte).

The job: ``graph build + the busiest worker's time``, where the graph build is one listing
(``ceil(shards / 1000)`` requests of ``L``), the global header (``L``), ``graph_s_per_shard``
for each shard and ``job_overhead_s`` (the store client made, the graph submitted, the results
gathered). Partitions are balanced by count (``ceil(partitions / workers)`` for the busiest
worker) and the model uses the mean partition size.

Breakdown (:class:`Plan`): ``compute`` (parse included) and ``overhead`` are the mean thread's
share, ``transfer`` the waits for bytes beyond them (or the link's time beyond them when the link is
the bound), ``start_stall`` what the first tasks wait more than the later ones, ``tail`` the busiest
thread's last round past the mean (or the last compute after the link ends), ``graph`` the build:
they add up to ``wall_s``.

Where the constants come from
-----------------------------
The defaults of :class:`PlanInputs` that are not settings were measured, not fitted: by
``benchmarks/bench_plan.py`` (2 cores shared with other work, load ~1.3-4; each constant timed
apart from the jobs it is used to predict) unless said otherwise. The validation is in
benchmarks/RESULTS.md (2026-12-03: 10 configurations, predicted against measured).

* ``parse_s_per_mib = 0.0011``: the TRK parser over the shards in memory, CPU seconds per MiB
  (0.58-0.6 ms), plus a block's round trip through a tier file on /dev/shm, written and read back
  1 MiB at a time (0.45-0.5 ms). Raw bytes (no parser): the round trip alone, ~0.0005.
* ``task_overhead_s = 0.007``: 40 no-op tasks of a bag on a fresh ``LocalCluster``, one thread a
  worker: 6.2 ms a task (1 worker) to 8.9-9.9 ms (2 workers on 2 cores).
* ``job_overhead_s = 0.1``: a graph build on one shard, less its two latencies and one shard's
  cost (the S3 client made: 20-50 ms), plus a one-task no-op job's submission and gathering on the
  cluster (~50 ms): 95-153 ms in all for the cluster jobs; 0-40 ms for one stream (no cluster).
* ``graph_s_per_shard = 0.0003``: the slope of the build's time with the shards, the listing's
  per-key cost included (the model's listing term is only its pages' latencies). bench_graph.py on
  s3rver, after the inferred layout read a sample of the shard headers (RESULTS, "graph build from a
  sample of shard headers"): 0.164 / 0.585 s for 464 / 1856 shards inferred, 0.177 / 0.628 s stated,
  i.e. 0.30-0.33 ms a shard; before that sample it read every shard's header (1.056 s for 464, 2.3
  ms a shard). bench_plan's builds of 8 and 16 shards over the WAN give 0-5 ms (too few shards to
  separate well from the fixed part).
* ``pool_connections = 64``, ``start_concurrency = 16``, ``max_concurrency = 64``: the engine's settings.
* Latency, bandwidth and ``nic_bps`` are the job's own: ``dask-prefetch plan`` probes the first two;
  bench_plan takes the node's link to be what the box moves with 32 GETs in flight (its cores, not
  the WAN, set that rate on a 2-core box).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

MiB = 2**20
GiB = 2**30
#: Objects per S3 listing page (ListObjectsV2).
LIST_PAGE = 1000

#: What a :class:`Plan`'s :attr:`~Plan.bottleneck` can say.
BOTTLENECKS = {
    "compute": "the user's function, per thread",
    "parse": "parsing the bytes into streamlines",
    "nic": "the network card (NIC) of each node",
    "pool": "the S3 connection pool (GETs in flight per worker)",
    "concurrency": "GETs in flight per stream (concurrency)",
    "tier": "tier space: the budget holds few GETs' worth per stream",
    "parts": "few parts per partition: small partitions read as one or two GETs",
    "start": "the first tasks waiting for their first partitions",
    "tail": "the last round of tasks (fewer partitions than threads in it)",
    "graph": "building the graph (listing and per-shard cost)",
}


@dataclass(frozen=True)
class PlanInputs:
    """A job and its settings, in bytes and seconds.

    Parameters
    ----------
    shard_sizes
        Bytes of each shard (object), in order; :meth:`uniform` makes equal ones.
    header_bytes
        Bytes skipped at the start of every shard after the first (a TRK header: 1000; 0 for bare
        bodies or complete files).
    latency_s
        First-byte latency of one GET (S3 Standard: tens of ms to ~100+ ms).
    bandwidth_bps
        One connection's bandwidth, bytes/s (S3: ~85-90 MB/s); ``math.inf`` for none.
    nic_bps
        Each node's network card, bytes/s (10 Gb/s = 1.25e9); ``math.inf`` for none.
    workers, threads, workers_per_node
        Dask workers, threads per worker, workers sharing one node's NIC.
    compute_s_per_mib
        The user's function, thread-seconds per MiB of the partition (0: I/O only).
    compute_streamed
        The function runs on the bytes as they arrive (``map_chunks(f, per="chunk")``, or a reader
        computing after each read), overlapping the partition's transfer as parsing does; False:
        once per partition, after its last byte (``per="partition"``).
    parse_s_per_mib
        Parsing (and the tier round trip), thread-seconds per MiB (TRK kernels and tier: ~0.0011).
    tier_bytes
        Tier budget of each worker (the plugins' one budget; without them, of each open file).
    block_bytes, part_bytes
        ``dask-prefetch.block-size`` and ``part-size`` (a part is capped at a block).
    concurrency
        GETs in flight per stream: an int, or ``"auto"`` (from ``start_concurrency`` up to
        ``max_concurrency``).
    max_concurrency, start_concurrency
        ``auto``'s ceiling (``dask-prefetch.max-concurrency``) and start (16).
    next_task_bytes
        ``dask-prefetch.next-task-bytes``: the head of each next partition prefetched before its
        task starts (with ``plugins``; 0: none).
    pool_connections
        The S3 connection pool of each worker (64, or ``max-concurrency`` if larger).
    npartitions
        Tasks reading the data (None: one per shard).
    graph_s_per_shard
        Graph-build seconds per shard beyond the listing.
    task_overhead_s
        Per-partition overhead beyond its GETs (scheduling, opening the stream).
    job_overhead_s
        Fixed seconds of a job beyond the listing's latencies and ``graph_s_per_shard``: the store
        client made for the build, the graph's submission until the first task starts, and the
        results gathered after the last one.
    plugins
        Both plugins registered (one tier budget per worker, cross-task prefetch); False: each
        task's file has its own budget and nothing is prefetched before a task starts.

    Raises
    ------
    ValueError
        Naming the field, for a count below 1, a negative or NaN number, an empty ``shard_sizes``,
        ``header_bytes`` larger than a shard, or a concurrency that is neither ``"auto"`` nor >= 1.
    """

    shard_sizes: tuple[int, ...]
    header_bytes: int = 0
    latency_s: float = 0.045
    bandwidth_bps: float = 87.5e6
    nic_bps: float = 1.25e9
    workers: int = 1
    threads: int = 1
    workers_per_node: int = 1
    compute_s_per_mib: float = 0.0
    compute_streamed: bool = False
    parse_s_per_mib: float = 0.0011
    tier_bytes: int = GiB
    block_bytes: int = 32 * MiB
    part_bytes: int = 8 * MiB
    concurrency: int | str = "auto"
    max_concurrency: int = 64
    start_concurrency: int = 16
    next_task_bytes: int = 64 * MiB
    pool_connections: int = 64
    npartitions: int | None = None
    graph_s_per_shard: float = 0.0003
    task_overhead_s: float = 0.007
    job_overhead_s: float = 0.1
    plugins: bool = True

    def __post_init__(self) -> None:
        if type(self.shard_sizes) is not tuple:
            object.__setattr__(self, "shard_sizes", tuple(int(s) for s in self.shard_sizes))
        if not self.shard_sizes:
            raise ValueError("shard_sizes: at least one shard is needed")
        if min(self.shard_sizes) < 0:
            raise ValueError("shard_sizes must be >= 0 bytes each")
        if self.header_bytes < 0 or (len(self.shard_sizes) > 1 and self.header_bytes > min(self.shard_sizes[1:])):
            raise ValueError(f"header_bytes must be >= 0 and at most every shard's size, got {self.header_bytes}")
        for name in ("workers", "threads", "workers_per_node", "block_bytes", "part_bytes", "tier_bytes",
                     "max_concurrency", "start_concurrency", "pool_connections"):  # fmt: skip
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an int >= 1, got {getattr(self, name)!r}")
        for name in ("latency_s", "bandwidth_bps", "nic_bps", "compute_s_per_mib", "parse_s_per_mib",
                     "graph_s_per_shard", "task_overhead_s", "job_overhead_s", "next_task_bytes"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("latency_s", "compute_s_per_mib", "parse_s_per_mib", "graph_s_per_shard", "task_overhead_s",
                     "job_overhead_s"):  # fmt: skip
            if math.isinf(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        if not self.bandwidth_bps > 0 or not self.nic_bps > 0:
            raise ValueError("bandwidth_bps and nic_bps must be > 0")
        for name in ("compute_streamed", "plugins"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.concurrency != "auto" and (not _is_int(self.concurrency) or self.concurrency < 1):
            raise ValueError(f"concurrency must be 'auto' or an int >= 1, got {self.concurrency!r}")
        if self.start_concurrency > self.max_concurrency:
            raise ValueError("start_concurrency must be <= max_concurrency")
        if self.npartitions is not None and (not _is_int(self.npartitions) or self.npartitions < 1):
            raise ValueError(f"npartitions must be None or an int >= 1, got {self.npartitions!r}")

    @classmethod
    def uniform(cls, data_bytes: float, shards: int, **kwargs: Any) -> "PlanInputs":
        """``shards`` equal shards holding ``data_bytes`` in all (the headers of the later ones on top)."""
        if not _is_int(shards) or shards < 1:
            raise ValueError(f"shards must be an int >= 1, got {shards!r}")
        header = kwargs.get("header_bytes", 0)
        size = math.ceil(data_bytes / shards)
        return cls(shard_sizes=(size,) + (size + header,) * (shards - 1), **kwargs)

    def replace(self, **changes: Any) -> "PlanInputs":
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    @property
    def data_bytes(self) -> int:
        """Bytes read: every shard, less the headers skipped."""
        return sum(self.shard_sizes) - self.header_bytes * (len(self.shard_sizes) - 1)

    @property
    def partitions(self) -> int:
        """Tasks reading the data (at most one per shard)."""
        return min(self.npartitions or len(self.shard_sizes), len(self.shard_sizes))


@dataclass(frozen=True)
class Plan:
    """The prediction for one :class:`PlanInputs`: wall time, where it goes, what bounds it.

    ``wall_s == graph_s + start_stall_s + compute_s + overhead_s + transfer_s + tail_s``.
    The other fields say how it was reached (per worker, per stream, per GET).
    """

    inputs: PlanInputs
    wall_s: float
    graph_s: float
    start_stall_s: float
    compute_s: float
    overhead_s: float
    transfer_s: float
    tail_s: float
    bottleneck: str
    link_bps: float  # one worker's link: min(NIC share, pool x per-GET rate)
    get_bps: float  # one connection doing GETs back to back: b * P / (P + L b)
    stream_gets: int  # GETs in flight per stream
    stream_limit: str  # what sets them: concurrency, tier, parts, pool
    partition_bytes: float
    head_bytes: float  # bytes of each partition prefetched before its task starts
    cycle_s: float  # one task after the first, per thread
    first_cycle_s: float
    rounds: int  # tasks of the busiest thread
    tasks_per_worker: int
    link_bound: bool
    details: dict = field(default_factory=dict, compare=False)

    @property
    def breakdown(self) -> dict[str, float]:
        """Where the wall time goes, in seconds (adds up to :attr:`wall_s`)."""
        return {
            "graph build": self.graph_s,
            "stall at task starts": self.start_stall_s,
            "compute (+ parse)": self.compute_s,
            "per-task overhead": self.overhead_s,
            "waiting for bytes": self.transfer_s,
            "tail": self.tail_s,
        }

    @property
    def throughput_bps(self) -> float:
        """Data bytes per second of wall time."""
        return self.inputs.data_bytes / self.wall_s if self.wall_s > 0 else math.inf

    def recommend(self, memory_bytes: int | None = None) -> "Recommendation":
        """:func:`recommend` for these inputs."""
        return recommend(self.inputs, memory_bytes)


@dataclass(frozen=True)
class Recommendation:
    """The settings :func:`recommend` found, and their plan."""

    block_bytes: int
    part_bytes: int
    concurrency: int | str
    tier_bytes: int
    next_task_bytes: int
    plan: Plan
    baseline: Plan  # the inputs as given

    @property
    def settings(self) -> dict[str, Any]:
        """As ``dask-prefetch.*`` configuration keys (sizes in bytes)."""
        return {
            "block-size": self.block_bytes,
            "part-size": self.part_bytes,
            "concurrency": self.concurrency,
            "storage budget per worker": self.tier_bytes,
            "next-task-bytes": self.next_task_bytes,
        }


def get_rate(latency_s: float, bandwidth_bps: float, part_bytes: float) -> float:
    """Bytes/s of one connection doing GETs of ``part_bytes`` back to back: ``P / (L + P / b)``."""
    if math.isinf(bandwidth_bps):
        return math.inf if latency_s == 0 else part_bytes / latency_s
    return part_bytes / (latency_s + part_bytes / bandwidth_bps)


@functools.lru_cache(maxsize=8)
def _lengths(shard_sizes: tuple[int, ...], header_bytes: int) -> dict[int, int]:
    """Bytes each shard adds to the stream (its header skipped, the first one's kept) -> how many shards."""
    return dict(Counter([shard_sizes[0]] + [s - header_bytes for s in shard_sizes[1:]]))


def _parts(length: int, block: int, part: int) -> int:
    """GETs one shard's ``length`` bytes take: blocks never straddle shards, parts never straddle blocks."""
    full, rest = divmod(length, block)
    return full * math.ceil(block / part) + math.ceil(rest / part)


def stream_seconds(
    x: float, parts: float, k: int, latency_s: float, bandwidth_bps: float, cap_bps: float, longest: float = 0.0
) -> float:
    """Seconds for ``x`` bytes in ``parts`` GETs, ``k`` at a time, at most ``cap_bps`` in all.

    ``max(parts / k', 1) * (L + x / parts / b)`` with ``k' = min(k, parts)``: waves of GETs in flight,
    each a latency plus one part's transfer; never less than its longest GET, ``L + longest / b``
    (parts of ``longest`` bytes and a short last one end with the long ones, not at the mean), nor
    than ``x / cap_bps``.
    """
    if x <= 0:
        return 0.0
    parts = max(parts, 1.0)
    waves = max(parts / max(1, min(k, math.ceil(parts))), 1.0)
    inf = math.isinf(bandwidth_bps)
    transfer = 0.0 if inf else x / parts / bandwidth_bps
    one_get = latency_s + (0.0 if inf else min(longest, x) / bandwidth_bps)
    return max(waves * (latency_s + transfer), one_get, 0.0 if math.isinf(cap_bps) else x / cap_bps)


@functools.lru_cache(maxsize=4096)
def _ramp_gets(start: int, target: int) -> float:
    """GET durations ``auto``'s climb from ``start`` to ``target`` costs: two a step, at ``limit / target`` of the rate."""
    limit, lost = start, 0.0
    while limit < target:
        lost += 2 * (1 - limit / target)
        limit = min(target, limit + max(1, limit // 4))
    return lost


def predict(inputs: PlanInputs) -> Plan:
    """The wall time of the job ``inputs`` describes, and where it goes (see the module's docstring).

    Raises
    ------
    ValueError
        If a block does not fit in the tier budget (the engine refuses to open the file then).
    """
    i = inputs
    block = i.block_bytes
    part = min(i.part_bytes, block)
    if block > i.tier_bytes:
        raise ValueError(f"blocks of {block} bytes do not fit in a tier budget of {i.tier_bytes} bytes")
    T, W = i.threads, i.workers
    L, b = i.latency_s, i.bandwidth_bps
    n_parts = len(i.shard_sizes)
    npart = i.partitions

    # Shards -> partitions: bytes and GETs of the mean partition.
    lengths = _lengths(i.shard_sizes, i.header_bytes)
    data = sum(n * length for length, n in lengths.items())
    gets = sum(n * _parts(length, block, part) for length, n in lengths.items())
    S = data / npart  # bytes of a partition
    parts = gets / npart  # GETs of a partition
    mean_part = data / gets if gets else part
    longest = min(part, max(lengths))  # the longest GET: a full part, or a whole shard shorter than one
    r = get_rate(L, b, mean_part)  # one connection, GETs back to back
    get_s = L + (0.0 if math.isinf(b) else mean_part / b)  # one GET's duration

    # One worker's link.
    nic = i.nic_bps / i.workers_per_node
    link = min(nic, i.pool_connections * r)

    # Tier space: heads opened ahead (capped), the running streams' fair share of the rest.
    head_cap = 0.0
    n_heads = 0
    # With one budget per worker, at most budget // block streams hold a block at once: a reader with
    # no room waits for another's, and files opened ahead give theirs back (so: no heads then).
    held_block = max(1, min(block, max(lengths)))  # a shard shorter than a block is one short block
    readers = min(T, i.tier_bytes // held_block) if i.plugins else T
    if i.plugins and i.next_task_bytes > 0 and S > 0 and readers == T:
        head = min(i.next_task_bytes, S)
        # As the worker's NextTaskPrefetcher: the next partitions in its queue, until their heads add up
        # to next-task-bytes per thread (half the budget at most), at most 4 per thread.
        wanted = min(i.next_task_bytes * T, i.tier_bytes // 2)
        n_heads = min(4 * T, max(1, math.ceil(wanted / head)))
        head_cap = n_heads * head
    share = (i.tier_bytes - head_cap) / T if i.plugins else i.tier_bytes
    blocks_held = max(1, math.floor(max(share, 0) / held_block))
    tier_gets = blocks_held * math.ceil(held_block / part)

    # GETs in flight per stream.
    def in_flight(pool: int) -> tuple[int, str, list[tuple[int, float]]]:
        """The most GETs one stream may keep in flight, what sets that, and the levels it may run at.

        The levels are ``(GETs, ramp seconds)``: the one limit for a fixed concurrency; for ``auto``,
        every level from its start up to the limit, each with the cost of climbing there.
        """
        conc = i.max_concurrency if i.concurrency == "auto" else int(i.concurrency)
        limits = {"concurrency": conc, "tier": tier_gets, "parts": max(1, math.ceil(parts)), "pool": pool}
        why = min(limits, key=lambda name: (limits[name], name != "parts"))
        k = limits[why]
        if i.concurrency == "auto" and k > i.start_concurrency:
            return k, why, [(m, _ramp_gets(i.start_concurrency, m) * get_s) for m in range(i.start_concurrency, k + 1)]
        return k, why, [(k, 0.0)]

    k, why, options = in_flight(i.pool_connections)
    _, _, options_first = in_flight(max(1, i.pool_connections // T))  # all threads start at once on one pool

    # Heads: the next partitions' first bytes, fetched while this thread's previous tasks run.
    compute_task = S / MiB * i.compute_s_per_mib
    parse_task = S / MiB * i.parse_s_per_mib
    # CPU time overlapping a task's transfer (parsing, and a streamed compute), and after its last byte.
    cpu_in_read = parse_task + (compute_task if i.compute_streamed else 0.0)
    compute_after = 0.0 if i.compute_streamed else compute_task
    hold = head_bytes = head_wait = head_cycle = 0.0
    if n_heads:
        hold = min(S, max(block, math.floor(i.next_task_bytes / block) * block))  # at least one block
        ahead = max(1.0, n_heads / T)  # partitions opened ahead per thread, their heads fetched side by side
        head_parts = max(1.0, parts * hold / S)
        fetch = stream_seconds(hold, head_parts, min(k, math.ceil(head_parts)), L, b, link, longest)
        head_cycle = fetch / ahead  # a thread's heads arrive at most this often
        head_wait = max(0.0, head_cycle - (compute_task + parse_task))  # what a cycle's CPU time does not cover
        head_bytes = hold * min(1.0, ahead * (compute_task + parse_task) / fetch) if fetch > 0 else hold

    def read_phase(x: float, options: list[tuple[int, float]], cap: float, first: bool, wait: float = 0.0):
        """Seconds a task reads ``x`` bytes not yet local (parsing as they arrive); the waves' time; the GETs."""
        best = None
        for m, ramp in options:
            waves = stream_seconds(x, parts * x / S if S else 0, m, L, b, math.inf, longest)
            waves += ramp if x > 0 else 0.0
            transfer = max(waves, x / cap if math.isfinite(cap) else 0.0)
            if best is None or transfer < best[0]:
                best = (transfer, waves, m)
        transfer, waves, m = best
        cpu = (L if first and x > 0 else 0.0) + cpu_in_read
        if i.compute_streamed and head_cycle and not first:
            # The next head is fetched during the whole previous cycle (its compute runs while it reads):
            # t = max(max(0, head_cycle - t) + transfer, cpu), solved for the steady state.
            t = max(transfer, cpu)
            return (t if t >= head_cycle else max((head_cycle + transfer) / 2, cpu)), waves, m
        return max(wait + transfer, cpu), waves, m

    read, waves, gets = read_phase(S - hold, options, link, False, head_wait)
    first_read, _, _ = read_phase(S, options_first, link / T, True)
    if gets < k:
        why = "concurrency"  # auto settles below the limit: more GETs would not pay
    cycle = read + compute_after + i.task_overhead_s
    first_cycle = first_read + compute_after + i.task_overhead_s

    tasks_w = math.ceil(npart / W)
    rounds = math.ceil(tasks_w / T)
    exact = npart / W / T  # tasks of the mean thread
    thread_path = first_cycle + (rounds - 1) * cycle
    turns_path = first_read + (math.ceil(tasks_w / readers) - 1) * read + compute_after
    if readers < T:  # reads take turns for tier space: ``readers`` at a time
        thread_path = max(thread_path, turns_path)
    link_s = tasks_w * S / link if math.isfinite(link) else 0.0
    link_path = (L if S > 0 else 0.0) + link_s + compute_after
    worker = max(thread_path, link_path)
    link_bound = link_path > thread_path
    graph = i.job_overhead_s + (math.ceil(n_parts / LIST_PAGE) + 1) * L + n_parts * i.graph_s_per_shard

    # Breakdown: adds up to graph + worker.
    compute = exact * (compute_task + parse_task)
    overhead = exact * i.task_overhead_s
    if link_bound:
        start = L if S > 0 else 0.0
        steady = max(link_s, exact * cycle)
    else:
        start = max(0.0, first_cycle - cycle)
        steady = exact * cycle
    steady = min(max(steady, compute + overhead), worker - start)
    transfer = max(0.0, steady - compute - overhead)
    tail = max(0.0, worker - start - compute - overhead - transfer)
    wall = graph + worker

    # The bottleneck: what the slower path spends most of its time on.
    link_neck = "nic" if nic <= i.pool_connections * r else "pool"
    if link_bound:
        neck = link_neck
    else:
        wait = read - cpu_in_read  # a read longer than its parse (and streamed compute) waits for bytes
        stream_neck = link_neck if waves * link < S - hold else why  # one stream fills the link
        costs = {"compute": compute_task, "parse": parse_task, stream_neck: wait}
        neck = max(costs, key=costs.__getitem__)
        others = max(compute, transfer)
        if start > others and start >= tail:
            neck = "start"
        elif tail > others and tail > start:
            neck = "tail"
        if readers < T and turns_path > first_cycle + (rounds - 1) * cycle:
            neck = "tier"
    if graph > worker:
        neck = "graph"
    return Plan(
        inputs=i,
        wall_s=wall,
        graph_s=graph,
        start_stall_s=start,
        compute_s=compute,
        overhead_s=overhead,
        transfer_s=transfer,
        tail_s=tail,
        bottleneck=neck,
        link_bps=link,
        get_bps=r,
        stream_gets=gets,
        stream_limit=why,
        partition_bytes=S,
        head_bytes=head_bytes,
        cycle_s=cycle,
        first_cycle_s=first_cycle,
        rounds=rounds,
        tasks_per_worker=tasks_w,
        link_bound=link_bound,
        details={"thread_path_s": thread_path, "link_path_s": link_path, "ramp_s": options[-1][1], "heads": n_heads,
                 "tier_gets": tier_gets, "parts_per_partition": parts,
                 "readers": readers},  # fmt: skip
    )


#: The grid :func:`recommend` searches (sizes in MiB).
BLOCK_MIB = (8, 16, 32, 64, 128)
PART_MIB = (2, 4, 8, 16)
CONCURRENCY: tuple[int | str, ...] = ("auto", 8, 16, 32, 64)
NEXT_TASK_MIB = (0, 16, 32, 64, 128, 256)
#: A setting using less memory is preferred while it is within this share of the fastest.
NEAR = 0.01


def recommend(inputs: PlanInputs, memory_bytes: int | None = None) -> Recommendation:
    """The block size, part size, GETs in flight, tier budget and next-task bytes that minimise the wall time.

    Parameters
    ----------
    inputs
        The job; its other fields (cluster, link, compute) stay as they are.
    memory_bytes
        The most tier space a worker may use (None: ``inputs.tier_bytes``). Every candidate's tier
        budget is at most this, and its blocks fit in it.

    Returns
    -------
    Recommendation
        Of the candidates within :data:`NEAR` of the fastest (and no slower than ``inputs`` when
        they fit in ``memory_bytes``), the one using the least tier space,
        then the fewest next-task bytes, then the fewest GETs in flight, then the inputs' own settings.

    Raises
    ------
    ValueError
        If not even the smallest block fits in ``memory_bytes``.
    """
    memory = inputs.tier_bytes if memory_bytes is None else int(memory_bytes)
    if memory < 1:
        raise ValueError(f"memory_bytes must be >= 1, got {memory_bytes!r}")
    baseline = predict(inputs) if inputs.block_bytes <= inputs.tier_bytes else None
    tiers = sorted({memory >> halvings for halvings in range(6) if memory >> halvings >= BLOCK_MIB[0] * MiB} or {memory})
    candidates: list[tuple[Plan, tuple]] = []
    for tier in tiers:
        for block_mib in BLOCK_MIB:
            block = block_mib * MiB
            if block > tier:
                continue
            for part_mib in PART_MIB:
                if part_mib > block_mib:
                    continue
                for conc in CONCURRENCY:
                    for head_mib in NEXT_TASK_MIB if inputs.plugins else (inputs.next_task_bytes // MiB,):
                        changed = inputs.replace(tier_bytes=tier, block_bytes=block, part_bytes=part_mib * MiB,
                                                 concurrency=conc, next_task_bytes=head_mib * MiB)  # fmt: skip
                        p = predict(changed)
                        gets = p.stream_gets
                        own = (block, part_mib * MiB, conc) != (inputs.block_bytes, inputs.part_bytes, inputs.concurrency)
                        candidates.append((p, (tier, head_mib, gets, own, block)))
    if not candidates:
        raise ValueError(f"no block size of {BLOCK_MIB[0]} MiB or more fits in {memory} bytes of tier space")
    if baseline is not None and inputs.tier_bytes <= memory:
        candidates.append((baseline, (inputs.tier_bytes, inputs.next_task_bytes // MiB, baseline.stream_gets, False,
                                      inputs.block_bytes)))  # fmt: skip
    best = min(p.wall_s for p, _ in candidates)
    if baseline is not None and inputs.tier_bytes <= memory:
        near = min(best * (1 + NEAR), baseline.wall_s)  # never slower than the settings given
    else:
        near = best * (1 + NEAR)
    chosen, _ = min((c for c in candidates if c[0].wall_s <= near), key=lambda c: c[1])
    ci = chosen.inputs
    return Recommendation(
        block_bytes=ci.block_bytes,
        part_bytes=ci.part_bytes,
        concurrency=ci.concurrency,
        tier_bytes=ci.tier_bytes,
        next_task_bytes=ci.next_task_bytes,
        plan=chosen,
        baseline=baseline if baseline is not None else chosen,
    )


def plan(
    shard_sizes: Sequence[int] | None = None,
    *,
    data_bytes: float | None = None,
    shards: int | None = None,
    **settings: Any,
) -> Plan:
    """Predict a job: ``plan(shard_sizes=[...], workers=16, threads=8, ...)`` or ``plan(data_bytes=..., shards=...)``.

    Parameters
    ----------
    shard_sizes
        Bytes of each shard; or give ``data_bytes`` and ``shards`` for equal ones.
    **settings
        The other fields of :class:`PlanInputs`.

    Returns
    -------
    Plan
        ``plan(...).recommend(memory_bytes)`` gives the settings that minimise its time.

    Raises
    ------
    ValueError
        For a missing or contradictory size, and as :class:`PlanInputs` and :func:`predict`.
    """
    if shard_sizes is not None:
        if data_bytes is not None or shards is not None:
            raise ValueError("give shard_sizes, or data_bytes and shards, not both")
        return predict(PlanInputs(shard_sizes=tuple(shard_sizes), **settings))
    if data_bytes is None or shards is None:
        raise ValueError("plan() needs shard_sizes, or data_bytes and shards")
    return predict(PlanInputs.uniform(data_bytes, shards, **settings))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def sweep(inputs: PlanInputs, name: str, values: Iterable[Any]) -> list[Plan]:
    """One plan per value of the field ``name`` (e.g. ``"workers"``), the rest as in ``inputs``."""
    return [predict(inputs.replace(**{name: v})) for v in values]
