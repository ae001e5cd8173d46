"""One TRK file split into partitions: equal to nibabel, or a clear error -- never other streamlines."""

from __future__ import annotations

import io
import os
import tempfile

import dask
import nibabel as nib
import numpy as np
import pytest
from conftest import BUCKET
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nibabel.streamlines import Tractogram, TrkFile
from nibabel.testing import data_path

from dask_prefetch import read_tractogram
from dask_prefetch.formats import CorruptTractogramError
from dask_prefetch.formats.trk import parse_trk_header
from dask_prefetch.formats.trk_split import find_record_start


def dipy_file(name: str) -> str:
    import dipy

    return os.path.join(os.path.dirname(dipy.__file__), "data", "files", name)


def reference(data: bytes):
    return TrkFile.load(io.BytesIO(data), lazy_load=False).tractogram


def assert_equal_to_nibabel(tg, data: bytes) -> None:
    ref = reference(data)
    chunks = tg.to_chunks().compute(scheduler="threads")
    points = np.concatenate([c.points for c in chunks])
    lengths = np.concatenate([c.lengths for c in chunks])
    np.testing.assert_array_equal(lengths, ref.streamlines._lengths)
    np.testing.assert_array_equal(points, ref.streamlines.get_data())
    if ref.data_per_point:  # scalars, in nibabel's column order
        scalars = np.concatenate([c.scalars for c in chunks])
        np.testing.assert_array_equal(scalars, np.hstack([ref.data_per_point[k].get_data() for k in ref.data_per_point]))
    if ref.data_per_streamline:
        props = np.concatenate([c.properties for c in chunks])
        np.testing.assert_array_equal(props, np.hstack([ref.data_per_streamline[k] for k in ref.data_per_streamline]))


def with_n_count(data: bytes, n: int) -> bytes:
    out = bytearray(data)
    out[988:992] = np.int32(n).astype(np.dtype(parse_trk_header(data[:1000]).fields["_endianness"] + "i4")).tobytes()
    return bytes(out)


FILES = [
    dipy_file("tracks300.trk"),
    os.path.join(data_path, "standard.trk"),
    os.path.join(data_path, "complex.trk"),  # scalars and properties
    os.path.join(data_path, "complex_big_endian.trk"),
]


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
@pytest.mark.parametrize("k", [2, 3, 8])
@pytest.mark.parametrize("n_count", ["as-is", 0, "fewer"])
def test_one_trk_split_k_ways_equals_nibabel(tmp_path, path, k, n_count):
    data = open(path, "rb").read()
    claimed = parse_trk_header(data[:1000]).nb_streamlines or len(reference(data).streamlines)
    if n_count != "as-is":  # 0: read to the end; fewer: nibabel stops after them
        data = with_n_count(data, 0 if n_count == 0 else max(1, claimed // 2))
    local = tmp_path / "one.trk"
    local.write_bytes(data)
    tg = read_tractogram(str(local), npartitions=k)
    assert tg.npartitions <= k  # fewer where two cuts fall in one record (complex.trk has 3 streamlines)
    if len(reference(data).streamlines) > 100:
        assert tg.npartitions == k and all(p.kind == "trk-range" for p in tg.partitions)
    assert_equal_to_nibabel(tg, data)


def test_split_from_s3_equals_nibabel_and_the_default_is_one_partition_per_256_mib(raw_fs, storage_options, tiers):
    data = open(dipy_file("tracks300.trk"), "rb").read()
    raw_fs.pipe(f"{BUCKET}/one.trk", data)
    tg = read_tractogram(f"s3://{BUCKET}/one.trk", storage_options=storage_options, prefetch_storage=tiers(8),
                         block_size="64 KiB", npartitions=4)
    assert tg.npartitions == 4
    assert_equal_to_nibabel(tg, data)
    assert read_tractogram(f"s3://{BUCKET}/one.trk", storage_options=storage_options).npartitions == 1  # < 256 MiB


def test_a_partition_computed_alone_equals_nibabels_streamlines(tmp_path):
    data = open(dipy_file("tracks300.trk"), "rb").read()
    (tmp_path / "one.trk").write_bytes(data)
    tg = read_tractogram(str(tmp_path / "one.trk"), npartitions=4)
    chunks = [d.compute() for d in tg.to_chunks().to_delayed()]  # each partition on its own
    ref = reference(data).streamlines
    got = [s for chunk in chunks for c in chunk for s in c.streamlines()]
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)


def hostile(n_fake: int = 600) -> bytes:
    """A TRK whose one long streamline's coordinates are bytes that parse as a perfect chain of fake records.

    The record's float words alternate ``int32 1`` (a denormal float: a valid coordinate) and
    three finite floats, so from any of those words a chain of one-point records validates;
    nibabel reads them as the coordinates they are. Written byte by byte (nibabel's writer
    would shift the coordinates by half a voxel).
    """
    rng = np.random.default_rng(3)
    buf = io.BytesIO()
    TrkFile(Tractogram([np.zeros((1, 3), np.float32)], affine_to_rasmm=np.eye(4))).save(buf)
    header = bytearray(buf.getvalue()[:1000])
    words = np.tile(np.array([1, 0, 0, 0], np.int32), n_fake)
    words.view(np.float32).reshape(-1, 4)[:, 1:] = 10.0
    fake_points = words.view(np.float32).reshape(-1, 3)  # 4 n_fake / 3 points
    records = [rng.uniform(1, 50, (int(m), 3)).astype(np.float32) for m in rng.integers(2, 30, 30)]
    records.insert(15, fake_points)
    header[988:992] = np.int32(len(records)).tobytes()
    body = b"".join(np.int32(len(r)).tobytes() + r.tobytes() for r in records)
    return bytes(header) + body


def test_a_hostile_file_gives_a_clear_error_or_nibabels_streamlines_never_others(tmp_path):
    data = hostile()
    (tmp_path / "h.trk").write_bytes(data)
    header = parse_trk_header(data[:1000])
    middle = len(data) // 2 // 4 * 4
    assert find_record_start(data[middle : middle + 65536], middle, header) is not None  # a fake candidate is found
    errors = 0
    for k in (2, 3, 5, 8):
        tg = read_tractogram(str(tmp_path / "h.trk"), npartitions=k)
        for i, part in enumerate(tg.to_chunks().to_delayed()):  # every partition alone, and all together
            try:
                got = part.compute()[0]
            except CorruptTractogramError as e:
                assert "h.trk" in str(e) and "byte" in str(e)
                errors += 1
                continue
            ref = reference(data).streamlines
            first = sum(len(c[0]) for c in [p.compute() for p in tg.to_chunks().to_delayed()[:i]])
            for a, b in zip(got.streamlines(), list(ref)[first:]):
                np.testing.assert_array_equal(a, b)
        try:
            assert_equal_to_nibabel(tg, data)
        except CorruptTractogramError:
            errors += 1
    assert errors  # the fake chain was caught, not read


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(1, 60),
    k=st.integers(2, 9),
    n_scalars=st.integers(0, 2),
    n_properties=st.integers(0, 2),
    adversarial=st.booleans(),
)
def test_random_tractograms_and_cuts_equal_nibabel_or_raise(seed, n, k, n_scalars, n_properties, adversarial):
    rng = np.random.default_rng(seed)
    streamlines = [np.cumsum(rng.normal(0, 2, (m, 3)), axis=0).astype(np.float32) for m in rng.integers(1, 40, n)]
    if adversarial:  # coordinates whose bytes are count words of small records
        i = int(rng.integers(len(streamlines)))
        words = streamlines[i].view(np.int32)
        words[:: 1 + int(rng.integers(0, 4))] = rng.integers(1, 4)
    dpp = {f"s{j}": [rng.random((len(s), 1)).astype(np.float32) for s in streamlines] for j in range(n_scalars)}
    dps = {f"p{j}": rng.random((len(streamlines), 1)).astype(np.float32) for j in range(n_properties)}
    buf = io.BytesIO()
    tractogram = Tractogram(streamlines, data_per_point=dpp, data_per_streamline=dps, affine_to_rasmm=np.eye(4))
    TrkFile(tractogram).save(buf)
    data = buf.getvalue()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "r.trk")
        with open(path, "wb") as f:
            f.write(data)
        tg = read_tractogram(path, npartitions=k)
        try:
            assert_equal_to_nibabel(tg, data)
        except CorruptTractogramError as e:
            assert adversarial, f"a well-formed file failed to split: {e}"
