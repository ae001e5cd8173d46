"""Peak memory does not grow with block_size x concurrency: bodies are streamed to the tiers."""

from __future__ import annotations

from conftest import MiB, put_shards

from dask_prefetch.testing.memory import measure_read


def test_peak_rss_does_not_grow_with_block_size_times_concurrency(storage_options, raw_fs, tiers):
    size = 48 * MiB
    (path,) = put_shards(raw_fs, [size])
    tier = tiers(256)[0][0]
    small_total, _, small_peak = measure_read(storage_options, path, tier, 2 * MiB, 2 * MiB, 2)  # 4 MiB in flight
    big_total, _, big_peak = measure_read(storage_options, path, tier, 24 * MiB, 24 * MiB, 2)  # 48 MiB in flight
    assert small_total == big_total == size
    # Buffering each GET body would add ~44 MiB here; streaming adds only socket-sized pieces.
    assert big_peak - small_peak < 16 * MiB, (small_peak / MiB, big_peak / MiB)
