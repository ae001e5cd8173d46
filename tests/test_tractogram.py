"""read_tractogram: sharded and whole TRK/TCK, from a real S3 server and from local files, into Dask."""

from __future__ import annotations

import io
import os

import dask
import numpy as np
import pytest
from conftest import BUCKET
from distributed import Client, LocalCluster, futures_of, wait
from nibabel.streamlines import TckFile, Tractogram, TrkFile
from s3fs.utils import FileExpired

from dask_prefetch import read_tractogram
from dask_prefetch.formats import CorruptTractogramError

HEADER = 1000


def random_walks(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.cumsum(rng.normal(0, 1, (k, 3)), axis=0).astype(np.float32) + 40 for k in rng.integers(2, 60, n)]


def encode(fmt: str, streamlines: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    cls = TrkFile if fmt == "trk" else TckFile
    cls(Tractogram(streamlines, affine_to_rasmm=np.eye(4))).save(buf)
    return buf.getvalue()


def decode(data: bytes) -> list[np.ndarray]:
    """What nibabel reads from the same bytes: the reference."""
    cls = TrkFile if data[:5] == b"TRACK" else TckFile
    return list(cls.load(io.BytesIO(data), lazy_load=False).streamlines)


@pytest.fixture(scope="module")
def shards() -> list[list[np.ndarray]]:
    return [random_walks(n, seed) for seed, n in enumerate([150, 80, 1, 220, 60])]


def layout(kind: str, shards: list[list[np.ndarray]]) -> tuple[dict[str, bytes], list[np.ndarray]]:
    """Objects by name, and the streamlines nibabel reads from them, for each way of storing a tractogram."""
    if kind == "global-header":
        bodies = [encode("trk", s) for s in shards]
        header = bytearray(bodies[0][:HEADER])
        header[988:992] = np.int32(0).tobytes()  # n_count 0: to the end
        objects = {"hydi.trk": bytes(header)} | {f"hydi.pt{i:03d}": b for i, b in enumerate(bodies)}
        expected = decode(bytes(header) + b"".join(b[HEADER:] for b in bodies))
    elif kind in ("trk-files", "tck-files"):
        fmt = kind[:3]
        objects = {f"part{i:03d}.{fmt}": encode(fmt, s) for i, s in enumerate(shards)}
        expected = [s for data in objects.values() for s in decode(data)]
    else:  # one file
        fmt = kind[-3:]
        objects = {f"whole.{fmt}": encode(fmt, [s for shard in shards for s in shard])}
        expected = decode(next(iter(objects.values())))
    return objects, expected


def check(tg, expected: list[np.ndarray], scheduler="sync") -> None:
    points, lengths, bag = dask.compute(tg.points, tg.lengths, tg.to_bag(), scheduler=scheduler)
    assert len(bag) == len(expected) == len(lengths)
    np.testing.assert_array_equal(lengths, [len(s) for s in expected])
    np.testing.assert_array_equal(points, np.concatenate(expected) if expected else np.empty((0, 3), np.float32))
    for got, want in zip(bag, expected):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.float32


KINDS = ["global-header", "trk-files", "tck-files", "whole-trk", "whole-tck"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("npartitions", [None, 2])
def test_from_s3_equals_nibabel(raw_fs, storage_options, tiers, shards, kind, npartitions):
    objects, expected = layout(kind, shards)
    for name, data in objects.items():
        raw_fs.pipe(f"{BUCKET}/{name}", data)
    tg = read_tractogram(
        [f"s3://{BUCKET}/{name}" for name in objects],
        storage_options=storage_options,
        block_size=16 * 1024,
        prefetch_storage=tiers(1),
        npartitions=npartitions,
        chunk_size=4096,  # small reads: records straddle chunks, blocks and shards
    )
    if npartitions == 2 and kind != "whole-trk":
        assert tg.npartitions == 2
    check(tg, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_from_local_files_equals_nibabel(tmp_path, shards, kind):
    objects, expected = layout(kind, shards)
    for name, data in objects.items():
        (tmp_path / name).write_bytes(data)
    tg = read_tractogram([str(tmp_path / name) for name in objects], npartitions=3, chunk_size=1000)
    check(tg, expected)


def test_glob_detects_a_global_header_and_reads_on_a_cluster(raw_fs, storage_options, tiers, shards):
    objects, expected = layout("global-header", shards)
    for name, data in objects.items():
        raw_fs.pipe(f"{BUCKET}/hydi/{name}", data)
    tg = read_tractogram(
        f"s3://{BUCKET}/hydi/hydi.*", storage_options=storage_options, prefetch_storage=tiers(4), block_size=64 * 1024
    )
    assert tg.header.format == "trk" and tg.npartitions == len(shards)
    np.testing.assert_array_equal(tg.header.voxel_to_rasmm, np.eye(4))
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster):
            check(tg, expected, scheduler=None)
            sizes = tg.map_chunks(len).compute()
    assert sizes == [len(s) for s in shards]


def test_header_bytes_given_explicitly(raw_fs, storage_options, tiers, shards):
    objects, expected = layout("global-header", shards)
    for name, data in objects.items():
        raw_fs.pipe(f"{BUCKET}/{name}", data)
    paths = [f"{BUCKET}/{name}" for name in objects]
    tg = read_tractogram(["s3://" + p for p in paths], header_bytes=HEADER, storage_options=storage_options,
                         prefetch_storage=tiers(1), block_size=64 * 1024, npartitions=1)
    assert tg.npartitions == 1
    check(tg, expected)


def test_a_truncated_shard_names_the_shard_and_offset(raw_fs, storage_options, tiers, shards):
    objects, _ = layout("trk-files", shards)
    names = list(objects)
    objects[names[1]] = objects[names[1]][:-10]
    for name, data in objects.items():
        raw_fs.pipe(f"{BUCKET}/{name}", data)
    tg = read_tractogram([f"s3://{BUCKET}/{n}" for n in names], storage_options=storage_options,
                         prefetch_storage=tiers(1), block_size=64 * 1024)
    with pytest.raises(CorruptTractogramError, match=rf"{BUCKET}/{names[1]}: at byte \d+: truncated"):
        tg.lengths.compute(scheduler="sync")


@pytest.mark.parametrize("header_bytes", [None, HEADER])
def test_a_glob_puts_the_lone_header_first_whatever_its_name(tmp_path, shards, header_bytes):
    objects, expected = layout("global-header", shards)
    for name, data in objects.items():
        (tmp_path / ("zz-header.trk" if name == "hydi.trk" else name)).write_bytes(data)  # sorts last
    tg = read_tractogram(str(tmp_path / "*"), header_bytes=header_bytes)
    assert tg.partitions[0].paths[0].endswith("zz-header.trk")
    check(tg, expected)


@pytest.mark.parametrize("npartitions", [1, 2])
def test_a_corrupt_shard_behind_a_global_header_is_named_with_its_own_offset(
    raw_fs, storage_options, tiers, shards, npartitions
):
    objects, _ = layout("global-header", shards)
    names = list(objects)
    bad = bytearray(objects[names[3]])
    bad[HEADER : HEADER + 4] = np.int32(2**30).tobytes()  # the first record's point count, in the third shard
    objects[names[3]] = bytes(bad)
    for name, data in objects.items():
        raw_fs.pipe(f"{BUCKET}/{name}", data)
    tg = read_tractogram([f"s3://{BUCKET}/{n}" for n in names], storage_options=storage_options,
                         prefetch_storage=tiers(1), block_size=64 * 1024, npartitions=npartitions)
    with pytest.raises(CorruptTractogramError, match=rf"^{BUCKET}/{names[3]}: at byte {HEADER}: "):
        tg.lengths.compute(scheduler="sync")


def test_not_a_tractogram(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello, world" * 10)
    with pytest.raises(CorruptTractogramError, match="neither a TRK nor a TCK"):
        read_tractogram(str(path))
    with pytest.raises(FileNotFoundError, match="no file matches"):
        read_tractogram(os.path.join(str(tmp_path), "*.trk"))


def test_header_bytes_needs_a_lone_header_first(tmp_path, shards):
    objects, _ = layout("trk-files", shards)
    for name, data in objects.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match="must be a lone 1000-byte TRK header"):
        read_tractogram([str(tmp_path / n) for n in objects], header_bytes=HEADER)


def test_task_keys_change_with_the_data(tmp_path, shards):
    objects, _ = layout("whole-trk", shards)
    (name, data), = objects.items()
    (tmp_path / name).write_bytes(data)
    before = read_tractogram(str(tmp_path / name)).lengths.name
    (tmp_path / name).write_bytes(data[:-12 * 4])  # another version of the file
    assert read_tractogram(str(tmp_path / name)).lengths.name != before


def test_tasks_read_the_versions_seen_when_the_graph_was_built(raw_fs, storage_options, tiers, shards):
    objects, _ = layout("global-header", shards)
    for name, data in objects.items():
        raw_fs.pipe(f"{BUCKET}/{name}", data)
    tg = read_tractogram(f"s3://{BUCKET}/hydi.*", storage_options=storage_options, prefetch_storage=tiers(1))
    assert all(len(p.pins) == len(p.paths) for p in tg.partitions)  # no HEAD per task: the graph's own view
    name = sorted(objects)[2]
    raw_fs.pipe(f"{BUCKET}/{name}", objects[name][:-12])  # a shard replaced after the graph was built
    with pytest.raises(FileExpired, match=name):
        tg.lengths.compute(scheduler="sync")  # never the new bytes under the old graph's keys


@pytest.mark.parametrize("npartitions", [1, 3])
def test_a_tck_whose_data_starts_past_the_first_mib(tmp_path, npartitions):
    import re

    streamlines = random_walks(40, seed=3)
    data = encode("tck", streamlines)
    header_end = data.index(b"END\n") + 4
    old = int(re.search(rb"file: \. (\d+)", data[:header_end]).group(1))
    header = data[:header_end].replace(b"file: . %d" % old, b"file: . %d" % 2_000_000)
    path = tmp_path / "far.tck"
    path.write_bytes(header + b"\0" * (2_000_000 - len(header)) + data[old:])
    tg = read_tractogram(str(path), npartitions=npartitions)
    check(tg, decode(path.read_bytes()))
    assert len(tg.lengths.compute()) == len(streamlines)


def test_persist_on_a_cluster_keeps_the_chunks_on_the_workers(raw_fs, storage_options, shards):
    """#20: each compute re-downloaded everything. After persist, the objects can go: computes reuse
    the chunks held by the workers (and the unpersisted tractogram cannot be read any more)."""
    objects, expected = layout("global-header", shards)
    for name, data in objects.items():
        raw_fs.pipe(f"{BUCKET}/p/{name}", data)
    tg = read_tractogram(f"s3://{BUCKET}/p/hydi.*", storage_options=storage_options)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster):
            kept = tg.persist()
            futures = futures_of(kept.points)
            assert len(futures) == tg.npartitions  # one future per partition, held by the worker
            wait(futures)
            assert all(f.status == "finished" for f in futures)
            raw_fs.rm(f"{BUCKET}/p", recursive=True)
            for _ in range(2):
                check(kept, expected, scheduler=None)
            with pytest.raises((FileNotFoundError, FileExpired)):
                tg.lengths.compute()


def test_an_http_url_is_read_with_rolling_prefetch_and_equals_nibabel(s3_server, storage_options, raw_fs, tiers):
    """Plain HTTP with Range (moto serving public objects): tasks read through PrefetchFileSystem, never another store."""
    import nibabel as nib
    from nibabel.testing import data_path

    from dask_prefetch import PrefetchFileSystem

    raw_fs.put_file(os.path.join(data_path, "complex.trk"), f"{BUCKET}/complex.trk")
    raw_fs.chmod(f"{BUCKET}/complex.trk", "public-read")
    url = f"{s3_server.endpoint_url}/{BUCKET}/complex.trk"
    tg = read_tractogram(url, prefetch_storage=tiers(1))
    assert isinstance(tg._opener.fs, PrefetchFileSystem)
    chunk = tg.to_chunks().compute(scheduler="sync")[0]
    expected = nib.streamlines.load(os.path.join(data_path, "complex.trk")).streamlines
    np.testing.assert_array_equal(chunk.points, expected.get_data())
    np.testing.assert_array_equal(chunk.lengths, expected._lengths)
    raw_fs.pipe_file(f"{BUCKET}/complex.trk", b"x" * 10)  # replaced after the graph was built
    raw_fs.chmod(f"{BUCKET}/complex.trk", "public-read")
    with pytest.raises(OSError):
        tg.lengths.compute(scheduler="sync")


def dipy_file(name: str) -> str:
    import dipy

    return os.path.join(os.path.dirname(dipy.__file__), "data", "files", name)


def test_n_points_counts_points_and_arc_lengths_are_dipys_millimetres(raw_fs, storage_options, tiers):
    from dipy.tracking.streamline import length

    path = dipy_file("tracks300.trk")  # dipy's own tractogram
    raw_fs.put(path, f"{BUCKET}/tracks300.trk")
    reference = TrkFile.load(path, lazy_load=False).streamlines
    tg = read_tractogram(f"s3://{BUCKET}/tracks300.trk", storage_options=storage_options, prefetch_storage=tiers(64))
    n_points, arc = dask.compute(tg.n_points, tg.arc_lengths, scheduler="threads")
    assert n_points.dtype == np.int64 and arc.dtype == np.float64
    np.testing.assert_array_equal(n_points, [len(s) for s in reference])
    np.testing.assert_array_equal(tg.lengths.compute(), n_points)  # the alias nibabel users know
    np.testing.assert_allclose(arc, length(reference), rtol=1e-5)
    assert not np.allclose(arc, n_points)  # mm, not a count


def test_bags_name_the_scheduler_to_use_without_a_client():
    import dask_prefetch.tractography.tractogram as module

    for method in (module.Tractogram.to_bag, module.Tractogram.to_chunks, module.Tractogram.map_chunks):
        assert 'scheduler="threads"' in method.__doc__
    assert "*process* pool" in module.Tractogram.__doc__
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    assert 'compute(scheduler="threads")' in readme and "process" in readme


def test_a_bag_computed_with_threads_equals_nibabel(tmp_path):
    path = dipy_file("tracks300.trk")
    reference = TrkFile.load(path, lazy_load=False).streamlines
    bag = read_tractogram(path).to_bag().map(lambda s: float(s[:, 0].sum()))
    got = bag.compute(scheduler="threads")
    np.testing.assert_allclose(got, [float(s[:, 0].sum()) for s in reference], rtol=1e-6)
