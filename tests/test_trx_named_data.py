"""Named data (#14 item 2) on TRK too: nibabel's data_per_point / data_per_streamline names, chunks and collections."""

from __future__ import annotations

import pickle
from pathlib import Path

import dask
import nibabel as nib
import numpy as np
import pytest

from dask_prefetch import read_tractogram
from dask_prefetch.formats import StreamlineChunk
from dask_prefetch.formats.trk import TrkReader

DATA = Path(nib.__file__).parent / "tests" / "data"


@pytest.mark.parametrize("name", ["complex.trk", "complex_big_endian.trk"])
def test_trk_chunks_name_their_scalars_and_properties_as_nibabel(name):
    path = DATA / name
    ref = nib.streamlines.load(str(path)).tractogram
    with open(path, "rb") as f:
        chunk = TrkReader(f, str(path), chunk_bytes=64).read_all()  # several chunks joined
    assert sorted(chunk.data_per_point) == sorted(ref.data_per_point) == ["colors", "fa"]
    assert sorted(chunk.data_per_streamline) == sorted(ref.data_per_streamline)
    for key in ref.data_per_point:
        np.testing.assert_array_equal(chunk.data_per_point[key], ref.data_per_point[key].get_data())
        assert np.shares_memory(chunk.data_per_point[key], chunk.scalars)  # views, not copies
    for key in ref.data_per_streamline:
        np.testing.assert_array_equal(chunk.data_per_streamline[key], ref.data_per_streamline[key])
    copy = pickle.loads(pickle.dumps(chunk))
    assert len(pickle.dumps(chunk)) < chunk.points.nbytes + chunk.scalars.nbytes + chunk.properties.nbytes + 2000
    np.testing.assert_array_equal(copy.data_per_point["colors"], chunk.data_per_point["colors"])
    assert np.shares_memory(copy.data_per_point["colors"], copy.scalars)


def test_trk_collections_by_name(tmp_path):
    paths = [str(DATA / "complex.trk"), str(tmp_path / "again.trk")]
    Path(paths[1]).write_bytes((DATA / "complex.trk").read_bytes())
    ref = nib.streamlines.load(paths[0]).tractogram
    tg = read_tractogram(paths, npartitions=2)
    (colors, fa, torsion), lengths = dask.compute(
        [tg.data_per_point["colors"], tg.data_per_point["fa"], tg.data_per_streamline["mean_torsion"]], tg.lengths,
        scheduler="sync",
    )
    np.testing.assert_array_equal(colors, np.concatenate([ref.data_per_point["colors"].get_data()] * 2))
    np.testing.assert_array_equal(fa, np.concatenate([ref.data_per_point["fa"].get_data()] * 2))
    np.testing.assert_array_equal(torsion, np.concatenate([ref.data_per_streamline["mean_torsion"]] * 2))
    assert len(colors) == lengths.sum() and len(torsion) == len(lengths)
    assert tg.data_per_point["colors"].dtype == np.float32 and tg.groups == {}


def test_joining_chunks_that_name_their_data_differently_is_refused():
    points, lengths, scalars = np.zeros((2, 3), np.float32), np.array([2]), np.zeros((2, 1), np.float32)
    a = StreamlineChunk(points, lengths, scalars, scalar_fields=(("fa", 1),))
    b = StreamlineChunk(points, lengths, scalars, scalar_fields=(("md", 1),))
    with pytest.raises(ValueError, match="scalar_fields differ"):
        StreamlineChunk.concat([a, b])
    joined = StreamlineChunk.concat([a, a])
    assert joined.data_per_point["fa"].shape == (4, 1) and np.shares_memory(joined.data_per_point["fa"], joined.scalars)
    with pytest.raises(ValueError, match="do not match"):
        StreamlineChunk(points, lengths, scalars, scalar_fields=(("c", 3),))


def test_the_head_of_a_chunk_keeps_its_named_data():
    with open(DATA / "complex.trk", "rb") as f:
        chunk = TrkReader(f, "complex.trk").read_all()
    chunk.data_per_point["extra"] = np.arange(len(chunk.points))[:, None]
    head = chunk.head(2)
    n = int(chunk.lengths[:2].sum())
    assert sorted(head.data_per_point) == ["colors", "extra", "fa"]
    np.testing.assert_array_equal(head.data_per_point["colors"], chunk.data_per_point["colors"][:n])
    np.testing.assert_array_equal(head.data_per_point["extra"][:, 0], np.arange(n))
    torsion = chunk.data_per_streamline["mean_torsion"]
    np.testing.assert_array_equal(head.data_per_streamline["mean_torsion"], torsion[:2])
    assert np.shares_memory(head.data_per_point["fa"], head.scalars)
