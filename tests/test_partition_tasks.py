"""Finding read_tractogram partitions in task specs, whatever graph optimization made of them."""

from __future__ import annotations

import dask
import numpy as np
import pytest

from dask_prefetch.cluster.tasks import find_partition_read
from dask_prefetch.tractography.partitions import Opener, Partition
from dask_prefetch.formats import TractogramHeader
from dask_prefetch.tractography.tractogram import Tractogram

PARTS = [Partition("files", (f"part{i}.trk",), nbytes=100 + i) for i in range(3)]


@pytest.fixture
def tractogram() -> Tractogram:
    return Tractogram(TractogramHeader("trk", np.eye(4), None, 1000), PARTS, Opener(None, {}), 1024, "id")


def graph(collection, optimize: bool) -> dict:
    return dict(dask.base.collections_to_expr([collection], optimize_graph=optimize).__dask_graph__())


@pytest.mark.parametrize("optimize", [True, False])
@pytest.mark.parametrize("make", ["lengths-sum", "points", "bag-count", "map_chunks"])
def test_every_partition_is_found_once(tractogram, make, optimize):
    collection = {
        "lengths-sum": lambda: tractogram.lengths.sum(),
        "points": lambda: tractogram.points,
        "bag-count": lambda: tractogram.to_bag().count(),
        "map_chunks": lambda: tractogram.map_chunks(len),
    }[make]()
    found = [read for read in map(find_partition_read, graph(collection, optimize).values()) if read is not None]
    assert sorted((r.partition for r in found), key=PARTS.index) == PARTS  # each read task once, fused or not
    assert all(r.opener == tractogram._opener for r in found)


def test_other_tasks_are_not_reads():
    data = list(range(10_000))
    other = dask.bag.from_sequence(data, npartitions=4).map(lambda x: x + 1).sum()
    assert all(find_partition_read(node) is None for node in graph(other, True).values())
    assert find_partition_read(None) is None and find_partition_read((len, [1, 2])) is None
