"""Peak memory of a reader process against block_size x concurrency.

    python benchmarks/bench_memory.py

Each configuration reads the same 256 MiB object (local moto server) in a fresh child process,
1 MiB ``readinto`` calls into one reused buffer, and reports the child's peak RSS. Block files
live in /dev/shm and are read with ``pread``, so they are not mapped into the reader. If GET
bodies were buffered, the peak would grow by about ``part_size x concurrency``.
"""

from __future__ import annotations

import os

import numpy as np
import s3fs

from dask_prefetch.testing import LocalS3Server
from dask_prefetch.testing.memory import measure_read

MiB = 2**20
SIZE = 256 * MiB


def main() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    tier = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
    with LocalS3Server() as server:
        options = server.storage_options()
        raw = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        raw.mkdir("memory")
        raw.pipe("memory/big", np.random.default_rng(0).bytes(SIZE))
        print(f"{'block MiB':>9} {'part MiB':>8} {'GETs':>4} {'in flight MiB':>13} {'peak RSS MiB':>12} {'growth MiB':>10}")
        for block, part, concurrency in [(8, 8, 1), (8, 8, 4), (32, 8, 16), (32, 32, 8), (64, 64, 4)]:
            total, base, peak = measure_read(options, "memory/big", tier, block * MiB, part * MiB, concurrency)
            assert total == SIZE, total
            print(f"{block:>9} {part:>8} {concurrency:>4} {part * concurrency:>13} {peak / MiB:>12.0f} "
                  f"{(peak - base) / MiB:>10.0f}")


if __name__ == "__main__":
    main()
