"""Peak memory of a process that reads one object through ``S3PrefetchFileSystem``.

Run as a child process so that nothing else lives in its memory:
``python dask_prefetch/testing/memory.py '<json arguments>'`` prints
``[bytes read, peak RSS after setup, peak RSS at the end]``; :func:`measure_read` does that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def peak_rss() -> int:
    """This process's own peak resident set size, in bytes (``VmHWM``; ``ru_maxrss`` survives exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


def measure_read(
    storage_options: dict, path: str, tier: str, block_size: int, part_size: int, concurrency: int
) -> tuple[int, int, int]:
    """Read ``path`` whole in 1 MiB ``readinto`` calls in a fresh child process.

    Returns
    -------
    (bytes read, peak RSS before opening, peak RSS at the end)
    """
    arg = json.dumps([storage_options, path, tier, block_size, part_size, concurrency])
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    child = subprocess.run([sys.executable, __file__, arg], capture_output=True, text=True, env=env, timeout=300)
    if child.returncode:
        raise RuntimeError(f"memory child failed:\n{child.stderr}")
    total, base, peak = json.loads(child.stdout)
    return total, base, peak


def _main(arg: str) -> None:
    from dask_prefetch import S3PrefetchFileSystem

    options, path, tier, block, part, concurrency = json.loads(arg)
    fs = S3PrefetchFileSystem(**options)
    fs.info(path)  # the S3 client exists before the baseline is taken
    base = peak_rss()
    buf, total = bytearray(2**20), 0
    with fs.open(path, prefetch_storage=[(tier, 1024)], block_size=block, part_size=part, concurrency=concurrency) as f:
        while n := f.readinto(buf):
            total += n
    print(json.dumps([total, base, peak_rss()]))


if __name__ == "__main__":
    _main(sys.argv[1])
