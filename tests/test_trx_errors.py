"""Bad TRX gives a clear CorruptTractogramError naming the file, never a hang or wrong data; the parsers alone."""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import BUCKET

from dask_prefetch import read_tractogram
from dask_prefetch.formats import CorruptTractogramError
from dask_prefetch.formats.trx import TrxContents, lengths, member, parse_header, read_rows
from dask_prefetch.formats.trx_zip import INFLATE_CHUNK, Inflater
from dask_prefetch.testing.trx import write_trx


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("good")
    return {
        "stored": write_trx(root / "a.trx", "tracks300.trk", "stored"),
        "deflated": write_trx(root / "b.trx", "tracks300.trk", "deflated"),
        "directory": write_trx(root / "c", "tracks300.trk", "directory"),
    }


def rezip(src: Path, dst: Path, change: dict, compression: int = zipfile.ZIP_STORED) -> Path:
    """A copy of zip ``src`` with members replaced (``bytes``) or dropped (None) as ``change`` says."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for info in zin.infolist():
            data = change.get(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
    return dst


def header_of(path: Path) -> dict:
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("header.json"))


def compute(tg) -> None:
    tg.points.compute(scheduler="sync")


def test_a_truncated_zip(tmp_path, good):
    data = good["stored"].read_bytes()
    for cut in (len(data) // 2, len(data) - 10):
        bad = tmp_path / f"cut{cut}.trx"
        bad.write_bytes(data[:cut])
        with pytest.raises(CorruptTractogramError, match=rf"{bad}: at byte 0: not a readable zip.*truncated"):
            read_tractogram(str(bad))


def test_a_truncated_object_on_s3(raw_fs, storage_options, tiers, good):
    raw_fs.pipe(f"{BUCKET}/cut.trx", good["stored"].read_bytes()[:-100])
    with pytest.raises(CorruptTractogramError, match=rf"{BUCKET}/cut.trx: .*not a readable zip"):
        read_tractogram(f"s3://{BUCKET}/cut.trx", storage_options=storage_options, prefetch_storage=tiers(1))


def test_missing_header_json(tmp_path, good):
    bad = rezip(good["stored"], tmp_path / "nohead.trx", {"header.json": None})
    with pytest.raises(CorruptTractogramError, match="without header.json: not a TRX"):
        read_tractogram(str(bad))
    directory = tmp_path / "nohead_dir"
    directory.mkdir()
    (directory / "positions.3.float32").write_bytes(b"\0" * 12)
    with pytest.raises(IsADirectoryError):  # a directory without header.json is not a TRX at all
        read_tractogram(str(directory))
    named = tmp_path / "nohead_dir.trx"
    directory.rename(named)
    with pytest.raises(CorruptTractogramError, match="directory without header.json"):
        read_tractogram(str(named))


@pytest.mark.parametrize("storage", ["stored", "deflated"])
def test_nb_vertices_disagreeing_with_positions(tmp_path, good, storage):
    header = header_of(good[storage])
    n = header["NB_VERTICES"]
    header["NB_VERTICES"] = n + 1
    compression = zipfile.ZIP_DEFLATED if storage == "deflated" else zipfile.ZIP_STORED
    bad = rezip(good[storage], tmp_path / "nbv.trx", {"header.json": json.dumps(header)}, compression)
    with pytest.raises(CorruptTractogramError, match=rf"NB_VERTICES={n + 1} but positions holds {n} vertices"):
        read_tractogram(str(bad))


def test_nb_streamlines_disagreeing_with_offsets(tmp_path, good):
    header = header_of(good["stored"])
    header["NB_STREAMLINES"] = 299
    bad = rezip(good["stored"], tmp_path / "nbs.trx", {"header.json": json.dumps(header)})
    with pytest.raises(CorruptTractogramError, match=r"NB_STREAMLINES=299 but offsets holds 301 entries"):
        read_tractogram(str(bad))


def test_a_directory_with_a_short_positions_object(tmp_path, good):
    src = good["directory"]
    bad = tmp_path / "short"
    for f in (p for p in src.rglob("*") if p.is_file()):
        target = bad / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = f.read_bytes()
        target.write_bytes(data[:-12] if f.name.startswith("positions") else data)
    with pytest.raises(CorruptTractogramError, match="but positions holds"):
        read_tractogram(str(bad))


@pytest.mark.parametrize("storage", ["stored", "deflated"])
def test_decreasing_offsets_fail_the_task(tmp_path, good, storage):
    with zipfile.ZipFile(good[storage]) as z:
        name = next(n for n in z.namelist() if n.startswith("offsets."))
        offsets = np.frombuffer(z.read(name), np.uint32).copy()
    offsets[150], offsets[151] = offsets[151], offsets[150]
    compression = zipfile.ZIP_DEFLATED if storage == "deflated" else zipfile.ZIP_STORED
    bad = rezip(good[storage], tmp_path / "dec.trx", {name: offsets.tobytes()}, compression)
    tg = read_tractogram(str(bad), npartitions=1)
    with pytest.raises(CorruptTractogramError, match=rf"{bad}: at byte \d+: offsets decrease"):
        compute(tg)


def test_a_corrupt_deflate_stream(tmp_path, good):
    data = bytearray(good["deflated"].read_bytes())
    with zipfile.ZipFile(good["deflated"]) as z:
        info = z.getinfo(next(n for n in z.namelist() if n.startswith("positions.")))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 10 : start + 200] = b"\xff" * 190  # inside the positions' compressed bytes
    bad = tmp_path / "garbled.trx"
    bad.write_bytes(bytes(data))
    tg = read_tractogram(str(bad))
    with pytest.raises(CorruptTractogramError, match=rf"{bad}: positions.3.float32: at byte \d+: deflated"):
        compute(tg)


def test_bad_array_names_and_headers():
    with pytest.raises(CorruptTractogramError, match="not a TRX array name"):
        member("dpv/fa.float17", 40)
    with pytest.raises(CorruptTractogramError, match="column count"):
        member("dps/w.0.float32", 40)
    assert member("header.json", 10) is None and member("README.txt", 10) is None
    m = member("dpg/CC/mean_fa.float16", 2)
    assert (m.kind, m.key, m.columns, m.dtype) == ("dpg", "CC/mean_fa", 1, "<f2")
    m = member("positions.3.float16", 60)
    assert (m.kind, m.columns, m.rows, m.row_bytes) == ("positions", 3, 10, 6)
    with pytest.raises(CorruptTractogramError, match="not JSON"):
        parse_header(b"{nope", "x.trx")
    with pytest.raises(CorruptTractogramError, match="no NB_VERTICES field"):
        no_vertices = {"VOXEL_TO_RASMM": np.eye(4).tolist(), "DIMENSIONS": [1, 2, 3], "NB_STREAMLINES": 1}
        parse_header(json.dumps(no_vertices).encode(), "x")
    with pytest.raises(CorruptTractogramError, match="NB_STREAMLINES must be an integer"):
        parse_header(
            json.dumps({"VOXEL_TO_RASMM": np.eye(4).tolist(), "DIMENSIONS": [1, 2, 3], "NB_VERTICES": 3,
                        "NB_STREAMLINES": -1}).encode(), "x")  # fmt: skip


def test_contents_refuse_what_disagrees():
    header = parse_header(
        json.dumps({"VOXEL_TO_RASMM": np.eye(4).tolist(), "DIMENSIONS": [1, 2, 3], "NB_VERTICES": 4,
                    "NB_STREAMLINES": 2}).encode(), "x")  # fmt: skip
    ok = [member("positions.3.float32", 48), member("offsets.uint64", 24)]
    assert TrxContents.build("x", header, ok).has_sentinel
    with pytest.raises(CorruptTractogramError, match="no offsets array"):
        TrxContents.build("x", header, ok[:1])
    with pytest.raises(CorruptTractogramError, match="not whole rows"):
        TrxContents.build("x", header, [member("positions.3.float32", 47), ok[1]])
    with pytest.raises(CorruptTractogramError, match="unsigned integer"):
        TrxContents.build("x", header, [ok[0], member("offsets.int64", 24)])
    with pytest.raises(CorruptTractogramError, match="one row per vertex"):
        TrxContents.build("x", header, ok + [member("dpv/fa.float32", 12)])
    with pytest.raises(CorruptTractogramError, match="one row per streamline"):
        TrxContents.build("x", header, ok + [member("dps/w.2.float32", 8)])
    with pytest.raises(CorruptTractogramError, match="two arrays for positions"):
        TrxContents.build("x", header, ok + [member("positions.3.float16", 24)])


def test_lengths_from_offsets():
    np.testing.assert_array_equal(lengths(np.array([0, 3, 3, 7], np.uint32), 0, "x", 0, 7), [3, 0, 4])
    with pytest.raises(CorruptTractogramError, match="decrease"):
        lengths(np.array([0, 3, 2], np.uint64), None, "x", 0, 7)
    with pytest.raises(CorruptTractogramError, match="past NB_VERTICES"):
        lengths(np.array([0, 3, 9], np.uint64), None, "x", 0, 7)
    with pytest.raises(CorruptTractogramError, match="the object changed"):
        lengths(np.array([2, 3], np.uint64), 1, "x", 0, 7)


class CountingReads(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest = 0

    def read(self, n: int = -1) -> bytes:
        assert n >= 0, "an unbounded read"
        self.largest = max(self.largest, n)
        return super().read(n)


def test_inflating_holds_bounded_bytes_and_skips_exactly():
    raw = np.random.default_rng(0).integers(0, 4, 3 * INFLATE_CHUNK + 12345, dtype=np.uint8).tobytes()
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    packed = packer.compress(raw) + packer.flush()
    for skip, n in [(0, len(raw)), (INFLATE_CHUNK + 7, 1000), (len(raw) - 5, 5)]:
        f = CountingReads(packed)
        out = bytearray(n)
        inflate(f, len(packed), skip, out)
        assert bytes(out) == raw[skip : skip + n] and f.largest <= INFLATE_CHUNK
    with pytest.raises(CorruptTractogramError, match="short"):
        inflate(io.BytesIO(packed), len(packed), len(raw) - 5, bytearray(6))
    with pytest.raises(CorruptTractogramError, match="short"):
        inflate(io.BytesIO(packed[:1000]), len(packed), 0, bytearray(len(raw)))


def inflate(f: io.BufferedIOBase, compressed: int, skip: int, out: bytearray) -> None:
    inflater = Inflater(f, compressed, "x", 0)
    inflater.skip(skip)
    inflater.readinto(memoryview(out))


def test_inflating_in_pieces_gives_the_same_bytes_as_at_once():
    raw = np.random.default_rng(1).integers(0, 4, 2 * INFLATE_CHUNK + 777, dtype=np.uint8).tobytes()
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    packed = packer.compress(raw) + packer.flush()
    inflater = Inflater(CountingReads(packed), len(packed), "x", 0)
    pieces, at = [], 0
    for n in [1, 0, 4095, INFLATE_CHUNK + 3, 10, len(raw)]:
        n = min(n, len(raw) - at)
        out = bytearray(n)
        inflater.readinto(memoryview(out))
        pieces.append(bytes(out))
        at += n
    assert b"".join(pieces) == raw
    with pytest.raises(CorruptTractogramError, match="1 bytes short"):
        inflater.readinto(memoryview(bytearray(1)))


def test_reading_rows_of_a_truncated_stored_member():
    m = member("positions.3.float32", 120, source="x", start=0, stored=120)
    with pytest.raises(CorruptTractogramError, match="truncated"):
        read_rows(io.BytesIO(b"\0" * 100), m, 0, 10, "x.trx")
    rows = read_rows(io.BytesIO(np.arange(6, dtype="<f4").tobytes()), m, 4, 6, "x")
    np.testing.assert_array_equal(rows, [[0, 1, 2], [3, 4, 5]])


def test_a_gzipped_zip_is_refused(tmp_path, good):
    import gzip

    bad = tmp_path / "a.trx.gz"
    bad.write_bytes(gzip.compress(good["stored"].read_bytes()))
    with pytest.raises(CorruptTractogramError, match="gzip-compressed zip"):
        read_tractogram(str(bad))
