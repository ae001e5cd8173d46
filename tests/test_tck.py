"""The TCK parser against nibabel: shipped files, synthetic random walks, byte-range splits, bad input."""

from __future__ import annotations

import io
import re
from pathlib import Path

import nibabel
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nibabel.streamlines import TckFile, Tractogram

from dask_prefetch.formats.chunk import StreamlineChunk
from dask_prefetch.formats.errors import CorruptTractogramError
from dask_prefetch.formats.tck import TckReader, read_tck_header, tck_byte_ranges

DATA = Path(nibabel.__file__).parent / "tests" / "data"
GOOD = [
    "standard.tck",
    "simple.tck",
    "simple_big_endian.tck",
    "matlab_nan.tck",
    "multiline_header_field.tck",
    "empty.tck",
]
BAD = ["no_magic_number.tck", "no_header_end.tck", "no_header_end_eof.tck"]
NAN = np.full((1, 3), np.nan, np.float32)
INF = np.full((1, 3), np.inf, np.float32)


class ShortReads(io.BytesIO):
    """At most 7 bytes per call, however many were asked for (full reads only at EOF)."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(7 if size is None or size < 0 else min(size, 7))

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        return super().readinto(view[:7])


def read_all(fileobj, name: str = "<file>", **kwargs) -> StreamlineChunk:
    return StreamlineChunk.concat(list(TckReader(fileobj, name, **kwargs)))


def assert_same(chunk: StreamlineChunk, expected) -> None:
    got = chunk.streamlines()
    assert len(got) == len(expected)
    assert chunk.points.dtype == np.float32 and chunk.points.dtype.isnative and chunk.lengths.dtype == np.int64
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def random_walks(seed: int, n: int, max_len: int = 60) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.cumsum(rng.normal(size=(k, 3)), axis=0).astype(np.float32) for k in rng.integers(1, max_len, n)]


def nibabel_tck(streamlines: list[np.ndarray], big_endian: bool = False) -> bytes:
    """A TCK written by nibabel (which writes Float32LE), optionally turned big-endian in place."""
    buf = io.BytesIO()
    TckFile(Tractogram(streamlines, affine_to_rasmm=np.eye(4))).save(buf)
    raw = buf.getvalue()
    if not big_endian:
        return raw
    offset = read_tck_header(io.BytesIO(raw)).data_offset
    head = raw[:offset].replace(b"datatype: Float32LE", b"datatype: Float32BE")
    return head + np.frombuffer(raw[offset:], "<f4").astype(">f4").tobytes()


def raw_tck(
    body: list[np.ndarray], header: str = "datatype: Float32LE", end: bytes = b"END\n", order: str = "<"
) -> bytes:
    """A TCK from raw rows (``body`` is stacked as is: include NaN/Inf rows yourself)."""
    rows = np.concatenate(body) if body else np.empty((0, 3), np.float32)
    head = f"mrtrix tracks\n{header}\nfile: . 0000\n".encode() + end
    head = head.replace(b"0000", b"%04d" % len(head))
    return head + rows.astype(order + "f4").tobytes()


def with_nan(streamlines: list[np.ndarray]) -> list[np.ndarray]:
    return [part for s in streamlines for part in (s, NAN)]


# --- nibabel's shipped files ---------------------------------------------------------------------


@pytest.mark.parametrize("chunk_bytes", [12, 100, 4096, 8 * 2**20])
@pytest.mark.parametrize("filename", GOOD)
def test_shipped_files_match_nibabel(filename, chunk_bytes):
    path = DATA / filename
    expected = nibabel.streamlines.load(path)
    with open(path, "rb") as f:
        reader = TckReader(f, str(path), chunk_bytes=chunk_bytes)
        chunk = read_all(f, header=reader.header, chunk_bytes=chunk_bytes)
        assert_same(StreamlineChunk.concat(list(reader)), expected.streamlines)
    assert_same(chunk, expected.streamlines)
    header = reader.header
    assert header.format == "tck" and header.data_offset == expected.header["_offset_data"]
    np.testing.assert_array_equal(header.voxel_to_rasmm, np.eye(4))
    assert header.fields["_dtype"] == expected.header["_dtype"]
    for key, value in expected.header.items():
        if isinstance(value, str) and key != "endianness":  # nibabel's own key
            assert header.fields[key] == value, key
    count = expected.header.get("count")
    assert header.nb_streamlines == (int(count) if count else None)


def test_multiline_field_joined_like_nibabel():
    fields = read_tck_header(open(DATA / "multiline_header_field.tck", "rb")).fields
    assert fields["command_history"].count("\n") == 2
    assert fields["command_history"] == nibabel.streamlines.load(DATA / "multiline_header_field.tck").header[
        "command_history"
    ]


@pytest.mark.parametrize("filename", BAD)
def test_shipped_malformed_files_raise(filename):
    path = DATA / filename
    with pytest.raises(CorruptTractogramError, match=rf"{filename}: at byte \d+"):
        with open(path, "rb") as f:
            read_all(f, str(path))


# --- synthetic tractograms -----------------------------------------------------------------------


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("chunk_bytes", [100, 4096, 8 * 2**20])
def test_random_walks_match_nibabel(big_endian, chunk_bytes):
    streamlines = random_walks(1, 300)
    raw = nibabel_tck(streamlines, big_endian)
    expected = TckFile.load(io.BytesIO(raw)).streamlines
    chunks = list(TckReader(io.BytesIO(raw), chunk_bytes=chunk_bytes))
    assert_same(StreamlineChunk.concat(chunks), expected)
    assert_same(StreamlineChunk.concat(chunks), streamlines)
    if chunk_bytes == 100:
        assert len(chunks) > 100  # many chunks, streamlines straddling them
    assert all(len(c) for c in chunks)


def test_short_reads_are_retried():
    raw = nibabel_tck(random_walks(2, 40))
    expected = TckFile.load(io.BytesIO(raw)).streamlines
    assert_same(read_all(ShortReads(raw), chunk_bytes=1000), expected)
    assert_same(read_all(ShortReads(raw)), expected)


def test_read_only_file_object():
    class ReadOnly:  # no readinto
        def __init__(self, raw: bytes) -> None:
            self._f = ShortReads(raw)
            self.read, self.seek, self.tell = self._f.read, self._f.seek, self._f.tell

    raw = nibabel_tck(random_walks(3, 20))
    assert_same(read_all(ReadOnly(raw), chunk_bytes=64), TckFile.load(io.BytesIO(raw)).streamlines)


@pytest.mark.parametrize("chunk_bytes", [12, 36, 100])
def test_empty_streamlines_skipped_like_nibabel(chunk_bytes):
    walks = random_walks(4, 5)
    w0, w1, w2, w3, w4 = walks
    body = [NAN, NAN, w0, NAN, NAN, NAN, w1, NAN, w2, NAN, NAN, w3, NAN, w4, NAN, NAN, INF]
    raw = raw_tck(body)
    expected = TckFile.load(io.BytesIO(raw)).streamlines
    assert len(expected) == 5
    assert_same(read_all(io.BytesIO(raw), chunk_bytes=chunk_bytes), expected)
    for n in range(1, 12):
        assert_same(read_ranges(raw, n, chunk_bytes), expected)


def test_partly_nan_row_is_a_point_like_nibabel():
    odd = np.array([[np.nan, 1, 2], [3, np.inf, 4]], np.float32)
    raw = raw_tck([odd, NAN, INF])
    expected = TckFile.load(io.BytesIO(raw)).streamlines
    assert_same(read_all(io.BytesIO(raw), chunk_bytes=12), expected)


def test_empty_tractogram():
    raw = nibabel_tck([])
    assert list(TckReader(io.BytesIO(raw))) == []
    assert len(TckFile.load(io.BytesIO(raw)).streamlines) == 0


def test_reiterating_and_interleaving():
    raw = nibabel_tck(random_walks(5, 50))
    f = io.BytesIO(raw)
    a = TckReader(f, chunk_bytes=200)
    b = TckReader(f, header=a.header, chunk_bytes=300)
    mixed = [c for pair in zip(a, b) for c in pair]  # both read the same file object, turn by turn
    assert sum(len(c) for c in mixed) > 0
    assert_same(read_all(f, header=a.header), StreamlineChunk.concat(list(a)).streamlines())
    assert_same(StreamlineChunk.concat(list(b)), TckFile.load(io.BytesIO(raw)).streamlines)


def test_data_after_the_inf_row_is_corrupt():
    walks = random_walks(6, 3)
    for tail in (b"junk", np.concatenate([walks[0], NAN]).tobytes()):
        raw = raw_tck([*with_nan(walks), INF]) + tail
        for chunk_bytes in (12, 24, 4096):
            error = corrupt(raw, "data after the Inf row", chunk_bytes=chunk_bytes)
            assert error.offset == len(raw) - len(tail)
            for n in (2, 5):
                with pytest.raises(CorruptTractogramError, match="data after the Inf row"):
                    read_ranges(raw, n, chunk_bytes)


# --- byte ranges -----------------------------------------------------------------------------------


def read_ranges(raw: bytes, n: int, chunk_bytes: int) -> StreamlineChunk:
    f = io.BytesIO(raw)
    header = read_tck_header(f)
    ranges = tck_byte_ranges(header, len(raw), n)
    assert 1 <= len(ranges) <= n
    assert ranges[0][0] == header.data_offset and ranges[-1][1] == len(raw)
    assert all(a[1] == b[0] and (a[1] - header.data_offset) % 12 == 0 for a, b in zip(ranges, ranges[1:]))
    readers = [TckReader(f, header=header, start=start, stop=stop, chunk_bytes=chunk_bytes) for start, stop in ranges]
    chunks = [c for reader in readers for c in reader]
    return StreamlineChunk.concat(chunks)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.integers(0, 40), max_size=40),
    n=st.integers(1, 20),
    chunk_bytes=st.sampled_from([12, 24, 100, 1000, 4096, 2**20]),
    big_endian=st.booleans(),
)
def test_byte_ranges_together_equal_the_whole(lengths, n, chunk_bytes, big_endian):
    rng = np.random.default_rng(len(lengths) * 31 + n)
    walks = [np.cumsum(rng.normal(size=(k, 3)), axis=0).astype(np.float32) for k in lengths]
    raw = raw_tck([*with_nan(walks), INF], order=">" if big_endian else "<")
    raw = raw.replace(b"Float32LE", b"Float32BE") if big_endian else raw
    whole = read_all(io.BytesIO(raw), chunk_bytes=chunk_bytes)
    assert_same(whole, [w for w in walks if len(w)])
    assert_same(read_ranges(raw, n, chunk_bytes), whole.streamlines())


def test_every_split_point():
    walks = random_walks(7, 12, max_len=6)
    raw = raw_tck([NAN, *with_nan(walks), NAN, INF])
    header = read_tck_header(io.BytesIO(raw))
    expected = read_all(io.BytesIO(raw)).streamlines()
    for cut in range(header.data_offset, len(raw) + 1, 12):
        for chunk_bytes in (12, 48):
            parts = [
                read_all(io.BytesIO(raw), header=header, start=start, stop=stop, chunk_bytes=chunk_bytes)
                for start, stop in [(header.data_offset, cut), (cut, len(raw))]
            ]
            assert_same(StreamlineChunk.concat(parts), expected)


def test_reader_past_stop_reads_little():
    raw = nibabel_tck(random_walks(8, 2000))
    f = io.BytesIO(raw)
    header = read_tck_header(f)
    stop = header.data_offset + 12 * 100
    reader = TckReader(f, header=header, stop=stop, chunk_bytes=8 * 2**20)
    first_streamlines = read_all(io.BytesIO(raw)).streamlines()
    got = StreamlineChunk.concat(list(reader))
    assert 0 < len(got) < 10
    assert_same(got, first_streamlines[: len(got)])
    assert f.tell() <= stop + 64 * 2**10


def test_byte_ranges_tiny_and_invalid():
    header = read_tck_header(io.BytesIO(raw_tck([INF])))
    assert tck_byte_ranges(header, header.data_offset + 12, 5) == [(header.data_offset, header.data_offset + 12)]
    with pytest.raises(ValueError):
        tck_byte_ranges(header, header.data_offset + 12, 0)
    with pytest.raises(ValueError):
        TckReader(io.BytesIO(raw_tck([INF])), start=header.data_offset - 12)


# --- corrupt input ---------------------------------------------------------------------------------


def corrupt(raw: bytes, match: str, **kwargs) -> CorruptTractogramError:
    with pytest.raises(CorruptTractogramError, match=rf"^bad\.tck: at byte \d+: .*{match}") as info:
        read_all(io.BytesIO(raw), "bad.tck", **kwargs)
    return info.value


@pytest.mark.parametrize("chunk_bytes", [12, 100, 2**20])
def test_truncated_mid_row(chunk_bytes):
    raw = nibabel_tck(random_walks(9, 10))
    cut = len(raw) - 12 - 12 * 5 - 7  # no Inf row; the last row 5 bytes long
    error = corrupt(raw[:cut], "12-byte row", chunk_bytes=chunk_bytes)
    assert error.offset == cut - 5


def test_missing_inf_row():
    walks = random_walks(10, 3)
    corrupt(raw_tck(with_nan(walks)), "without the Inf row")  # nibabel: "Expecting end-of-file marker"
    corrupt(raw_tck([*with_nan(walks), walks[0]]), "without the Inf row")
    corrupt(raw_tck([]), "without the Inf row")
    for raw in (raw_tck([]), raw_tck(with_nan(walks))):
        for n in (1, 3):
            with pytest.raises(CorruptTractogramError, match="without the Inf row"):
                read_ranges(raw, n, 100)
    error = corrupt(raw_tck([*with_nan(walks), walks[0], INF]), "before the Inf row")
    assert error.offset == len(raw_tck([*with_nan(walks), walks[0]]))


def test_bad_header_values():
    corrupt(raw_tck([INF], header="datatype: Float64LE"), "unsupported datatype 'Float64LE'")
    corrupt(raw_tck([INF], header="datatype: Int32"), "unsupported datatype")
    corrupt(raw_tck([INF], end=b"EN\n"), "END")
    corrupt(raw_tck([INF]).replace(b"mrtrix tracks", b"mrtrix trucks"), "not a TCK file")
    corrupt(raw_tck([INF]).replace(b"mrtrix tracks", b"mrtrix tracks2"), "first line is not")
    corrupt(b"mrtrix", "not a TCK file")
    corrupt(raw_tck([INF]).replace(b"file: . ", b"fill: . "), "no 'file")
    corrupt(raw_tck([INF]).replace(b"file: . ", b"file: x "), "bad 'file' field")
    corrupt(raw_tck([INF]).replace(b"file: . 00", b"file: . 99"), "beyond the end of the file")
    corrupt(re.sub(rb"file: \. \d+", b"file: . 0010", raw_tck([INF])), "inside the header")
    corrupt(b"mrtrix tracks\n: x\n\xff\xfe\nEND\n", "not UTF-8")


def test_missing_datatype_means_little_endian_like_nibabel():
    walks = random_walks(11, 4)
    raw = raw_tck([*with_nan(walks), INF], header="count: 4")
    assert read_tck_header(io.BytesIO(raw)).fields["_dtype"] == np.dtype("<f4")
    assert_same(read_all(io.BytesIO(raw)), walks)


def test_header_without_end_is_bounded():
    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, size: int | None = -1) -> bytes:
            data = super().read(size)
            self.read_bytes += len(data)
            return data

    f = Counting(b"mrtrix tracks\n" + b"key: value\n" * 300_000)  # 3.3 MB of header lines, no END
    with pytest.raises(CorruptTractogramError, match="no END line in the first"):
        read_tck_header(f, "big.tck")
    assert f.read_bytes <= 2**20
    with pytest.raises(CorruptTractogramError, match="no END line"):
        read_tck_header(io.BytesIO(b"mrtrix tracks\n" + b"x" * 3 * 2**20), "long-line.tck")
