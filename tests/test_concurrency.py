"""The adaptive concurrency policy on its own: a simulated link, no I/O (see engine/concurrency.py)."""

from __future__ import annotations

import pytest

from dask_prefetch.engine.concurrency import AdaptiveConcurrency

MiB = 2**20
PART = 8 * MiB


def run(policy: AdaptiveConcurrency, capacity, seconds: float, bound=lambda limit: True, dt: float = 0.01) -> list[int]:
    """Feed ``policy`` the arrivals of a link whose throughput at ``limit`` GETs is ``capacity(limit)`` bytes/s.

    Returns the limit after every step of ``dt`` seconds.
    """
    now, limits = 0.0, []
    policy.arrived(0, now, bound(policy.limit))
    while now < seconds:
        now += dt
        policy.arrived(int(capacity(policy.limit) * dt), now, bound(policy.limit))
        limits.append(policy.limit)
    return limits


def per_connection_until(knee: int, each: float = 40 * MiB):
    """Throughput that grows with each connection up to ``knee`` of them, then stays flat."""
    return lambda limit: each * min(limit, knee)


def test_climbs_while_throughput_rises_and_stops_at_the_knee():
    policy = AdaptiveConcurrency(16, 64, PART)
    limits = run(policy, per_connection_until(30), 30.0)
    # It went past the start, never past the ceiling, and settled within a step of the knee:
    # beyond it a step brings no gain and is taken back (probing again now and then).
    assert max(limits) <= 64 and max(limits) > 16
    settled = limits[len(limits) // 2 :]
    assert min(settled) >= 26
    assert sorted(settled)[len(settled) // 2] <= 34  # the median, probes aside


def test_stays_at_the_start_when_more_gets_bring_nothing():
    policy = AdaptiveConcurrency(16, 64, PART)
    limits = run(policy, per_connection_until(8), 20.0)  # the link is full at 8: 16 is already beyond
    assert sorted(limits)[len(limits) // 2] == 16
    assert max(limits) <= 16 + policy.step  # only probes, each taken back


def test_reaches_the_ceiling_on_a_link_that_keeps_giving():
    policy = AdaptiveConcurrency(4, 24, PART)
    limits = run(policy, per_connection_until(1000), 10.0)
    assert limits[-1] == 24
    assert policy.peak == 24


def test_does_not_grow_when_the_reader_or_the_tier_is_the_bound():
    policy = AdaptiveConcurrency(16, 64, PART)
    limits = run(policy, per_connection_until(1000), 10.0, bound=lambda limit: False)
    assert set(limits) == {16}


def test_a_throttling_answer_halves_the_limit_once_per_round_then_it_climbs_again():
    policy = AdaptiveConcurrency(16, 64, PART)
    run(policy, per_connection_until(1000), 5.0)
    high = policy.limit
    assert high > 16
    assert policy.throttled(10.0)
    assert policy.limit == high // 2
    assert not policy.throttled(10.001)  # the same burst of 503s: one signal
    assert policy.limit == high // 2 and policy.backoffs == 1
    for _ in range(10):  # a store that keeps throttling: down to the floor, never below
        policy.arrived(PART * 64, 11.0 + _, True)  # ends the round
        policy.throttled(11.5 + _)
    assert policy.limit == 1
    assert policy.backoffs > 1


def test_fixed_when_ceiling_is_the_start():
    policy = AdaptiveConcurrency(16, 16, PART, floor=16)
    assert not policy.adaptive
    assert set(run(policy, per_connection_until(1000), 5.0)) == {16}
    assert not policy.throttled(1.0) and policy.limit == 16


@pytest.mark.parametrize("args", [(0, 4), (8, 4), (4, 8, 0), (4, 8, PART, 5)])
def test_bad_bounds_are_refused(args):
    start, ceiling, *rest = args
    part = rest[0] if rest else PART
    floor = rest[1] if len(rest) > 1 else 1
    with pytest.raises(ValueError):
        AdaptiveConcurrency(start, ceiling, part, floor=floor)


# -- on a real link: the local S3 server behind the WAN and fault proxies -------------------


def _engine(fs, paths, tiers, concurrency: int, most: int, part: int = 256 * 1024):
    from fsspec.asyn import sync

    from dask_prefetch import PrefetchEngine, TierSet
    from dask_prefetch.engine.layout import Layout

    layout = Layout.from_objects(sync(fs.source.loop, fs.source.pin, paths, 3), 0, MiB, part)
    return PrefetchEngine(
        fs, layout, TierSet(tiers(16)), concurrency=concurrency, max_concurrency=most, retries=5,
        read_timeout=60, stall_timeout=30.0, straggler_factor=0.0,
    )


def _read_all(engine) -> bytes:
    import os

    out = bytearray()
    for block in engine.layout.blocks:
        offset = 0
        while offset < block.length:
            _, fd, end = engine.view(block.index, offset)
            try:
                out += os.pread(fd, end - offset, offset)
            finally:
                os.close(fd)
            offset = end
    return bytes(out)


def test_gets_in_flight_grow_on_a_link_whose_connections_are_thin(s3_server, storage_options, raw_fs, tiers):
    """Each connection carries 2 MiB/s: two GETs leave the link idle, so the engine climbs towards its ceiling."""
    from conftest import put_shards

    from dask_prefetch import S3PrefetchFileSystem
    from dask_prefetch.testing import WanProxy

    (path,) = put_shards(raw_fs, [10 * MiB])
    with WanProxy(s3_server.endpoint_url, latency=0.01, bandwidth=2 * MiB).start() as proxy:
        fs = S3PrefetchFileSystem(**{**storage_options, "endpoint_url": proxy.endpoint_url}, skip_instance_cache=True)
        engine = _engine(fs, [path], tiers, concurrency=2, most=8)
        try:
            assert _read_all(engine) == raw_fs.cat(path)
            assert engine.stats.peak_concurrency > 2
            assert engine.stats.peak_in_flight > 2
            assert engine.stats.peak_in_flight <= 8
        finally:
            engine.close()


def test_503_slowdown_halves_the_gets_in_flight(s3_server, storage_options, raw_fs, tiers):
    """A store that throttles (every third ranged GET answered 503 SlowDown) makes the engine back off."""
    from conftest import put_shards

    from dask_prefetch import S3PrefetchFileSystem
    from dask_prefetch.testing import FaultProxy

    (path,) = put_shards(raw_fs, [2 * MiB])
    with FaultProxy(s3_server.endpoint_url, {"slowdown": 0.3}, seed=3).start() as proxy:
        fs = S3PrefetchFileSystem(**{**storage_options, "endpoint_url": proxy.endpoint_url}, skip_instance_cache=True)
        engine = _engine(fs, [path], tiers, concurrency=8, most=16, part=128 * 1024)
        try:
            assert _read_all(engine) == raw_fs.cat(path)  # the retried GETs still give exact bytes
            assert proxy.counts()["slowdown"] > 0
            assert fs.source.throttles > 0
            assert engine.stats.concurrency_backoffs >= 1
            assert engine.window.concurrency < 8 or engine.stats.concurrency_backoffs > 1
        finally:
            engine.close()


def test_a_fixed_concurrency_never_changes_under_throttling(s3_server, storage_options, raw_fs, tiers):
    from conftest import put_shards

    from dask_prefetch import S3PrefetchFileSystem
    from dask_prefetch.testing import FaultProxy

    (path,) = put_shards(raw_fs, [MiB])
    with FaultProxy(s3_server.endpoint_url, {"slowdown": 0.3}, seed=3).start() as proxy:
        fs = S3PrefetchFileSystem(**{**storage_options, "endpoint_url": proxy.endpoint_url}, skip_instance_cache=True)
        engine = _engine(fs, [path], tiers, concurrency=4, most=None, part=128 * 1024)  # type: ignore[arg-type]
        try:
            assert _read_all(engine) == raw_fs.cat(path)
            assert proxy.counts()["slowdown"] > 0
            assert engine.window.concurrency == 4 and engine.stats.concurrency_backoffs == 0
            assert engine.stats.peak_in_flight <= 4
        finally:
            engine.close()
