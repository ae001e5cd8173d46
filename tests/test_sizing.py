"""The sizing model (dask_prefetch.sizing): its limits, its monotonicity, its recommendations, its arithmetic."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dask_prefetch.sizing import (
    BOTTLENECKS,
    GiB,
    MiB,
    PlanInputs,
    get_rate,
    plan,
    predict,
    recommend,
    stream_seconds,
)

HYDI = dict(data_bytes=498e9, shards=464, header_bytes=1000, workers=16, threads=8, nic_bps=1.25e9,
            latency_s=0.045, bandwidth_bps=87.5e6)  # fmt: skip


# --- strategies ------------------------------------------------------------------------------------

jobs = st.builds(
    PlanInputs.uniform,
    data_bytes=st.integers(1 * MiB, 64 * GiB),
    shards=st.integers(1, 600),
    latency_s=st.floats(0, 0.2),
    bandwidth_bps=st.floats(1e6, 1e9),
    nic_bps=st.floats(1e7, 1e10),
    workers=st.integers(1, 32),
    threads=st.integers(1, 16),
    compute_s_per_mib=st.floats(0, 0.1),
    compute_streamed=st.booleans(),
    parse_s_per_mib=st.floats(0, 0.01),
    tier_bytes=st.sampled_from([128 * MiB, 256 * MiB, GiB, 4 * GiB]),
    block_bytes=st.sampled_from([8 * MiB, 32 * MiB, 64 * MiB]),
    part_bytes=st.sampled_from([2 * MiB, 8 * MiB, 16 * MiB]),
    concurrency=st.sampled_from(["auto", 1, 4, 16, 64]),
    next_task_bytes=st.sampled_from([0, 16 * MiB, 64 * MiB]),
    plugins=st.booleans(),
)


def wall(inputs: PlanInputs, **changes) -> float:
    return predict(inputs.replace(**changes)).wall_s


# --- limits ----------------------------------------------------------------------------------------


@given(jobs)
def test_with_no_latency_and_unbounded_links_the_time_is_the_compute(job):
    # (A tier too small for a block per thread makes reads take turns, whatever the link: not this case.)
    free = job.replace(latency_s=0.0, bandwidth_bps=math.inf, nic_bps=math.inf, task_overhead_s=0.0,
                       tier_bytes=max(job.tier_bytes, job.threads * job.block_bytes))
    p = predict(free)
    per_partition = free.data_bytes / free.partitions / MiB * (free.compute_s_per_mib + free.parse_s_per_mib)
    rounds = math.ceil(math.ceil(free.partitions / free.workers) / free.threads)  # the busiest thread's tasks
    assert p.wall_s == pytest.approx(p.graph_s + rounds * per_partition, rel=1e-9, abs=1e-12)
    assert p.transfer_s == pytest.approx(0, abs=1e-9) and p.start_stall_s == pytest.approx(0, abs=1e-9)
    if free.partitions % (free.workers * free.threads) == 0:  # no tail: the time is exactly the compute
        assert p.wall_s == pytest.approx(p.graph_s + p.compute_s, rel=1e-9, abs=1e-12)


def test_the_compute_alone_on_paper():
    # 64 GiB over 4 workers x 2 threads in 64 partitions: 8 per thread, 1 GiB each at 0.01 s/MiB -> 81.92 s.
    p = plan(data_bytes=64 * GiB, shards=64, workers=4, threads=2, latency_s=0, bandwidth_bps=math.inf,
             nic_bps=math.inf, compute_s_per_mib=0.01, parse_s_per_mib=0, task_overhead_s=0, graph_s_per_shard=0,
             job_overhead_s=0)  # fmt: skip
    assert p.wall_s == pytest.approx(81.92)
    assert p.bottleneck == "compute" and p.tail_s == 0


@given(jobs)
def test_without_compute_the_job_is_bound_by_the_transfer(job):
    p = predict(job.replace(compute_s_per_mib=0.0, parse_s_per_mib=0.0, task_overhead_s=0.0))
    busiest = math.ceil(job.partitions / job.workers) * job.data_bytes / job.partitions
    assert p.wall_s >= p.graph_s + busiest / p.link_bps * (1 - 1e-9)  # never faster than the link
    assert p.bottleneck not in ("compute", "parse")
    assert p.compute_s == 0


def test_a_link_bound_job_takes_its_bytes_over_the_nic():
    # HYDI with no compute: 29 shards of 1.07 GB per node over 10 Gb/s -> ~24.9 s, plus the graph.
    p = plan(**HYDI)
    assert p.bottleneck == "nic" and p.link_bound
    node_bytes = 29 * 498e9 / 464
    assert p.wall_s - p.graph_s == pytest.approx(node_bytes / 1.25e9 + 0.045 + 29 * 0 + p.tail_s, rel=0.01)


# --- monotonicity ----------------------------------------------------------------------------------


@settings(max_examples=150)
@given(jobs, st.floats(1.01, 10))
def test_more_bandwidth_is_never_slower(job, factor):
    assert wall(job, bandwidth_bps=job.bandwidth_bps * factor) <= wall(job) * (1 + 1e-9)
    assert wall(job, nic_bps=job.nic_bps * factor) <= wall(job) * (1 + 1e-9)


@settings(max_examples=150)
@given(jobs, st.floats(0.001, 0.1))
def test_more_latency_is_never_faster(job, extra):
    assert wall(job, latency_s=job.latency_s + extra) >= wall(job) * (1 - 1e-9)


@settings(max_examples=150)
@given(jobs, st.integers(1, 16))
def test_more_workers_each_with_its_own_nic_is_never_slower(job, more):
    assert wall(job, workers=job.workers + more) <= wall(job) * (1 + 1e-9)


@settings(max_examples=150)
@given(jobs, st.floats(0.0001, 0.05))
def test_more_compute_is_never_faster(job, extra):
    more, now = wall(job, compute_s_per_mib=job.compute_s_per_mib + extra), wall(job)
    if job.compute_streamed:
        assert more >= now  # a streamed compute hides under the transfer until it is the longer
    else:
        assert more > now


def test_workers_sharing_a_node_share_its_nic():
    alone = plan(**HYDI)
    shared = plan(**{**HYDI, "workers": 32}, workers_per_node=2)  # twice the workers on the same 16 NICs
    assert shared.link_bps == alone.link_bps / 2
    assert shared.wall_s == pytest.approx(alone.wall_s, rel=0.1)  # no faster: the NICs were the bound
    assert plan(**{**HYDI, "workers": 32}).wall_s < 0.6 * alone.wall_s  # 32 NICs: about twice as fast


# --- the engine's own limits -----------------------------------------------------------------------


def test_per_get_efficiency_and_waves():
    # 8 MiB at 50 ms and 40 MiB/s: 0.25 s a GET, 32 MiB/s per connection.
    assert get_rate(0.05, 40 * MiB, 8 * MiB) == pytest.approx(32 * MiB)
    assert get_rate(0.0, math.inf, 8 * MiB) == math.inf
    # 64 MiB as 8 parts, 4 at a time: 2 waves of 0.25 s; all 8 at once: one wave; capped by the link.
    assert stream_seconds(64 * MiB, 8, 4, 0.05, 40 * MiB, math.inf) == pytest.approx(0.5)
    assert stream_seconds(64 * MiB, 8, 16, 0.05, 40 * MiB, math.inf) == pytest.approx(0.25)
    assert stream_seconds(64 * MiB, 8, 16, 0.05, 40 * MiB, 128 * MiB) == pytest.approx(0.5)


def test_the_tier_bounds_the_gets_in_flight_of_a_stream():
    # A 64 MiB budget with 32 MiB blocks of 8 MiB parts: 2 blocks x 4 parts = 8 GETs, whatever the concurrency.
    job = PlanInputs.uniform(8 * GiB, 8, tier_bytes=64 * MiB, concurrency=64, plugins=False)
    p = predict(job)
    assert (p.stream_gets, p.stream_limit) == (8, "tier")
    roomy = predict(job.replace(tier_bytes=GiB))
    assert (roomy.stream_gets, roomy.stream_limit) == (64, "concurrency")
    assert roomy.wall_s < p.wall_s


def test_a_small_partition_is_as_many_gets_as_it_has_parts():
    # The measured cluster case of NOTES.md: 7.9 MiB shards are one 8 MiB GET each, capped at one connection.
    p = plan(data_bytes=16 * 7.9 * MiB, shards=16, workers=2, threads=1, latency_s=0.05, bandwidth_bps=40 * MiB,
             nic_bps=1e12, compute_s_per_mib=0.03, tier_bytes=256 * MiB)  # fmt: skip
    assert (p.stream_gets, p.stream_limit) == (1, "parts")
    assert p.first_cycle_s == pytest.approx(0.05 + 7.9 / 40 + 7.9 * 0.03 + 0.007, rel=0.01)
    assert p.start_stall_s > 0.15  # the first task waits for its partition; the next ones find theirs ahead
    assert p.head_bytes > 0.9 * p.partition_bytes
    assert 2.0 < p.wall_s < 3.0  # measured 2.53-2.56 s


def test_a_stream_ends_with_its_longest_get_not_at_the_mean_part():
    # A 5.7 MiB shard in 4 MiB parts: a 4 MiB and a 1.7 MiB GET side by side end with the 4 MiB one.
    assert stream_seconds(5.7 * MiB, 2, 8, 0.05, 40 * MiB, math.inf, longest=4 * MiB) == pytest.approx(0.15)
    assert stream_seconds(5.7 * MiB, 2, 8, 0.05, 40 * MiB, math.inf) == pytest.approx(0.05 + 2.85 / 40)
    p = plan(shard_sizes=[int(5.7 * MiB)] * 8, latency_s=0.05, bandwidth_bps=40 * MiB, block_bytes=8 * MiB,
             part_bytes=4 * MiB, parse_s_per_mib=0, task_overhead_s=0, nic_bps=1e12)  # fmt: skip
    assert p.first_cycle_s == pytest.approx(0.15)


def test_the_heads_opened_ahead_add_up_to_next_task_bytes_per_thread():
    # As the worker's NextTaskPrefetcher: 6 MiB partitions, 64 MiB a thread -> 10 wanted, at most 4 a thread.
    job = PlanInputs.uniform(48 * MiB * 8, 64, latency_s=0.05, bandwidth_bps=40 * MiB, tier_bytes=GiB)
    assert predict(job).details["heads"] == 4
    assert predict(job.replace(threads=2)).details["heads"] == 8
    assert predict(job.replace(next_task_bytes=12 * MiB)).details["heads"] == 2  # 12 MiB of 6 MiB heads
    assert predict(job.replace(tier_bytes=24 * MiB, block_bytes=8 * MiB)).details["heads"] == 2  # half: 12 MiB


def test_a_streamed_compute_overlaps_the_transfer():
    # One 256 MiB stream, 8 GETs of 8 MiB in flight (256 MiB/s at 32 MiB/s each: 1.0 s), compute 1/40 s a MiB
    # (6.4 s): after the bytes, 7.4 s and more; on them as they arrive, the compute alone.
    job = PlanInputs.uniform(256 * MiB, 8, latency_s=0.05, bandwidth_bps=40 * MiB, nic_bps=1e12, npartitions=1,
                             concurrency=8, tier_bytes=128 * MiB, plugins=False, compute_s_per_mib=1 / 40,
                             parse_s_per_mib=0, task_overhead_s=0, graph_s_per_shard=0, job_overhead_s=0)  # fmt: skip
    after, streamed = predict(job), predict(job.replace(compute_streamed=True))
    assert after.wall_s > 6.4 + 1.0  # 32 GETs in 4 waves of 0.25 s, then the compute
    assert streamed.wall_s == pytest.approx(2 * 0.05 + 6.4, rel=0.01)  # listing + header latency, first bytes
    assert streamed.bottleneck == "compute" and streamed.compute_s == pytest.approx(after.compute_s)


def test_the_job_overhead_is_part_of_the_graph_build():
    job = PlanInputs.uniform(GiB, 16)
    without = predict(job.replace(job_overhead_s=0)).graph_s
    assert predict(job.replace(job_overhead_s=0.5)).graph_s == pytest.approx(without + 0.5)


def test_cross_task_prefetch_shortens_the_cycle_and_needs_the_plugins():
    # 256 MiB partitions in 32 parts, 8 GETs at a time: 4 waves of 0.85 s; 64 MiB fetched ahead saves one.
    job = PlanInputs.uniform(16 * GiB, 64, workers=2, threads=2, latency_s=0.05, bandwidth_bps=10 * MiB,
                             compute_s_per_mib=0.02, parse_s_per_mib=0.0005, concurrency=8)  # fmt: skip
    with_heads, without = predict(job), predict(job.replace(next_task_bytes=0))
    assert with_heads.head_bytes > 0 and without.head_bytes == 0
    assert with_heads.cycle_s < without.cycle_s and with_heads.wall_s < without.wall_s
    assert predict(job.replace(plugins=False)).head_bytes == 0


def test_auto_climbs_to_fill_the_link_and_pays_for_the_climb():
    job = PlanInputs.uniform(64 * GiB, 4, latency_s=0.05, bandwidth_bps=10 * MiB, nic_bps=1.25e9,
                             tier_bytes=16 * GiB, pool_connections=256, max_concurrency=256)  # fmt: skip
    auto, fixed = predict(job), predict(job.replace(concurrency=16))
    assert auto.stream_gets > 16 and auto.details["ramp_s"] > 0
    assert auto.wall_s < fixed.wall_s


def test_a_budget_smaller_than_a_block_per_thread_makes_reads_take_turns():
    job = PlanInputs.uniform(8 * GiB, 64, threads=8, tier_bytes=64 * MiB, block_bytes=32 * MiB, latency_s=0.05,
                             bandwidth_bps=40 * MiB)  # fmt: skip
    p = predict(job)
    assert p.details["readers"] == 2 and p.bottleneck == "tier"
    assert p.wall_s > predict(job.replace(tier_bytes=256 * MiB)).wall_s


# --- the breakdown ---------------------------------------------------------------------------------


@given(jobs)
def test_the_breakdown_adds_up_and_names_a_known_bottleneck(job):
    p = predict(job)
    assert all(v >= 0 for v in p.breakdown.values()), p.breakdown
    assert sum(p.breakdown.values()) == pytest.approx(p.wall_s, rel=1e-9)
    assert p.bottleneck in BOTTLENECKS
    assert p.wall_s >= p.graph_s + p.compute_s


# --- recommend -------------------------------------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(jobs, st.sampled_from([64 * MiB, 256 * MiB, GiB, 3 * GiB]))
def test_recommend_stays_within_the_memory_budget_and_is_never_slower(job, memory):
    rec = recommend(job, memory)
    assert rec.tier_bytes <= memory and rec.block_bytes <= rec.tier_bytes and rec.part_bytes <= rec.block_bytes
    assert rec.plan.inputs.tier_bytes == rec.tier_bytes
    if job.tier_bytes <= memory:
        assert rec.plan.wall_s <= rec.baseline.wall_s * (1 + 1e-9)


def test_recommend_finds_room_when_the_tier_is_what_binds():
    job = PlanInputs.uniform(8 * GiB, 8, threads=4, tier_bytes=128 * MiB, latency_s=0.06, bandwidth_bps=40 * MiB,
                             nic_bps=1.25e9)  # fmt: skip
    rec = recommend(job, 2 * GiB)
    assert rec.plan.wall_s < 0.7 * rec.baseline.wall_s
    assert rec.tier_bytes > job.tier_bytes


def test_recommend_refuses_a_budget_below_every_block():
    with pytest.raises(ValueError, match="fits in"):
        recommend(PlanInputs.uniform(GiB, 4), memory_bytes=MiB)


# --- inputs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"workers": 0}, "workers"),
        ({"threads": 1.5}, "threads"),
        ({"latency_s": -1}, "latency_s"),
        ({"latency_s": math.nan}, "latency_s"),
        ({"compute_s_per_mib": math.inf}, "compute_s_per_mib"),
        ({"concurrency": "fast"}, "concurrency"),
        ({"concurrency": 0}, "concurrency"),
        ({"npartitions": 0}, "npartitions"),
        ({"shard_sizes": ()}, "shard_sizes"),
        ({"header_bytes": 10**9}, "header_bytes"),
        ({"job_overhead_s": -0.1}, "job_overhead_s"),
        ({"compute_streamed": "yes"}, "compute_streamed"),
    ],
)
def test_bad_inputs_name_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        PlanInputs.uniform(GiB, 4).replace(**changes)


def test_a_block_larger_than_the_tier_is_refused_as_the_engine_does():
    with pytest.raises(ValueError, match="do not fit"):
        predict(PlanInputs.uniform(GiB, 4, tier_bytes=16 * MiB, block_bytes=32 * MiB))


def test_plan_takes_sizes_or_totals_not_both():
    assert plan([MiB, 2 * MiB]).inputs.data_bytes == 3 * MiB
    assert plan(data_bytes=3 * MiB, shards=3).inputs.shard_sizes == (MiB,) * 3
    with pytest.raises(ValueError, match="not both"):
        plan([MiB], data_bytes=MiB, shards=1)
    with pytest.raises(ValueError, match="needs"):
        plan(data_bytes=MiB)


# --- the public API --------------------------------------------------------------------------------


def test_dask_prefetch_plan_is_the_model_loaded_on_first_use():
    import subprocess
    import sys

    code = (
        "import sys, dask_prefetch\n"
        "assert 'dask_prefetch.sizing' not in sys.modules\n"
        "p = dask_prefetch.plan(data_bytes=2**30, shards=4, workers=2)\n"
        "assert type(p).__name__ == 'Plan' and isinstance(p.inputs, dask_prefetch.PlanInputs)\n"
        "print(' '.join(m for m in ('s3fs', 'dask', 'distributed', 'fsspec') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""
