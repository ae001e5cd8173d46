"""End-to-end demo on an embedded default: a local S3 server, a sharded tractogram, a LocalCluster.

    python examples/quickstart.py            # or: make demo

1. Starts a local S3 server (moto, on loopback) and writes a synthetic TRK tractogram to it the
   way large ones are stored: a 1000-byte global header object, then shards that each start with
   their own 1000-byte TRK header.
2. Reads the shards as one logical file through ``S3PrefetchFileSystem.open(paths,
   header_bytes=1000)`` and loads it with nibabel, checking every point against the original.
3. On a ``LocalCluster`` with both plugins (one prefetch budget per worker; partitions placed on
   workers, each worker opening its next partitions while the current ones compute),
   ``read_tractogram`` reads the shards in parallel (one rolling-prefetched stream per partition)
   and computes every streamline's length in mm, chunk by chunk, checked against the same
   computation on nibabel's streamlines.
"""

from __future__ import annotations

import os
import time

import numpy as np
import s3fs
from distributed import Client, LocalCluster
from nibabel.streamlines import TrkFile

from dask_prefetch import S3PrefetchFileSystem, process_stats, read_tractogram, register_plugins
from dask_prefetch.formats import StreamlineChunk
from dask_prefetch.testing import LocalS3Server
from dask_prefetch.testing.tractograms import synthetic_streamlines, upload_sharded

MiB = 2**20
HEADER = 1000


def main() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    shards = [synthetic_streamlines(2000, seed) for seed in range(6)]
    expected = [s for shard in shards for s in shard]
    with LocalS3Server() as server:
        options = server.storage_options()
        raw = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        fs = S3PrefetchFileSystem(**options)
        raw.mkdir("tractography")
        paths = upload_sharded(raw, "tractography/tractogram", shards)
        sizes = fs.sizes(paths)
        print(f"S3 at {server.endpoint_url}: {len(paths) - 1} shards + header, {sum(sizes) / MiB:.1f} MiB")

        started = time.perf_counter()
        with fs.open(paths, header_bytes=HEADER, block_size=MiB, part_size=MiB // 4) as f:
            trk = TrkFile.load(f, lazy_load=False)
            stats = f.stats
        elapsed = time.perf_counter() - started
        got = trk.streamlines
        assert len(got) == len(expected), (len(got), len(expected))
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
        print(
            f"one logical file: {len(got)} streamlines, every point matches; {elapsed:.2f} s, "
            f"{stats.requests} ranged GETs, up to {stats.peak_in_flight} in flight"
        )

        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster) as c:
            register_plugins(c)  # tiers: dask-prefetch.storage, else /dev/shm (or the temp dir), 1 GiB per worker
            tg = read_tractogram([f"s3://{p}" for p in paths], storage_options=options)
            lengths_mm = tg.map_chunks(StreamlineChunk.arc_lengths).compute()
            lengths_mm = np.concatenate(lengths_mm)
            per_worker = c.run(process_stats)
        opened = sum(s.files_opened for s in per_worker.values())
        waited = sum(s.start_stall_seconds for s in per_worker.values())
        reference = np.array([np.linalg.norm(np.diff(s.astype(np.float64), axis=0), axis=1).sum() for s in got])
        np.testing.assert_allclose(lengths_mm, reference, rtol=1e-9)
        counts, edges = np.histogram(lengths_mm, bins=5)
        print(f"read_tractogram on a LocalCluster: {tg}, {len(lengths_mm)} streamline lengths (mm), as nibabel's")
        print(
            f"  {opened} streams opened on 2 workers, {1000 * waited / max(opened, 1):.0f} ms mean wait for first bytes"
        )
        for n, lo, hi in zip(counts, edges, edges[1:]):
            print(f"  {lo:6.1f}-{hi:6.1f} mm {'#' * int(60 * n / counts.max())} {n}")
    print("demo OK")


if __name__ == "__main__":
    main()
