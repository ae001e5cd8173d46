"""Peak memory of a reader process against block_size x concurrency.

    python benchmarks/bench_memory.py

Each configuration reads the same 256 MiB object in a fresh child process (1 MiB ``readinto``
into one reused buffer) and reports the child's peak RSS; block files live in /dev/shm and are
read with ``pread``, so they are not mapped into the reader. If GET bodies were buffered, the
peak would grow by about ``part_size x concurrency``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import s3fs

from dask_prefetch.testing import LocalS3Server

MiB = 2**20
SIZE = 256 * MiB

CHILD = """
import json, sys
from dask_prefetch import S3PrefetchFileSystem


def peak():  # VmHWM: this process's own peak RSS (ru_maxrss survives exec on Linux)
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith('VmHWM'))


options, path, block, part, concurrency = json.loads(sys.argv[1])
fs = S3PrefetchFileSystem(**options)
base = peak()
buf = bytearray(2**20)
with fs.open(path, prefetch_storage=[("/dev/shm", 1024)], block_size=block, part_size=part,
             concurrency=concurrency) as f:
    total = 0
    while n := f.readinto(buf):
        total += n
assert total == 256 * 2**20, total
print(json.dumps([base, peak()]))
"""


def main() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with LocalS3Server() as server:
        options = server.storage_options()
        raw = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        raw.mkdir("memory")
        raw.pipe("memory/big", np.random.default_rng(0).bytes(SIZE))
        print(f"{'block MiB':>9} {'part MiB':>8} {'GETs':>4} {'in flight MiB':>13} {'peak RSS MiB':>12} {'growth MiB':>10}")
        for block, part, concurrency in [(8, 8, 1), (8, 8, 4), (32, 8, 16), (32, 32, 8), (64, 64, 4)]:
            arg = json.dumps([options, "memory/big", block * MiB, part * MiB, concurrency])
            out = subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True, check=True)
            base, peak = json.loads(out.stdout)
            print(f"{block:>9} {part:>8} {concurrency:>4} {part * concurrency:>13} {peak / MiB:>12.0f} "
                  f"{(peak - base) / MiB:>10.0f}")


if __name__ == "__main__":
    main()
