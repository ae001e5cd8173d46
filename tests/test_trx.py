"""read_tractogram on TRX written by trx-python: stored, deflated, directory; S3, local, memory://.

Every read is compared point for point with ``trx.trx_file_memmap.load`` of the same file.
"""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import dask
import fsspec
import numpy as np
import pytest
from conftest import BUCKET, client_with_both_plugins, next_task_counters
from trx import trx_file_memmap as tmm

from dask_prefetch import (
    MixedDataWarning,
    process_stats,
    read_tractogram,
)
from dask_prefetch.formats import StreamlineChunk
from dask_prefetch.testing.trx import write_trx

GROUPS = {"first_ten": np.arange(10, dtype=np.uint32), "odd": np.arange(1, 300, 2, dtype=np.uint32)}
#: data per group (dpg): one row each
DPG = {
    "first_ten": {"mean_fa": np.array([0.25], np.float32), "color": np.array([255, 0, 128], np.uint8)},
    "odd": {"volume": np.array([1.5, -2.0], np.float64)},
}
#: name -> (source TRK, write_trx options)
VARIANTS = {
    "stored": ("tracks300.trk", dict(storage="stored", groups=GROUPS, dpg=DPG)),
    "deflated": ("tracks300.trk", dict(storage="deflated", groups=GROUPS, dpg=DPG)),
    "directory": ("tracks300.trk", dict(storage="directory", groups=GROUPS, dpg=DPG)),
    "float16-uint64": (
        "tracks300.trk",
        dict(
            positions=np.float16,
            offsets=np.uint64,
            dpv={"fa": np.float16, "colors": np.uint8},
            dps={"weight": np.float64},
        ),
    ),
    "float64": ("standard.trk", dict(positions=np.float64, groups={"some": np.array([3, 1, 4], np.int64)})),
    "nibabel-complex": ("complex.trk", dict(storage="deflated")),  # nibabel's own dpp/dps names, 3 streamlines
}


@pytest.fixture(scope="module")
def trx_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("trx")
    out = {}
    for name, (source, options) in VARIANTS.items():
        target = root / (name if options.get("storage") == "directory" else f"{name}.trx")
        out[name] = write_trx(target, source, **options)
    return out


def assert_equals_trx_python(tg, path: Path) -> None:
    """Points, lengths, streamlines, named data and groups equal what trx-python loads from ``path``."""
    ref = tmm.load(str(path))
    try:
        points, lengths, bag = dask.compute(tg.points, tg.lengths, tg.to_bag(), scheduler="sync")
        # (dicts of collections passed to one dask.compute beside a bag come back mismatched: one call each)
        named = (tg.data_per_point, tg.data_per_streamline, tg.groups)
        dpv, dps, groups = (dask.compute(d, scheduler="sync")[0] for d in named)
        want = np.asarray(ref.streamlines._data)
        assert points.dtype == np.float32 and len(points) == ref.header["NB_VERTICES"] > 0
        np.testing.assert_array_equal(points, want.astype(np.float32))
        np.testing.assert_array_equal(lengths, ref.streamlines._lengths)
        assert len(bag) == len(ref.streamlines) == ref.header["NB_STREAMLINES"]
        for got, s in zip(bag, ref.streamlines):
            np.testing.assert_array_equal(got, np.asarray(s).astype(np.float32))
        assert sorted(dpv) == sorted(ref.data_per_vertex) and sorted(dps) == sorted(ref.data_per_streamline)
        for key, values in dpv.items():
            expected = np.asarray(ref.data_per_vertex[key]._data)
            assert values.dtype == expected.dtype and values.shape == expected.shape
            np.testing.assert_array_equal(values, expected)
        for key, values in dps.items():
            expected = np.asarray(ref.data_per_streamline[key])
            assert values.dtype == expected.dtype and values.shape == expected.shape
            np.testing.assert_array_equal(values, expected)
        assert sorted(groups) == sorted(ref.groups)
        for key, values in groups.items():
            np.testing.assert_array_equal(values, np.asarray(ref.groups[key]))
        dpg = dask.compute(tg.data_per_group, scheduler="sync")[0]
        assert {g: sorted(d) for g, d in dpg.items()} == {g: sorted(d) for g, d in ref.data_per_group.items()}
        for group, named in dpg.items():
            for key, values in named.items():
                expected = np.asarray(ref.data_per_group[group][key])
                assert values.dtype == expected.dtype and values.shape == expected.shape == (1, expected.size)
                np.testing.assert_array_equal(values, expected)
        np.testing.assert_array_equal(tg.header.voxel_to_rasmm, ref.header["VOXEL_TO_RASMM"])
        assert tg.header.fields["DIMENSIONS"] == tuple(int(d) for d in ref.header["DIMENSIONS"])
        assert tg.header.format == "trx" and tg.header.nb_streamlines == ref.header["NB_STREAMLINES"]
    finally:
        ref.close()


def upload(raw_fs, path: Path, key: str) -> str:
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            raw_fs.pipe(f"{BUCKET}/{key}/{f.relative_to(path).as_posix()}", f.read_bytes())
    else:
        raw_fs.pipe(f"{BUCKET}/{key}", path.read_bytes())
    return f"s3://{BUCKET}/{key}"


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("npartitions", [None, 1, 4])
def test_from_s3_equals_trx_python(raw_fs, storage_options, tiers, trx_files, variant, npartitions):
    path = trx_files[variant]
    url = upload(raw_fs, path, path.name)
    tg = read_tractogram(
        url, storage_options=storage_options, prefetch_storage=tiers(1), block_size=16 * 1024, npartitions=npartitions
    )
    if npartitions is not None:
        assert tg.npartitions == npartitions
    assert sorted(tg.data_per_group) == sorted(VARIANTS[variant][1].get("dpg", {}))  # written, and found
    assert_equals_trx_python(tg, path)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_from_local_paths_equals_trx_python(trx_files, variant):
    path = trx_files[variant]
    for npartitions in (None, 3, 7):
        tg = read_tractogram(str(path), npartitions=npartitions)
        assert tg.npartitions == (npartitions or 1)
        assert_equals_trx_python(tg, path)


def test_from_memory_store(trx_files):
    memory = fsspec.filesystem("memory")
    for name in ("stored", "directory"):
        path = trx_files[name]
        key = f"/trx-test/{path.name}"
        if path.is_dir():
            for f in (p for p in path.rglob("*") if p.is_file()):
                memory.pipe(f"{key}/{f.relative_to(path).as_posix()}", f.read_bytes())
        else:
            memory.pipe(key, path.read_bytes())
        try:
            assert_equals_trx_python(read_tractogram(f"memory://{key}", npartitions=2, block_size=4096), path)
        finally:
            memory.rm(key, recursive=True)


def test_more_partitions_than_streamlines(trx_files):
    path = trx_files["nibabel-complex"]  # 3 streamlines
    tg = read_tractogram(str(path), npartitions=5)
    assert tg.npartitions == 5
    assert sorted(tg.map_chunks(len).compute(scheduler="sync")) == [0, 0, 1, 1, 1]
    assert_equals_trx_python(tg, path)


def test_a_list_of_trx_files_in_order(raw_fs, storage_options, tiers, trx_files):
    paths = [trx_files["stored"], trx_files["deflated"], trx_files["directory"]]
    urls = [upload(raw_fs, p, f"many/{i}-{p.name}") for i, p in enumerate(paths)]
    for npartitions in (None, 2, 5):
        tg = read_tractogram(urls, storage_options=storage_options, prefetch_storage=tiers(1), npartitions=npartitions)
        assert tg.npartitions == (npartitions or 3)
        refs = [tmm.load(str(p)) for p in paths]
        points, lengths, fa, weight, odd = dask.compute(
            tg.points, tg.lengths, tg.data_per_point["fa"], tg.data_per_streamline["weight"], tg.groups["odd"],
            scheduler="sync",
        )
        np.testing.assert_array_equal(points, np.concatenate([r.streamlines._data for r in refs]))
        np.testing.assert_array_equal(lengths, np.concatenate([r.streamlines._lengths for r in refs]))
        np.testing.assert_array_equal(fa, np.concatenate([r.data_per_vertex["fa"]._data for r in refs]))
        np.testing.assert_array_equal(weight, np.concatenate([r.data_per_streamline["weight"] for r in refs]))
        np.testing.assert_array_equal(odd, np.concatenate([GROUPS["odd"] + 300 * i for i in range(3)]))
        assert tg.header.nb_streamlines == 900
        for r in refs:
            r.close()


def test_offsets_without_the_final_entry(tmp_path, trx_files):
    """Older TRX files have NB_STREAMLINES offsets, without a last one equal to NB_VERTICES."""
    src = trx_files["directory"]
    old = tmp_path / "old"
    for f in (p for p in src.rglob("*") if p.is_file()):
        target = old / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = f.read_bytes()
        target.write_bytes(data[:-4] if f.name == "offsets.uint32" else data)
    for npartitions in (1, 4):
        # compared with the file that has the final entry: trx-python 0.6 reads only those
        assert_equals_trx_python(read_tractogram(str(old), npartitions=npartitions), src)


def test_a_zip_named_otherwise_is_read_by_its_magic(tmp_path, trx_files):
    renamed = tmp_path / "tractogram.zip"
    renamed.write_bytes(trx_files["stored"].read_bytes())
    assert_equals_trx_python(read_tractogram(str(renamed), npartitions=2), trx_files["stored"])


def test_stored_partitions_are_byte_ranges_of_the_zip(trx_files):
    """Each partition of a stored zip reads its own rows in place: offsets into the zip, no extraction."""
    path = trx_files["float16-uint64"]
    tg = read_tractogram(str(path), npartitions=4)
    info = {i.filename: i for i in zipfile.ZipFile(path).infolist()}
    segments = [p.trx[0] for p in tg.partitions]
    assert [s.first for s in segments] == [0, 75, 150, 225] and segments[-1].stop == 300
    assert all(a.vertices[1] == b.vertices[0] for a, b in zip(segments, segments[1:]))
    positions = segments[0].contents.positions
    assert positions.source == str(path) and not positions.deflated
    assert positions.start >= info["positions.3.float16"].header_offset + 30
    with open(path, "rb") as f:
        f.seek(positions.start)
        raw = np.frombuffer(f.read(positions.nbytes), "<f2")
    ref = tmm.load(str(path))
    np.testing.assert_array_equal(raw.reshape(-1, 3), ref.streamlines._data)
    ref.close()


def test_on_a_cluster_the_next_partitions_positions_are_opened_ahead_and_claimed(
    raw_fs, storage_options, tiers, trx_files
):
    """With both plugins, a worker opens its next TRX partition's positions range (with its end) while
    another computes, and the task claims that very file: none is opened twice."""
    path = trx_files["float16-uint64"]
    url = upload(raw_fs, path, path.name)
    with client_with_both_plugins(tiers(64)) as client:
        tg = read_tractogram(url, storage_options=storage_options, npartitions=6, block_size=16 * 1024)
        chunks = tg.map_chunks(lambda chunk: (time.sleep(0.2), chunk)[1]).compute()
        per_worker = next_task_counters(client)
    ref = tmm.load(str(path))
    got = StreamlineChunk.concat(chunks)
    np.testing.assert_array_equal(got.points, np.asarray(ref.streamlines._data).astype(np.float32))
    np.testing.assert_array_equal(got.data_per_point["fa"], ref.data_per_vertex["fa"]._data)
    ref.close()
    ahead = sum(a for a, _ in per_worker.values())
    claimed = sum(c for _, c in per_worker.values())
    assert ahead == claimed == 6 - 2, per_worker  # every partition but each worker's first


def rewrite_zip(src: Path, dst: Path, force_zip64: bool = False, extra_groups: int = 0) -> Path:
    """A copy of ``src`` with ZIP64 records on every member, or with many more (small) groups."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            with zout.open(zipfile.ZipInfo(info.filename), "w", force_zip64=force_zip64) as f:
                f.write(zin.read(info.filename))
        for i in range(extra_groups):
            zout.writestr(f"groups/extra_{i:05d}_{'x' * 150}.uint32", np.array([i % 300], np.uint32).tobytes())
    return dst


def test_zip64_members(tmp_path, trx_files):
    path = rewrite_zip(trx_files["stored"], tmp_path / "zip64.trx", force_zip64=True)
    data = path.read_bytes()
    with zipfile.ZipFile(path) as z:  # the local headers carry ZIP64 extra fields: data starts later
        extras = [int.from_bytes(data[i.header_offset + 28 : i.header_offset + 30], "little") for i in z.infolist()]
    assert all(e >= 20 for e in extras), extras
    assert_equals_trx_python(read_tractogram(str(path), npartitions=3), trx_files["stored"])


def test_a_central_directory_larger_than_the_end_read(raw_fs, storage_options, tiers, trx_files):
    long = "x" * 150  # 400 members of ~200 bytes in the central directory: more than the last 64 KiB hold
    path = rewrite_zip(trx_files["stored"], tmp_path_of(trx_files) / "many_groups.trx", extra_groups=400)
    with zipfile.ZipFile(path) as z:
        assert z.start_dir < path.stat().st_size - 64 * 1024  # beyond the last 64 KiB read first
    url = upload(raw_fs, path, path.name)
    tg = read_tractogram(url, storage_options=storage_options, prefetch_storage=tiers(1), npartitions=2)
    assert len(tg.groups) == 2 + 400
    some, odd, points = dask.compute(tg.groups[f"extra_00042_{long}"], tg.groups["odd"], tg.points, scheduler="sync")
    assert some.tolist() == [42] and odd.tolist() == GROUPS["odd"].tolist()
    ref = tmm.load(str(path))
    np.testing.assert_array_equal(points, ref.streamlines._data)
    ref.close()


def tmp_path_of(trx_files: dict[str, Path]) -> Path:
    return next(iter(trx_files.values())).parent


def test_files_that_disagree_on_named_data_warn_and_keep_what_they_share(tmp_path, trx_files):
    with pytest.warns(MixedDataWarning, match="disagree on their named data"):
        tg = read_tractogram([str(trx_files["stored"]), str(trx_files["float16-uint64"])])
    # fa and colors are float32 in one, float16 / uint8 in the other; weight float32 / float64: nothing in common
    assert tg.data_per_point == {} and tg.data_per_streamline == {}
    assert len(tg.lengths.compute(scheduler="sync")) == 600


@pytest.mark.parametrize("npartitions", [1, 5])
def test_a_stored_trx_fetches_its_arrays_once_and_nothing_else(raw_fs, storage_options, tiers, trx_files, npartitions):
    """Tasks fetch exactly the byte ranges of their rows (no extraction, nothing past a range, the
    zip's other bytes never), whatever the block size."""
    path = trx_files["float16-uint64"]
    url = upload(raw_fs, path, path.name)
    tg = read_tractogram(url, storage_options=storage_options, prefetch_storage=tiers(1), block_size=64 * 1024,
                         npartitions=npartitions)  # fmt: skip
    c = tg.partitions[0].trx[0].contents
    arrays = [c.positions, *(m for _, m in c.dpv), *(m for _, m in c.dps)]
    before = process_stats().bytes_fetched
    dask.compute(tg.points, tg.data_per_point["fa"], tg.data_per_point["colors"], scheduler="sync")
    fetched = process_stats().bytes_fetched - before
    # every array once, plus the offsets: each partition's rows and the next entry (the one after the last cut)
    offsets = c.offsets.nbytes + (npartitions - 1) * c.offsets.row_bytes
    assert fetched == sum(m.nbytes for m in arrays) + offsets < path.stat().st_size
