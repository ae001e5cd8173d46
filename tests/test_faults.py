"""S3 faults injected by a proxy in front of the real server: retried to identical bytes, or a clear OSError.

Each test counts the faults the proxy really injected, so none passes without the fault happening.
"""

from __future__ import annotations

import time

import dask.config
import numpy as np
import pytest
from conftest import MiB, logical_bytes, put_shards

from dask_prefetch import S3PrefetchFileSystem
from dask_prefetch.testing import FaultProxy

SMALL = dict(block_size=256 * 1024, part_size=64 * 1024)


@pytest.fixture
def faulty(s3_server, storage_options):
    """``faulty(rates, stall_seconds, ..., latency=, bandwidth=)``: a FaultProxy in front of the server and a
    filesystem through it."""
    proxies = []

    def make(rates, stall_seconds=60.0, seed=0, cut=0.5, **shaping):
        proxy = FaultProxy(s3_server.endpoint_url, rates, stall_seconds, cut, seed, **shaping).start()
        proxies.append(proxy)
        options = {**storage_options, "endpoint_url": proxy.endpoint_url}
        return proxy, S3PrefetchFileSystem(**options, skip_instance_cache=True)

    yield make
    for proxy in proxies:
        proxy.stop()


def read_in_random_pieces(f, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    pieces = []
    while piece := f.read(int(rng.integers(1, 200_000))):
        pieces.append(piece)
    return b"".join(pieces)


@pytest.mark.parametrize("fault, rate", [("slowdown", 0.3), ("reset", 0.3), ("stall", 0.1), ("hang", 0.1)])
def test_transient_faults_are_retried_and_every_byte_is_identical(fault, rate, faulty, raw_fs, tiers):
    paths = put_shards(raw_fs, [2 * MiB, MiB + 12345, 700_000])
    settings = {"dask-prefetch.stall-timeout": "0.5s", "dask-prefetch.straggler-factor": 0}
    with dask.config.set(settings):
        proxy, fs = faulty({fault: rate}, stall_seconds=60)  # botocore's read_timeout is set from stall-timeout
    with dask.config.set(settings), fs.open(paths, header_bytes=1000, prefetch_storage=tiers(1), **SMALL) as f:
        data = read_in_random_pieces(f)
        stats = f.engine.stats
    assert data == logical_bytes(raw_fs, paths, header_bytes=1000)
    injected = proxy.counts()[fault]
    assert injected >= 3
    if fault in ("reset", "stall"):  # 503s and unanswered requests are retried inside botocore and s3fs
        assert stats.gets_resumed == injected  # each broken or stalled GET resumed once, from where it stopped
    assert stats.bytes_fetched == len(data)  # no byte fetched twice: resumed, not restarted
    assert stats.gets_reissued == 0


@pytest.mark.parametrize("fault, rate", [("reset", 0.3), ("stall", 0.2)])
def test_faults_on_a_wan_are_resumed_to_identical_bytes(fault, rate, faulty, raw_fs, tiers):
    """Faults and WAN shaping at once: cut bodies are paced, resumed GETs wait for the latency again."""
    paths = put_shards(raw_fs, [MiB, MiB])
    settings = {"dask-prefetch.stall-timeout": "0.5s", "dask-prefetch.straggler-factor": 0}
    with dask.config.set(settings):
        proxy, fs = faulty({fault: rate}, stall_seconds=60, seed=2, latency=0.05, bandwidth=8 * MiB)
    started = time.monotonic()
    with dask.config.set(settings), fs.open(paths, prefetch_storage=tiers(1), concurrency=2, **SMALL) as f:
        data = f.read()
        stats = f.engine.stats
    elapsed = time.monotonic() - started
    assert data == logical_bytes(raw_fs, paths)
    counts = proxy.counts()
    assert counts[fault] >= 2 and stats.gets_resumed == counts[fault]
    assert elapsed >= 2 * MiB / (2 * 8 * MiB)  # two connections at most, each paced to 8 MiB/s
    assert elapsed >= counts["gets"] * 0.05 / 2  # each GET waited the latency, two at a time at most


@pytest.mark.parametrize("fault", ["reset", "stall"])
def test_persistent_faults_raise_a_clear_oserror(fault, faulty, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [100_000])
    proxy, fs = faulty({fault: 1.0}, stall_seconds=60, cut=0)  # not a byte of any body
    settings = {"dask-prefetch.stall-timeout": "0.2s", "dask-prefetch.retries": 3}
    started = time.monotonic()
    with dask.config.set(settings), fs.open(path, prefetch_storage=tiers(1), read_timeout=60, **SMALL) as f:
        with pytest.raises(OSError, match=f"{path}: bytes .* failed 3 times; last error") as info:
            f.read()
        assert f.tell() == 0  # nothing half-fetched was served
    assert not isinstance(info.value, TimeoutError) or "no byte after" in str(info.value.__cause__)
    assert time.monotonic() - started < 30
    assert proxy.counts()[fault] >= 3


def test_a_read_that_fails_half_way_returns_nothing_and_keeps_its_position(faulty, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [200_000])
    proxy, fs = faulty({"reset": 1.0}, cut=0.5)  # each GET brings half of what is left, then breaks
    with dask.config.set({"dask-prefetch.retries": 2}), fs.open(path, prefetch_storage=tiers(1), **SMALL) as f:
        f.seek(10)
        with pytest.raises(OSError, match="failed 2 times"):
            f.read()  # some bytes had arrived when it failed
        assert f.tell() == 10
        assert f.engine.stats.bytes_fetched > 100_000
        proxy.set_rates(reset=0.0)
        assert f.read() == raw_fs.cat(path)[10:]  # the same call again, once S3 is well


def test_a_persistent_fault_meets_the_read_deadline_with_the_last_error(faulty, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    proxy, fs = faulty({"stall": 1.0}, stall_seconds=60, cut=0)
    settings = {"dask-prefetch.stall-timeout": "0.2s", "dask-prefetch.retries": 1000}
    with dask.config.set(settings), fs.open(path, prefetch_storage=tiers(1), read_timeout=1.5, **SMALL) as f:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=f"{path}: no data .* within 1.5 s .*last GET error: .*no byte after"):
            f.read()
        assert time.monotonic() - started < 5
        closing = time.monotonic()
    assert time.monotonic() - closing < 2  # GETs stuck in stalls are cancelled at close


@pytest.mark.parametrize("fault", ["slowdown", "hang"])
def test_persistent_unanswered_requests_are_bounded_by_the_read_deadline(fault, faulty, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    with dask.config.set({"dask-prefetch.stall-timeout": "0.3s"}):
        proxy, fs = faulty({fault: 1.0}, stall_seconds=60)
    cause = "SlowDown" if fault == "slowdown" else "timeout"
    with fs.open(path, prefetch_storage=tiers(1), read_timeout=2, **SMALL) as f:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=f"{path}: no data .*last GET error: .*{cause}"):
            f.read(10)
        assert time.monotonic() - started < 6
    assert proxy.counts()[fault] >= 4  # retried meanwhile


def test_a_straggling_get_is_reissued_and_the_first_answer_wins(faulty, raw_fs, tiers):
    paths = put_shards(raw_fs, [4 * MiB, 4 * MiB])
    proxy, fs = faulty({"stall": 0.04}, stall_seconds=60, seed=3)
    settings = {"dask-prefetch.stall-timeout": "60s", "dask-prefetch.straggler-factor": 4}
    started = time.monotonic()
    with dask.config.set(settings), fs.open(paths, prefetch_storage=tiers(2), **SMALL) as f:
        data = f.read()
        stats = f.engine.stats
    elapsed = time.monotonic() - started
    stalls = proxy.counts()["stall"]
    assert data == logical_bytes(raw_fs, paths)
    assert stalls >= 1 and stats.gets_reissued >= stalls
    assert stats.gets_resumed == 0
    assert elapsed < 30  # far less than one stall (60 s): the re-issued GETs won


def test_a_server_that_ignores_range_never_yields_wrong_bytes(faulty, raw_fs, tiers):
    """A 200 with the whole object instead of the range asked for is asked again, never written into a block."""
    paths = put_shards(raw_fs, [2 * MiB, MiB + 12345])
    proxy, fs = faulty({"norange": 0.3}, seed=1)
    with dask.config.set({"dask-prefetch.straggler-factor": 0}):
        with fs.open(paths, header_bytes=1000, prefetch_storage=tiers(1), **SMALL) as f:
            data = read_in_random_pieces(f)
            stats = f.engine.stats
    assert data == logical_bytes(raw_fs, paths, header_bytes=1000)
    injected = proxy.counts()["norange"]
    assert injected >= 3
    assert stats.gets_resumed == injected  # each answered again


def test_a_server_that_always_ignores_range_raises_a_clear_error(faulty, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    proxy, fs = faulty({"norange": 1.0})
    with dask.config.set({"dask-prefetch.retries": 2}), fs.open(path, prefetch_storage=tiers(1), **SMALL) as f:
        with pytest.raises(OSError, match=r"failed 2 times; last error: .*HTTP 200 .*did not honour the Range"):
            f.read()
        assert f.tell() == 0
    assert proxy.counts()["norange"] >= 2


def test_a_whole_object_answered_with_200_is_accepted(faulty, raw_fs, tiers):
    """When the range asked for is the whole object, a 200 carrying it is the right answer."""
    (path,) = put_shards(raw_fs, [50_000])  # one part: bytes 0-49999 of 50000
    proxy, fs = faulty({"norange": 1.0})
    with fs.open(path, prefetch_storage=tiers(1), **SMALL) as f:
        assert f.read() == raw_fs.cat(path)
        assert f.engine.stats.gets_resumed == 0
    assert proxy.counts()["norange"] >= 1
