"""Peak memory does not grow with block_size x concurrency: bodies are streamed to the tiers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import MiB, put_shards

CHILD = """
import json, sys
from dask_prefetch import S3PrefetchFileSystem


def peak():  # VmHWM: this process's own peak RSS (ru_maxrss survives exec on Linux)
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmHWM'))


options, path, tier, block, concurrency = json.loads(sys.argv[1])
fs = S3PrefetchFileSystem(**options)
buf = bytearray(MiB := 2**20)
with fs.open(path, prefetch_storage=[(tier, 256)], block_size=block, part_size=block, concurrency=concurrency) as f:
    total = 0
    while n := f.readinto(buf):
        total += n
print(json.dumps([total, peak()]))
"""


def peak_rss(storage_options, path, tier, block, concurrency):
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    arg = json.dumps([storage_options, path, tier, block, concurrency])
    child = subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True, env=env, timeout=120)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout)


def test_peak_rss_does_not_grow_with_block_size_times_concurrency(storage_options, raw_fs, tiers):
    size = 48 * MiB
    (path,) = put_shards(raw_fs, [size])
    tier = tiers(256)[0][0]
    small_total, small_peak = peak_rss(storage_options, path, tier, 2 * MiB, 2)  # 4 MiB in flight
    big_total, big_peak = peak_rss(storage_options, path, tier, 24 * MiB, 2)  # 48 MiB in flight
    assert small_total == big_total == size
    # Buffering each GET body would add ~44 MiB here; streaming adds only socket-sized pieces.
    assert big_peak - small_peak < 16 * MiB, (small_peak / MiB, big_peak / MiB)
