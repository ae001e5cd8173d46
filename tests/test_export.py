"""Tractogram.to_nibabel / to_sft: back to nibabel's and dipy's own objects, equal to their loaders'."""

from __future__ import annotations

import operator
import os

import dask.array as da
import nibabel as nib
import numpy as np
import pytest
from conftest import BUCKET
from nibabel.testing import data_path

from dask_prefetch import read_tractogram


def dipy_file(name: str) -> str:
    import dipy

    return os.path.join(os.path.dirname(dipy.__file__), "data", "files", name)


@pytest.mark.parametrize("path", [os.path.join(data_path, "complex.trk"), os.path.join(data_path, "standard.tck"),
                                  dipy_file("tracks300.trk")], ids=os.path.basename)
def test_to_nibabel_equals_nibabels_own_load(raw_fs, storage_options, tiers, path):
    key = f"{BUCKET}/{os.path.basename(path)}"
    raw_fs.put(path, key)
    got = read_tractogram(f"s3://{key}", storage_options=storage_options, prefetch_storage=tiers(8)).to_nibabel()
    ref = nib.streamlines.load(path).tractogram
    assert isinstance(got, nib.streamlines.Tractogram)
    np.testing.assert_array_equal(got.affine_to_rasmm, np.eye(4))
    assert len(got.streamlines) == len(ref.streamlines)
    for a, b in zip(got.streamlines, ref.streamlines):
        np.testing.assert_array_equal(a, b)
    assert sorted(got.data_per_point) == sorted(ref.data_per_point)
    for name in ref.data_per_point:
        np.testing.assert_array_equal(got.data_per_point[name].get_data(), ref.data_per_point[name].get_data())
    assert sorted(got.data_per_streamline) == sorted(ref.data_per_streamline)
    for name in ref.data_per_streamline:
        np.testing.assert_array_equal(got.data_per_streamline[name], ref.data_per_streamline[name])


def test_to_sft_equals_dipys_load_tractogram_and_needs_a_reference_for_tck(tmp_path):
    from dipy.io.streamline import load_tractogram

    path = dipy_file("tracks300.trk")
    got = read_tractogram(path, npartitions=3).to_sft()
    ref = load_tractogram(path, "same", bbox_valid_check=False)
    np.testing.assert_array_equal(got.affine, ref.affine)
    np.testing.assert_array_equal(got.dimensions, ref.dimensions)
    assert got.space == ref.space and len(got.streamlines) == len(ref.streamlines)
    np.testing.assert_allclose(got.streamlines.get_data(), ref.streamlines.get_data(), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="TCK file stores no reference space: pass reference="):
        read_tractogram(os.path.join(data_path, "standard.tck")).to_sft()
    sft = read_tractogram(os.path.join(data_path, "standard.tck")).to_sft(reference=path)  # a TRK as the reference
    assert len(sft.streamlines) == len(nib.streamlines.load(os.path.join(data_path, "standard.tck")).streamlines)


def test_the_readme_recipes_with_dipys_own_functions(tmp_path):
    """A length histogram and a density map with dipy's functions, per partition, as the README shows."""
    from dipy.tracking.streamline import length
    from dipy.tracking.utils import density_map

    path = dipy_file("tracks300.trk")
    tg = read_tractogram(path, npartitions=4)
    affine, shape = np.eye(4), (160, 160, 160)  # 1 mm voxels (tracks300's own header volume is smaller than its points)
    hist, _ = da.histogram(tg.arc_lengths, bins=20, range=(0, 200))
    density = tg.map_chunks(lambda c: density_map(c.streamlines(), affine, shape)).fold(operator.add)
    hist, density = hist.compute(), density.compute(scheduler="threads")
    ref = nib.streamlines.load(path).streamlines
    np.testing.assert_array_equal(hist, np.histogram(length(ref), bins=20, range=(0, 200))[0])
    np.testing.assert_array_equal(density, density_map(ref, affine, shape))
    assert density.sum() > 0


def test_a_trx_to_sft_and_to_nibabel_equal_trx_pythons_own(tmp_path):
    from trx import trx_file_memmap as tmm

    from dask_prefetch.testing.trx import write_trx

    path = write_trx(tmp_path / "a.trx")
    ref = tmm.load(str(path))
    try:
        tg = read_tractogram(str(path), npartitions=3)
        sft, tractogram = tg.to_sft(), tg.to_nibabel()
        np.testing.assert_allclose(sft.affine, ref.header["VOXEL_TO_RASMM"])
        np.testing.assert_array_equal(sft.dimensions, ref.header["DIMENSIONS"])
        np.testing.assert_array_equal(sft.streamlines.get_data(), ref.streamlines.get_data())
        assert sorted(tractogram.data_per_point) == sorted(ref.data_per_vertex)
        for name in ref.data_per_vertex:
            np.testing.assert_array_equal(tractogram.data_per_point[name].get_data(), ref.data_per_vertex[name].get_data())
        for name in ref.data_per_streamline:
            np.testing.assert_array_equal(tractogram.data_per_streamline[name], ref.data_per_streamline[name])
    finally:
        ref.close()
