"""A cluster job: the histogram of streamline lengths of a sharded tractogram, with both plugins.

    python examples/cluster_length_histogram.py

On a 2-worker ``LocalCluster`` with ``PrefetchSchedulerPlugin`` and ``PrefetchWorkerPlugin``
(each worker one prefetch budget, partitions placed on workers, the next ones opened while the
current ones compute): ``read_tractogram`` over a global header + 6 shards on a local S3 server,
points per streamline as a dask array, their histogram with ``dask.array.histogram``, and the
arc length in mm of every streamline with ``map_chunks``; checked against nibabel.
"""

from __future__ import annotations

import io
import os

import dask.array as da
import numpy as np
import s3fs
from distributed import Client, LocalCluster
from nibabel.streamlines import TrkFile

from dask_prefetch import read_tractogram, register_plugins
from dask_prefetch.formats import StreamlineChunk
from dask_prefetch.testing import LocalS3Server
from dask_prefetch.testing.tractograms import sharded_tractogram, upload_sharded


def main() -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    shards = sharded_tractogram(30, 6, seed=3)
    with LocalS3Server() as server:
        options = server.storage_options()
        raw = s3fs.S3FileSystem(**options, skip_instance_cache=True)
        raw.mkdir("lab")
        paths = upload_sharded(raw, "lab/subject01", shards)
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster) as c:
            register_plugins(c)
            tg = read_tractogram("s3://lab/subject01.*", storage_options=options)
            counts, edges = da.histogram(tg.lengths, bins=10, range=(0, 200))
            counts, mm = c.compute([counts, tg.map_chunks(StreamlineChunk.arc_lengths)], sync=True)
        whole = raw.cat(paths[0]) + b"".join(raw.cat(p)[1000:] for p in paths[1:])
    reference = TrkFile.load(io.BytesIO(whole), lazy_load=False).streamlines
    assert np.array_equal(counts, np.histogram(reference._lengths, bins=10, range=(0, 200))[0])
    mm = np.concatenate(mm)
    assert len(mm) == len(reference)
    print(f"{len(mm):,} streamlines in {tg.npartitions} partitions; mean length {mm.mean():.1f} mm")
    for n, lo, hi in zip(counts, edges, edges[1:]):
        print(f"  {lo:4.0f}-{hi:<4.0f} points {'#' * int(50 * n / counts.max())} {n}")
    print("demo OK")


if __name__ == "__main__":
    main()
