"""Fuzzing both streamline parsers with random bytes and with mutated real tractograms.

The contract (issue tracker: "corrupt TRK/TCK"): whatever the bytes, a parser either returns
streamlines or raises :class:`CorruptTractogramError` (a ``ValueError``) whose message names the file
and a byte offset inside it, in bounded time and memory; a file left intact reads exactly as nibabel
reads it, TCK byte-range readers agree with a whole-file reader, and the TRK parser's two paths
(numba kernels, numpy) agree on every input, streamlines or error. Every parse runs under
``tracemalloc`` and a CPU-time alarm. Hypothesis runs derandomized without an example database, so
CI sees the same examples on every run.
"""

from __future__ import annotations

import io
import math
import re
import signal
import struct
import threading
import tracemalloc
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, Callable, Iterator

import dask.config
import nibabel
import numpy as np
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from nibabel.streamlines import TckFile, Tractogram, TrkFile
from nibabel.streamlines.trk import header_2_dtype
from test_tck import nibabel_tck

from dask_prefetch.formats import (
    CorruptTractogramError,
    StreamlineChunk,
    detect_format,
    open_reader,
)
from dask_prefetch.formats.kernels import compiled
from dask_prefetch.formats.tck import TckReader, read_tck_header, tck_byte_ranges
from dask_prefetch.formats.trk import MAX_POINTS, TrkReader, read_trk_header

# numpy warns about the inf/NaN arithmetic of garbage coordinates: expected, and no part of the contract
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")

DATA = Path(nibabel.__file__).parent / "tests" / "data"
MiB = 2**20
NAME = "s3://bucket/tractogram.pt042"  # the shard name callers pass: every message must carry it
CPU_SECONDS = 10  # per parse; a working parser needs milliseconds for these few-KB inputs
CHUNKS = st.sampled_from([1, 12, 13, 64, 100, 1000, 4096, 8 * MiB])  # tiny (clamped by the parsers) to default
FUZZ = settings(
    deadline=2000,  # ms per example: ~100x the usual time, still far below a hang
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(autouse=True, scope="module")
def kernels_loaded():
    """Compile (or load) the TRK kernels before parsing under tracemalloc: numba's one-off allocations are not ours."""
    assert compiled() is not None, "numba is a dependency: its kernels must load here"


class ShortReads(io.BytesIO):
    """A file object whose reads return at most 7 bytes (full reads only at EOF)."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(7 if size is None or size < 0 else min(size, 7))

    def readinto(self, buffer: Any) -> int:  # type: ignore[override]
        return super().readinto(memoryview(buffer).cast("B")[:7])


# --- seed files: nibabel's shipped ones and small synthetic ones, little- and big-endian ------------


class Seed:
    """A valid tractogram to mutate, and the offsets worth mutating.

    ``fields``: the header's fields (TRK) or lines and the ``file:`` value (TCK). ``markers``: the
    count word of every TRK record, every TCK NaN and Inf row. ``aligned``: every TRK body word or TCK
    point row, where a count or a marker row written lands on a boundary.
    """

    def __init__(self, label: str, fmt: str, data: bytes) -> None:
        self.label, self.fmt, self.data = label, fmt, data
        if fmt == "trk":
            header = read_trk_header(io.BytesIO(data))
            self.fields = tuple(header_2_dtype.fields[name][1] for name in header_2_dtype.names)
            stride, extra = 3 + header.n_scalars, header.n_properties
            order, records, at = header.fields["_endianness"], [], 1000
            while at + 4 <= len(data):
                records.append(at)
                at += 4 + 4 * (int(np.frombuffer(data, order + "i4", 1, at)[0]) * stride + extra)
            self.markers, step = tuple(records), 4
        else:
            header = read_tck_header(io.BytesIO(data))
            lines = [0] + [m.end() for m in re.finditer(rb"\n", data[: header.data_offset])]
            self.fields = tuple(lines + [data.index(b"file:") + 5])
            rows = np.frombuffer(data, header.fields["_dtype"], offset=header.data_offset).reshape(-1, 3)
            self.markers = tuple(header.data_offset + 12 * int(i) for i in np.flatnonzero(~np.isfinite(rows[:, 0])))
            step = 12
        self.aligned = tuple(range(header.data_offset, len(data) + 1, step))

    def __repr__(self) -> str:  # hypothesis's reports name the seed, not its bytes
        return f"seed({self.label!r})"


def _trk_le_to_be(data: bytes) -> bytes:
    """The same TRK in big-endian: every header field and every 4-byte body word swapped."""
    header = np.frombuffer(data[:1000], header_2_dtype).astype(header_2_dtype.newbyteorder())
    return header.tobytes() + np.frombuffer(data[1000:], "<u4").byteswap().tobytes()


def _synthetic_trk(seed: int, n: int) -> bytes:
    """A little TRK with a per-point scalar and a per-streamline property."""
    rng = np.random.default_rng(seed)
    streamlines = [rng.normal(0, 20, (k, 3)).astype(np.float32) for k in rng.integers(1, 6, n)]
    tractogram = Tractogram(
        streamlines,
        data_per_point={"fa": [rng.random((len(s), 1), np.float32) for s in streamlines]},
        data_per_streamline={"weight": rng.random((n, 1), np.float32)},
        affine_to_rasmm=np.eye(4),
    )
    buf = io.BytesIO()
    TrkFile(tractogram).save(buf)
    return buf.getvalue()


def _synthetic_tck(seed: int, n: int, big_endian: bool) -> bytes:
    """A little TCK of random walks, written by nibabel (Float32LE) and optionally turned Float32BE."""
    rng = np.random.default_rng(seed)
    walks = [np.cumsum(rng.normal(size=(k, 3)), axis=0).astype(np.float32) for k in rng.integers(1, 8, n)]
    return nibabel_tck(walks, big_endian)


def _tck_with_gaps(seed: int) -> bytes:
    """A TCK (Float32BE) with empty streamlines, runs of NaN rows, which nibabel skips."""
    rng = np.random.default_rng(seed)
    nan = np.full((1, 3), np.nan, np.float32)
    parts = [nan]
    for k in (3, 1, 4, 2):
        parts += [np.cumsum(rng.normal(size=(k, 3)), axis=0).astype(np.float32), nan, nan][: 2 + k % 2]
    rows = np.concatenate([*parts, np.full((1, 3), np.inf, np.float32)])
    head = b"mrtrix tracks\ndatatype: Float32BE\nfile: . 56\nEND\n"
    return head.ljust(56, b"\0") + rows.astype(">f4").tobytes()


@cache
def seeds() -> tuple[Seed, ...]:
    shipped = ["standard.LPS.trk", "simple.trk", "complex.trk", "complex_big_endian.trk", "empty.trk"]
    trk = {name: (DATA / name).read_bytes() for name in shipped}
    trk["synthetic.trk"] = _synthetic_trk(1, 6)
    trk["synthetic_be.trk"] = _trk_le_to_be(trk["synthetic.trk"])
    shipped = ["standard.tck", "simple.tck", "simple_big_endian.tck", "matlab_nan.tck", "multiline_header_field.tck"]
    tck = {name: (DATA / name).read_bytes() for name in [*shipped, "empty.tck"]}
    tck["synthetic.tck"] = _synthetic_tck(2, 8, big_endian=False)
    tck["synthetic_be.tck"] = _synthetic_tck(3, 8, big_endian=True)
    tck["gaps_be.tck"] = _tck_with_gaps(4)
    return tuple(
        [Seed(label, "trk", data) for label, data in trk.items()]
        + [Seed(label, "tck", data) for label, data in tck.items()]
    )


def seeds_of(fmt: str) -> list[Seed]:
    return [s for s in seeds() if s.fmt == fmt]


# --- the oracle -------------------------------------------------------------------------------------


class ParserHang(AssertionError):
    """A parse ran out of its CPU time."""


@contextmanager
def cpu_time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`ParserHang` in the parser once it has used ``seconds`` of CPU time.

    A CPU-time timer (SIGVTALRM), so it leaves pytest-timeout's wall-clock SIGALRM alone.
    """
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise ParserHang(f"parser still running after {seconds} s of CPU time")

    previous = signal.signal(signal.SIGVTALRM, expire)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def memory_bound(n_bytes: int, chunk_bytes: int) -> int:
    """Most a parse of ``n_bytes`` of input may allocate (tracemalloc peak, numpy arrays included).

    The parsers preallocate one read buffer per chunk (TRK: ``chunk_bytes`` plus the carried partial
    record; TCK: ``chunk_bytes`` of rows, twice when byte-swapping), and everything else they hold
    (the carried record, index and mask arrays, int64 candidate counts, the output points) is at most
    a small multiple of the bytes actually read, which are at most the input. The 4 MiB covers the TCK
    header buffer (at most 1 MiB) and interpreter noise. (Measured over these tests: at most 2 chunks
    plus 25 KB.) A parser sizing anything from a corrupt count instead (2**31 - 1 points, or the 10
    million points allowed for one streamline: 120+ MB) fails.
    """
    return 4 * MiB + 3 * max(chunk_bytes, 64) + 32 * n_bytes


Outcome = StreamlineChunk | CorruptTractogramError


def outcome(parse: Callable[[], StreamlineChunk], data: bytes, chunk_bytes: int) -> Outcome:
    """Run ``parse`` under the time and memory bounds; the chunk it returns, or the error it raised.

    Any exception other than :class:`CorruptTractogramError` propagates and fails the test.
    """
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        with cpu_time_limit(CPU_SECONDS):
            result: Outcome = parse()
    except CorruptTractogramError as error:
        result = error
    finally:
        peak = tracemalloc.get_traced_memory()[1] - before
        if not tracing:
            tracemalloc.stop()
    bound = memory_bound(len(data), chunk_bytes)
    assert peak <= bound, f"parsing {len(data)} bytes allocated {peak} bytes (bound {bound})"
    if isinstance(result, CorruptTractogramError):
        assert_names_file_and_offset(result, data)
    else:
        assert_well_formed(result)
    if currently_in_test_context():  # what the examples exercised: pytest --hypothesis-show-statistics
        event(
            "parsed" if isinstance(result, StreamlineChunk) else "refused: " + re.sub(r"\d+", "N", result.problem)[:50]
        )
    return result


def assert_names_file_and_offset(error: CorruptTractogramError, data: bytes) -> None:
    assert isinstance(error, ValueError)
    assert str(error).startswith(f"{NAME}: at byte {error.offset}: "), str(error)
    assert 0 <= error.offset <= len(data), f"offset {error.offset} outside a {len(data)}-byte file: {error}"


def assert_well_formed(chunk: StreamlineChunk) -> None:
    n_points = int(chunk.lengths.sum())
    assert chunk.points.dtype == np.float32 and chunk.points.shape == (n_points, 3)
    assert chunk.lengths.dtype == np.int64 and (chunk.lengths >= 0).all()
    if chunk.scalars is not None:
        assert chunk.scalars.dtype == np.float32 and len(chunk.scalars) == n_points
    if chunk.properties is not None:
        assert chunk.properties.dtype == np.float32 and len(chunk.properties) == len(chunk)


def assert_same(a: StreamlineChunk, b: StreamlineChunk) -> None:
    np.testing.assert_array_equal(a.lengths, b.lengths)
    np.testing.assert_array_equal(a.points, b.points)
    for name in ("scalars", "properties"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)


def assert_like_nibabel(chunk: StreamlineChunk, seed: Seed) -> None:
    """``chunk`` holds what nibabel reads from the (intact) seed file."""
    loader = TrkFile if seed.fmt == "trk" else TckFile
    reference = loader.load(io.BytesIO(seed.data), lazy_load=False)
    np.testing.assert_array_equal(chunk.lengths, reference.streamlines._lengths)
    np.testing.assert_array_equal(chunk.points, reference.streamlines.get_data().reshape(-1, 3))
    if seed.fmt == "trk":
        header = read_trk_header(io.BytesIO(seed.data))
        for got, names, per in [
            (chunk.scalars, header.scalar_names, reference.tractogram.data_per_point),
            (chunk.properties, header.property_names, reference.tractogram.data_per_streamline),
        ]:
            if names:
                arrays = [per[name] for name in dict.fromkeys(names)]
                expected = [a.get_data() if hasattr(a, "get_data") else a for a in arrays]
                np.testing.assert_array_equal(got, np.concatenate(expected, axis=1))


def assert_paths_agree(result: Outcome, data: bytes, how: str, chunk_bytes: int, short_reads: bool = False) -> None:
    """The numpy path gives what the compiled kernels (the default) gave: the same streamlines or error."""
    with dask.config.set({"dask-prefetch.compiled-parsers": False}):
        other = outcome(lambda: read_whole(data, how, chunk_bytes, short_reads), data, chunk_bytes)
    if isinstance(result, CorruptTractogramError):
        assert isinstance(other, CorruptTractogramError), f"numpy parsed what the kernels refused: {result}"
        assert str(other) == str(result)
    else:
        assert isinstance(other, StreamlineChunk), f"numpy refused what the kernels parsed: {other}"
        assert_same(result, other)


# --- the ways to parse --------------------------------------------------------------------------------


def read_whole(data: bytes, how: str, chunk_bytes: int, short_reads: bool = False) -> StreamlineChunk:
    """All streamlines through ``open_reader`` (format by magic) or one format's reader."""
    f = ShortReads(data) if short_reads else io.BytesIO(data)
    if how == "open":
        reader: Any = open_reader(f, NAME, chunk_bytes=chunk_bytes)
    elif how == "trk":
        reader = TrkReader(f, NAME, chunk_bytes=chunk_bytes)
    else:
        reader = TckReader(f, NAME, chunk_bytes=chunk_bytes)
    chunk = StreamlineChunk.concat(list(reader))
    if reader.header.format == "trk":
        fields = reader.header.fields
        assert np.isfinite(fields["_voxmm_to_rasmm"]).all(), "every point would be NaN or infinite"
        count = int(fields["nb_streamlines"])  # 0: not recorded
        assert count == 0 or len(chunk) <= count, f"{len(chunk)} streamlines from a header announcing {count}"
    return chunk


def read_tck_ranges(data: bytes, n: int, chunk_bytes: int, short_reads: bool = False) -> StreamlineChunk:
    """All streamlines of a TCK through ``n`` byte-range readers, as ``read_tractogram`` splits a file."""
    f = ShortReads(data) if short_reads else io.BytesIO(data)
    header = read_tck_header(f, NAME)
    ranges = tck_byte_ranges(header, len(data), n)
    return StreamlineChunk.concat(
        [c for a, b in ranges for c in TckReader(f, NAME, header=header, start=a, stop=b, chunk_bytes=chunk_bytes)]
    )


def check_tck(data: bytes, chunk_bytes: int, n_ranges: int, short_reads: bool) -> Outcome:
    """Whole-file and byte-range readers both within the contract, and agreeing."""
    whole = outcome(lambda: read_whole(data, "tck", chunk_bytes, short_reads), data, chunk_bytes)
    ranged = outcome(lambda: read_tck_ranges(data, n_ranges, chunk_bytes, short_reads), data, chunk_bytes)
    assert isinstance(whole, CorruptTractogramError) == isinstance(ranged, CorruptTractogramError), (whole, ranged)
    if isinstance(whole, StreamlineChunk):
        assert_same(whole, ranged)  # type: ignore[arg-type]
    return whole


# --- mutations ------------------------------------------------------------------------------------------

INTS = [0, 1, 2, 3, -1, -3, 999, 1000, 2**16, 2**30, 2**31 - 1, -(2**31), MAX_POINTS, MAX_POINTS + 1]
FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-45, 3e38, math.inf, -math.inf, math.nan]
NAN, INF = math.nan, math.inf
ROWS = [(NAN, NAN, NAN), (INF, INF, INF), (-INF, INF, -INF), (NAN, 0.0, 0.0), (INF, NAN, INF), (0.0, 0.0, 0.0)]
INT16S = [0, 1, 3, -1, 10, 11, 2**15 - 1, -(2**15)]
TRK_STRINGS = [b"", b"LPS", b"RAS", b"lps", b"XYZ", b"LLS", b"LP", b"LPSR", b"L\0S", b"fa", b"fa\x003", b"fa\x00x"]
TRK_STRINGS += [b"fa\x00\x01", b"fa\x00-4", b"a\x00b\x00c", b"fa\x00" + b"9" * 17, b"TRACK", b"\xff" * 20]
#: The header fields the parser reads (random byte edits reach the others).
TRK_FIELDS = ["magic_number", "dimensions", "voxel_sizes", "nb_scalars_per_point", "scalar_name"]
TRK_FIELDS += ["nb_properties_per_streamline", "property_name", "voxel_to_rasmm", "voxel_order"]
TRK_FIELDS += ["nb_streamlines", "version", "hdr_size"]
#: Values for integer fields, where the generic ones would seldom hit the interesting few.
TRK_VALUES = {"version": [0, 1, 2, 3, 4, -1], "hdr_size": [1000, 999, 0, -1000]}
TRK_VALUES["nb_scalars_per_point"] = TRK_VALUES["nb_properties_per_streamline"] = [0, 1, 2, 3, 10, 11, -1]


@st.composite
def trk_field_edits(draw: Any) -> tuple:
    """An edit of one TRK header field (one element of an array field), with a value of the field's type."""
    name = draw(st.sampled_from(TRK_FIELDS))
    dtype, offset = header_2_dtype.fields[name][:2]
    item = dtype.base
    at = offset + item.itemsize * draw(st.integers(0, max(1, int(np.prod(dtype.shape))) - 1))
    order = draw(st.sampled_from("<>"))
    if item.kind == "i":
        values = TRK_VALUES.get(name, INTS if item.itemsize == 4 else INT16S)
        return f"int{8 * item.itemsize}", at, draw(st.sampled_from(values)), order
    if item.kind == "f":
        return "float32", at, draw(st.sampled_from(FLOATS)), order
    raw = draw(st.one_of(st.sampled_from(TRK_STRINGS), st.binary(max_size=item.itemsize)))
    return "overwrite", at, raw[: item.itemsize].ljust(item.itemsize, b"\0")


def byte_edits(seed: Seed) -> st.SearchStrategy[list[tuple]]:
    """Up to four edits at offsets into the seed (clamped to the edited file), most of them where it matters."""
    places = [seed.fields, seed.markers or seed.aligned, seed.aligned]
    at = st.one_of(*[st.sampled_from(p) for p in places], st.integers(0, len(seed.data)))
    order = st.sampled_from("<>")
    one = st.one_of(
        st.tuples(st.just("int32"), at, st.one_of(st.sampled_from(INTS), st.integers(-(2**31), 2**31 - 1)), order),
        st.tuples(st.just("float32"), at, st.sampled_from(FLOATS), order),
        st.tuples(st.sampled_from(["row", "insert_row"]), at, st.sampled_from(ROWS), order),
        st.tuples(st.just("overwrite"), at, st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("flip"), at, st.integers(0, 7)),
        st.tuples(st.just("truncate"), at),
        st.tuples(st.just("insert"), at, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), at, st.integers(1, 16)),
    )
    return st.lists(one, max_size=4)


def mutate(data: bytes, edits: list[tuple]) -> bytes:
    """``data`` with the edits of :func:`byte_edits` or :func:`trk_field_edits` applied in turn."""
    out = bytearray(data)
    for kind, at, *args in edits:
        at = min(at, len(out))
        if kind == "int32":
            value, order = args
            out[at : at + 4] = struct.pack(order + "i", value)
        elif kind == "int16":
            value, order = args
            out[at : at + 2] = struct.pack(order + "h", value)
        elif kind == "float32":
            value, order = args
            out[at : at + 4] = struct.pack(order + "f", value)
        elif kind in ("row", "insert_row"):
            values, order = args
            out[at : at + (12 if kind == "row" else 0)] = struct.pack(order + "3f", *values)
        elif kind == "overwrite":
            out[at : at + len(args[0])] = args[0]
        elif kind == "flip":
            if at < len(out):
                out[at] ^= 1 << args[0]
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = args[0]
        else:
            del out[at : at + args[0]]
    return bytes(out)


TCK_VALUES = {
    "file": [". 67", ". 0", ". -5", ". 1e2", ". +67", ". 0x43", ". 6 7", "67", "x 67", ". 67 junk", ". ²", ". ٦٧"]
    + [". 99999999999999999999999", ". 4294967296"],
    "datatype": ["Float32LE", "Float32BE", "Float64LE", "Int32LE", "float32le", "", "Float32LE\nFloat32BE"],
    "count": ["0", "3", "-1", "2147483647", "99999999999999999999999", "²", "x"],
}


@st.composite
def tck_header_edits(draw: Any) -> tuple[str, str | None, bool]:
    """One edit of a TCK header: a field's value replaced (None: removed) or a raw line added."""
    key = draw(st.sampled_from(["file", "datatype", "count", "line", "magic", "END"]))
    values = st.sampled_from(TCK_VALUES.get(key, ["", "END", "mrtrix tracks", ": x", "file: . 67"]))
    value = draw(st.sampled_from([None, values, values, st.text(max_size=12)]))
    value = draw(value) if value is not None else None
    return key, value, key != "file" and draw(st.booleans())


def edit_tck_header(data: bytes, edits: list[tuple[str, str | None, bool]]) -> bytes:
    """A valid TCK with its header edited (see :func:`tck_header_edits`).

    When an edit says so, ``file:`` is rewritten to where the body now starts, so the body stays readable.
    """
    offset = read_tck_header(io.BytesIO(data)).data_offset
    lines, body = data[:offset].decode().split("\n")[:-1], data[offset:]
    for key, value, keep_body_aligned in edits:
        end = lines.index("END") if "END" in lines else len(lines)
        new = None if value is None else value if key in ("line", "magic", "END") else f"{key}: {value}"
        if key in ("magic", "END", "line"):
            at = {"magic": 0, "END": end, "line": None}[key]
        else:
            at = next((i for i, line in enumerate(lines) if line.startswith(f"{key}:")), None)
        if at is None or at >= len(lines):  # a new line before END
            lines.insert(end, new or "")
        else:
            lines[at : at + 1] = [] if new is None else [new]
    head = "\n".join(lines) + "\n"
    file_line = next((i for i, line in enumerate(lines) if line.startswith("file:")), None)
    if file_line is not None and any(edit[2] for edit in edits):
        for _ in range(3):  # the offset's own digits move the body: iterate to the fixed point
            lines[file_line] = f"file: . {len(head.encode())}"
            head = "\n".join(lines) + "\n"
    return head.encode() + body


# --- the fuzz tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", seeds(), ids=lambda s: s.label)
@pytest.mark.parametrize("chunk_bytes", [1, 100, 8 * MiB])
def test_seed_files_read_like_nibabel(seed, chunk_bytes):
    """The oracle's baseline: every seed is valid and reads as nibabel reads it, within the bounds."""
    chunk = outcome(lambda: read_whole(seed.data, "open", chunk_bytes), seed.data, chunk_bytes)
    assert isinstance(chunk, StreamlineChunk)
    assert_like_nibabel(chunk, seed)
    if seed.fmt == "tck":
        for n in (1, 2, 5):
            assert_same(check_tck(seed.data, chunk_bytes, n, short_reads=False), chunk)  # type: ignore[arg-type]


PREFIXES = [b"", b"TRACK", b"mrtrix tracks", b"mrtrix tracks\n", b"mrtrix tracks\nfile: . 30\nEND\n"]


@settings(FUZZ, max_examples=200)
@given(
    prefix=st.sampled_from(PREFIXES + ["trk-header", "trk-header-be", "tck-header"]),
    body=st.binary(max_size=2048),
    chunk_bytes=CHUNKS,
    n_ranges=st.integers(1, 6),
)
def test_random_bytes(prefix, body, chunk_bytes, n_ranges):
    if isinstance(prefix, str):  # a valid header of a real file, then random bytes
        seed = {"trk-header": "simple.trk", "trk-header-be": "synthetic_be.trk", "tck-header": "simple.tck"}[prefix]
        prefix = seed_named(seed).data[: 1000 if prefix.startswith("trk") else 67]
    data = prefix + body
    try:
        fmt = detect_format(data[:13], NAME)
    except CorruptTractogramError as error:
        assert_names_file_and_offset(error, data)
        assert not data.startswith((b"TRACK", b"mrtrix tracks"))
    else:
        assert fmt == ("trk" if data.startswith(b"TRACK") else "tck")
    for how in ("open", "trk", "tck"):
        result = outcome(lambda: read_whole(data, how, chunk_bytes), data, chunk_bytes)
        if how == "trk":
            assert_paths_agree(result, data, how, chunk_bytes)
    if data.startswith(b"mrtrix tracks"):
        check_tck(data, chunk_bytes, n_ranges, short_reads=False)


@settings(FUZZ, max_examples=400)
@given(seed=st.sampled_from(seeds_of("trk")), data=st.data(), chunk_bytes=CHUNKS, short_reads=st.booleans())
def test_mutated_trk(seed, data, chunk_bytes, short_reads):
    mutated = mutate(seed.data, data.draw(byte_edits(seed), label="edits"))
    result = outcome(lambda: read_whole(mutated, "open", chunk_bytes, short_reads), mutated, chunk_bytes)
    assert_paths_agree(result, mutated, "open", chunk_bytes, short_reads)
    if mutated == seed.data:
        assert isinstance(result, StreamlineChunk)
        assert_like_nibabel(result, seed)


@settings(FUZZ, max_examples=300)
@given(
    seed=st.sampled_from(seeds_of("trk")),
    edits=st.lists(trk_field_edits(), min_size=1, max_size=3),
    chunk_bytes=CHUNKS,
)
def test_trk_header_fields(seed, edits, chunk_bytes):
    mutated = mutate(seed.data, edits)
    result = outcome(lambda: read_whole(mutated, "open", chunk_bytes), mutated, chunk_bytes)
    assert_paths_agree(result, mutated, "open", chunk_bytes)


@settings(FUZZ, max_examples=400)
@given(
    seed=st.sampled_from(seeds_of("tck")),
    data=st.data(),
    chunk_bytes=CHUNKS,
    n_ranges=st.integers(1, 6),
    short_reads=st.booleans(),
)
def test_mutated_tck(seed, data, chunk_bytes, n_ranges, short_reads):
    mutated = mutate(seed.data, data.draw(byte_edits(seed), label="edits"))
    result = check_tck(mutated, chunk_bytes, n_ranges, short_reads)
    outcome(lambda: read_whole(mutated, "open", chunk_bytes, short_reads), mutated, chunk_bytes)
    if mutated == seed.data:
        assert isinstance(result, StreamlineChunk)
        assert_like_nibabel(result, seed)


@settings(FUZZ, max_examples=300)
@given(
    seed=st.sampled_from(seeds_of("tck")),
    edits=st.lists(tck_header_edits(), min_size=1, max_size=3),
    chunk_bytes=CHUNKS,
    n_ranges=st.integers(1, 6),
)
def test_tck_header_lines(seed, edits, chunk_bytes, n_ranges):
    edited = edit_tck_header(seed.data, edits)
    check_tck(edited, chunk_bytes, n_ranges, short_reads=False)
    outcome(lambda: read_whole(edited, "open", chunk_bytes), edited, chunk_bytes)


def _raise(error: Exception) -> StreamlineChunk:
    raise error


def test_the_oracle_fails_each_kind_of_bug():
    """The fuzz tests can fail: each violation of the contract is caught by :func:`outcome`."""
    data = b"TRACK" + bytes(995)
    with pytest.raises(KeyError):  # an exception of another type propagates
        outcome(lambda: _raise(KeyError("x")), data, 64)
    with pytest.raises(AssertionError, match="starts"):  # a message naming another file
        outcome(lambda: _raise(CorruptTractogramError("other.trk", 5, "bad")), data, 64)
    with pytest.raises(AssertionError, match="outside"):  # an offset past the end of the file
        outcome(lambda: _raise(CorruptTractogramError(NAME, 1001, "bad")), data, 64)
    with pytest.raises(AssertionError, match="allocated"):  # more memory than the bound
        outcome(lambda: StreamlineChunk(np.ones((2**20, 3), np.float32), np.array([2**20])), data, 64)
    with pytest.raises(AssertionError):  # a malformed chunk: lengths that do not add up to the points
        outcome(lambda: StreamlineChunk(np.ones((4, 3), np.float32), np.array([3])), data, 64)
    with pytest.raises(ParserHang):  # a parser that never returns
        with cpu_time_limit(0.1):
            while True:
                pass


# --- regressions: the minimal inputs of the bugs the fuzz tests found --------------------------------------


def seed_named(label: str) -> Seed:
    return next(s for s in seeds() if s.label == label)


def refused(data: bytes, chunk_bytes: int = 1000) -> CorruptTractogramError:
    """The error parsing ``data`` must raise (checked by the fuzz oracle: message, offset, bounds)."""
    error = outcome(lambda: read_whole(data, "open", chunk_bytes), data, chunk_bytes)
    assert isinstance(error, CorruptTractogramError), f"parsed {len(error)} streamlines"
    return error


@pytest.mark.parametrize(
    "label, edits, offset, problem",
    [
        # The count after a scalar name's NUL is not an integer ("colors\0\x01"): was int()'s bare
        # ValueError, naming neither file nor offset.
        ("complex.trk", [("int32", 45, 1, "<")], 38, "bad scalar or property name"),
        # Bytes after the count ("\0\0lors\x003": three NULs): was nibabel's HeaderError, not a ValueError.
        ("complex.trk", [("int32", 36, 1, "<")], 38, "bad scalar or property name"),
        # A property name likewise (offset 240 + 20 * 1).
        ("complex.trk", [("overwrite", 260, b"torsion\0x")], 260, "bad scalar or property name"),
        # voxel_order "\0PS": was nibabel's ValueError "Not all axis codes ...", without file or offset.
        ("standard.LPS.trk", [("overwrite", 948, b"\0")], 948, "invalid voxel_order"),
        ("standard.LPS.trk", [("overwrite", 948, b"LLS")], 948, "invalid voxel_order"),
        # A NaN in vox_to_ras: was numpy's LinAlgError "SVD did not converge" (a ValueError naming nothing).
        ("standard.LPS.trk", [("float32", 440, math.nan, "<")], 440, "invalid vox_to_ras"),
        # A denormal voxel size (1.4e-45): its inverse overflows float32, so every point was parsed as
        # -inf or NaN, silently.
        ("standard.LPS.trk", [("int32", 12, 1, "<")], 12, "non-finite"),
        # An infinite voxel size: every x coordinate collapsed to the same value, silently.
        ("standard.LPS.trk", [("float32", 16, math.inf, "<")], 12, "voxel sizes must be > 0 and finite"),
        # A negative n_count: read as "count not recorded", so every streamline came back where
        # nibabel reads none.
        ("simple.trk", [("int32", 988, -1, "<")], 988, "negative streamline count"),
    ],
    ids=["name-count", "name-stray-bytes", "property-name", "voxel-order", "voxel-order-axes", "affine-nan"]
    + ["voxel-size-denormal", "voxel-size-inf", "negative-n-count"],
)
def test_regression_corrupt_trk_header(label, edits, offset, problem):
    error = refused(mutate(seed_named(label).data, edits))
    assert error.offset == offset and problem in error.problem, error


@pytest.mark.parametrize("count", [10**7, 10**17])
def test_regression_huge_count_in_a_scalar_name_is_not_allocated(count):
    """A name packing a count of columns, "fa\\0<count>", built a list of ``count`` names before
    keeping the n_scalars it needs: 80 MB for 10**7, MemoryError (not a ValueError) for 10**17."""
    data = mutate(seed_named("synthetic.trk").data, [("overwrite", 38, b"fa\0%d" % count)])
    chunk = outcome(lambda: read_whole(data, "open", 1000), data, 1000)
    assert isinstance(chunk, StreamlineChunk) and chunk.scalars is not None and chunk.scalars.shape[1] == 1
    assert read_trk_header(io.BytesIO(data)).scalar_names == ("fa",)


def test_regression_tck_offset_in_non_ascii_digits():
    """'²'.isdigit() is True but int('²') fails: "file: . ²" raised int()'s bare ValueError."""
    data = edit_tck_header(seed_named("simple.tck").data, [("file", ". ²", False)])
    error = refused(data)
    assert error.offset == data.index(b"file:") and "bad 'file' field" in error.problem


def test_regression_tck_count_in_non_ascii_digits():
    """ "count: ²" raised int()'s bare ValueError; like any count that is not a number, it now means unknown."""
    seed = seed_named("simple.tck")
    data = edit_tck_header(seed.data, [("count", "²", True)])
    assert read_tck_header(io.BytesIO(data), NAME).nb_streamlines is None
    chunk = outcome(lambda: read_whole(data, "tck", 1000), data, 1000)
    assert isinstance(chunk, StreamlineChunk)
    assert_like_nibabel(chunk, seed)


@pytest.mark.parametrize("seed", seeds_of("trk"), ids=lambda s: s.label)
def test_trk_paths_give_identical_bytes(seed):
    """Bit for bit (signed zeros included): the kernels' multiply-then-add is the numpy path's."""
    fast = read_whole(seed.data, "trk", 100)
    with dask.config.set({"dask-prefetch.compiled-parsers": False}):
        slow = read_whole(seed.data, "trk", 100)
    for field in ("points", "lengths", "scalars", "properties"):
        a, b = getattr(fast, field), getattr(slow, field)
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), field
