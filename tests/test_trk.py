"""The TRK reader against nibabel, on its shipped files and on synthetic tractograms; corrupt input."""

from __future__ import annotations

import io
from pathlib import Path

import dask.config
import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nibabel.streamlines import Tractogram, TrkFile

from dask_prefetch.formats import CorruptTractogramError, StreamlineChunk, detect_format, open_reader
from dask_prefetch.formats.chunk import PointsBuilder
from dask_prefetch.formats.kernels import compiled
from dask_prefetch.formats.trk import TrkReader, read_trk_header

DATA = Path(nib.__file__).parent / "tests" / "data"
SHIPPED = ["standard.trk", "standard.LPS.trk", "simple.trk", "complex.trk", "complex_big_endian.trk", "empty.trk"]


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def parser_path(request):
    """Every test runs on both paths: numba kernels, and numpy (``compiled-parsers: false``)."""
    with dask.config.set({"dask-prefetch.compiled-parsers": request.param == "compiled"}):
        assert (compiled() is not None) == (request.param == "compiled"), "numba is a dependency: it must work here"
        yield request.param


class ShortReads(io.BytesIO):
    """A file object whose reads return at most 7 bytes."""

    def read(self, n=-1):
        return super().read(7 if n is None or n < 0 else min(n, 7))

    def readinto(self, b):
        return super().readinto(memoryview(b)[:7])


def read_all(fileobj, **kwargs) -> StreamlineChunk:
    return StreamlineChunk.concat(list(TrkReader(fileobj, "test.trk", **kwargs)))


def assert_same_as_nibabel(chunk: StreamlineChunk, reference) -> None:
    assert len(chunk) == len(reference.streamlines)
    assert chunk.points.dtype == np.float32 and chunk.points.shape == (chunk.lengths.sum(), 3)
    np.testing.assert_array_equal(chunk.points, reference.streamlines.get_data().reshape(-1, 3))
    np.testing.assert_array_equal(chunk.lengths, reference.streamlines._lengths)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("chunk_bytes", [64, 1000, 8 << 20])
def test_shipped_files_equal_nibabel(name, chunk_bytes):
    reference = nib.streamlines.load(DATA / name)
    with open(DATA / name, "rb") as f:
        chunk = read_all(f, chunk_bytes=chunk_bytes)
    assert_same_as_nibabel(chunk, reference)


@pytest.mark.parametrize("name", ["complex.trk", "complex_big_endian.trk"])
def test_scalars_and_properties(name):
    reference = nib.streamlines.load(DATA / name)
    with open(DATA / name, "rb") as f:
        reader = TrkReader(f, name, chunk_bytes=100)
        chunk = StreamlineChunk.concat(list(reader))
    header = reader.header
    # one name per field, as nibabel's keys, with its columns (issue #20: 'colors' came once per column)
    assert header.scalar_names == tuple(reference.tractogram.data_per_point) == ("colors", "fa")
    assert header.scalar_columns == (3, 1) and header.n_scalars == 4
    assert header.scalar_column_names == ("colors", "colors", "colors", "fa")
    assert header.property_names == tuple(reference.tractogram.data_per_streamline)
    assert header.property_columns == (3, 1, 1) and header.n_properties == 5
    per_point = reference.tractogram.data_per_point
    np.testing.assert_array_equal(chunk.scalars[:, :3], per_point["colors"].get_data())
    np.testing.assert_array_equal(chunk.scalars[:, 3:], per_point["fa"].get_data())
    per_streamline = reference.tractogram.data_per_streamline
    np.testing.assert_array_equal(chunk.properties[:, :3], per_streamline["mean_colors"])
    np.testing.assert_array_equal(chunk.properties[:, 4:5], per_streamline["mean_torsion"])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(0, 60), chunk_bytes=st.integers(1, 5000))
def test_synthetic_tractograms_in_any_chunking(seed, n, chunk_bytes):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 40, n)
    if n and not lengths.any():
        lengths[0] = 1  # nibabel drops empty streamlines, and fails to write a tractogram of only those
    streamlines = [rng.normal(0, 20, (k, 3)).astype(np.float32) for k in lengths]
    buf = io.BytesIO()
    TrkFile(Tractogram(streamlines, affine_to_rasmm=np.eye(4))).save(buf)
    data = buf.getvalue()
    reference = TrkFile.load(io.BytesIO(data), lazy_load=False)
    assert_same_as_nibabel(read_all(io.BytesIO(data), chunk_bytes=chunk_bytes), reference)


def test_short_reads_are_not_mistaken_for_eof():
    data = (DATA / "standard.trk").read_bytes()
    assert_same_as_nibabel(read_all(ShortReads(data), chunk_bytes=1 << 20), nib.streamlines.load(DATA / "standard.trk"))


def test_n_count_limits_the_streamlines_and_zero_means_to_the_end():
    data = bytearray((DATA / "standard.trk").read_bytes())
    data[988:992] = np.int32(5).tobytes()
    assert len(read_all(io.BytesIO(bytes(data)))) == 5
    assert len(read_all(io.BytesIO(bytes(data)), ignore_count=True)) == 120
    data[988:992] = np.int32(0).tobytes()
    header = read_trk_header(io.BytesIO(bytes(data)))
    assert header.nb_streamlines is None and len(read_all(io.BytesIO(bytes(data)))) == 120


def test_a_body_after_a_header_parsed_elsewhere():
    data = (DATA / "standard.trk").read_bytes()
    header = read_trk_header(io.BytesIO(data[:1000]))
    chunk = StreamlineChunk.concat(list(TrkReader(io.BytesIO(data[1000:]), "body", header=header)))
    assert_same_as_nibabel(chunk, nib.streamlines.load(DATA / "standard.trk"))


def test_detection_by_magic_number_not_extension():
    with open(DATA / "standard.trk", "rb") as f:
        assert detect_format(f.read(13)) == "trk"
        f.seek(0)
        assert open_reader(f, "tractogram.bin").header.format == "trk"
    with open(DATA / "standard.tck", "rb") as f:
        assert detect_format(f.read(13)) == "tck"


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda d: d[:500], r"at byte 500: TRK header needs 1000 bytes"),
        (lambda d: b"TRICK" + d[5:], r"at byte 0: not a TRK file"),
        (lambda d: d[:996] + np.int32(999).tobytes() + d[1000:], r"at byte 996: hdr_size"),
        (lambda d: d[:-6], r"at byte \d+: truncated record"),
        (lambda d: d[:1000] + np.int32(2**30).tobytes() + d[1004:], r"at byte 1000: absurd point count 1073741824"),
        (lambda d: d[:1000] + np.int32(-3).tobytes() + d[1004:], r"at byte 1000: absurd point count -3"),
    ],
)
def test_corrupt_input_names_file_and_offset(corrupt, match):
    data = (DATA / "standard.trk").read_bytes()
    with pytest.raises(CorruptTractogramError, match=rf"^test.trk: {match}"):
        read_all(io.BytesIO(corrupt(data)))
    assert issubclass(CorruptTractogramError, ValueError)


def test_bytes_after_the_announced_count_are_ignored_as_nibabel_does():
    data = bytearray((DATA / "standard.trk").read_bytes())
    data[988:992] = np.int32(20).tobytes()
    data += np.int32(-1).tobytes() * 3  # junk after the 20th record's end... and after the last record
    assert len(read_all(io.BytesIO(bytes(data)))) == 20


def test_zero_voxel_sizes_are_refused_rather_than_giving_nan_points():
    data = bytearray((DATA / "standard.trk").read_bytes())
    data[12:24] = np.zeros(3, np.float32).tobytes()
    with pytest.raises(CorruptTractogramError, match="at byte 12: voxel sizes must be > 0"):
        read_all(io.BytesIO(bytes(data)))


@pytest.mark.parametrize(
    "name", ["standard.trk", "standard.LPS.trk", "complex_big_endian.trk", "empty.trk", "complex.trk"]
)
@pytest.mark.parametrize("chunk_bytes", [7, 100, None])
def test_read_all_equals_the_chunks_joined(name, chunk_bytes):
    data = (DATA / name).read_bytes()
    joined = StreamlineChunk.concat(list(TrkReader(io.BytesIO(data), name, chunk_bytes=chunk_bytes)))
    whole = TrkReader(io.BytesIO(data), name, chunk_bytes=chunk_bytes).read_all()
    np.testing.assert_array_equal(whole.points, joined.points)
    np.testing.assert_array_equal(whole.lengths, joined.lengths)
    assert whole.points.dtype == np.float32 and whole.points.flags.c_contiguous


def test_read_all_appends_several_files_into_one_array():
    files = [(DATA / n).read_bytes() for n in ("standard.trk", "standard.LPS.trk", "standard.trk")]
    builder = PointsBuilder(capacity=1)  # too small: it grows
    for data in files:
        TrkReader(io.BytesIO(data)).read_all(into=builder)
    whole = builder.finish()
    joined = StreamlineChunk.concat([StreamlineChunk.concat(list(TrkReader(io.BytesIO(d)))) for d in files])
    np.testing.assert_array_equal(whole.points, joined.points)
    np.testing.assert_array_equal(whole.lengths, joined.lengths)


@pytest.mark.parametrize("rotated", [False, True])
def test_voxmm_to_rasmm_with_and_without_rotation_equals_nibabel(rotated):
    angle = 0.3 if rotated else 0.0
    c, s = np.cos(angle), np.sin(angle)
    affine = np.array([[2 * c, -2 * s, 0, 90], [2 * s, 2 * c, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])
    rng = np.random.default_rng(5)
    streamlines = [rng.uniform(-60, 60, (k, 3)).astype(np.float32) for k in rng.integers(2, 50, 300)]
    header = {"dimensions": (91, 109, 91), "voxel_sizes": (2.0, 2.0, 2.0), "voxel_to_rasmm": affine}
    buf = io.BytesIO()
    TrkFile(Tractogram(streamlines, affine_to_rasmm=np.eye(4)), header=header).save(buf)
    data = buf.getvalue()
    want = TrkFile.load(io.BytesIO(data)).streamlines.get_data()
    whole = TrkReader(io.BytesIO(data), chunk_bytes=1000).read_all()
    joined = StreamlineChunk.concat(list(TrkReader(io.BytesIO(data), chunk_bytes=1000)))
    np.testing.assert_array_equal(whole.points, want)
    np.testing.assert_array_equal(joined.points, want)


@pytest.mark.parametrize("rotated", [False, True])
def test_non_finite_coordinates_propagate_as_in_nibabel(rotated):
    """An inf coordinate times an off-diagonal zero is NaN in nibabel's product: the fast paths must agree."""
    affine = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])
    if rotated:
        affine[:2, :2] = [[0, -2], [2, 0]]
    rng = np.random.default_rng(6)
    streamlines = [rng.uniform(-60, 60, (k, 3)).astype(np.float32) for k in rng.integers(2, 30, 200)]
    streamlines[3][1] = [np.inf, 1, 2]
    streamlines[50][0] = [3, np.nan, -np.inf]
    streamlines[199][-1] = [4, 5, -np.inf]
    header = {"dimensions": (91, 109, 91), "voxel_sizes": (2.0, 2.0, 2.0), "voxel_to_rasmm": affine}
    buf = io.BytesIO()
    with np.errstate(invalid="ignore"):
        TrkFile(Tractogram(streamlines, affine_to_rasmm=np.eye(4)), header=header).save(buf)
        want = TrkFile.load(io.BytesIO(buf.getvalue())).streamlines.get_data()
        assert np.isnan(want).any()
        for chunk_bytes in (100, None):
            joined = read_all(io.BytesIO(buf.getvalue()), chunk_bytes=chunk_bytes)
            np.testing.assert_array_equal(joined.points, want)
        np.testing.assert_array_equal(TrkReader(io.BytesIO(buf.getvalue())).read_all().points, want)
