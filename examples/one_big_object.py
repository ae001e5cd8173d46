"""Read one big object front to back with rolling prefetch, against plain s3fs, on a local S3 server.

    python examples/one_big_object.py

Writes a 96 MiB object to a local S3 server behind a simulated WAN (50 ms first byte, 40 MiB/s per
connection), then reads it in 1 MiB reads: with ``S3PrefetchFileSystem`` (32 MiB blocks into
``/dev/shm`` or the temp dir, 16 GETs in flight) and with s3fs's default cache. Both checksums
must match the data written.
"""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np
import s3fs

from dask_prefetch import S3PrefetchFileSystem
from dask_prefetch.testing import LocalS3Server, WanProxy

MiB = 2**20


def sha256_of(f, chunk: int = MiB) -> str:
    digest = hashlib.sha256()
    while data := f.read(chunk):
        digest.update(data)
    return digest.hexdigest()


def main() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    data = np.random.default_rng(0).bytes(96 * MiB)
    with LocalS3Server() as server, WanProxy(server.endpoint_url, 0.05, 40 * MiB) as wan:
        raw = s3fs.S3FileSystem(**server.storage_options(), skip_instance_cache=True)
        raw.mkdir("big")
        raw.pipe("big/object.bin", data)
        options = {**server.storage_options(), "endpoint_url": wan.endpoint_url}
        expected = hashlib.sha256(data).hexdigest()

        started = time.perf_counter()
        with S3PrefetchFileSystem(**options).open("big/object.bin") as f:
            ours, stats = sha256_of(f), f.stats
        t_ours = time.perf_counter() - started
        started = time.perf_counter()
        with s3fs.S3FileSystem(**options, skip_instance_cache=True).open("big/object.bin", "rb") as f:
            plain = sha256_of(f)
        t_plain = time.perf_counter() - started
    assert ours == plain == expected, "checksums differ"
    print(f"dask_prefetch: {t_ours:.2f} s ({96 / t_ours:.0f} MiB/s), {stats.requests} GETs, "
          f"up to {stats.peak_in_flight} in flight, reader waited {stats.stall_seconds:.2f} s")  # fmt: skip
    print(f"s3fs default:  {t_plain:.2f} s ({96 / t_plain:.0f} MiB/s): {t_plain / t_ours:.1f}x longer")
    print("demo OK")


if __name__ == "__main__":
    main()
