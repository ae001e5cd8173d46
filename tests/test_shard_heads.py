"""A sharded layout inferred from a sample of the shards, the rest checked by the tasks that read them (#15 item 3).

With more shards than :data:`~dask_prefetch.tractography.planning.SAMPLE`, the graph build reads the
first bytes of the global header and of a sample of the shards only; every task reads its shards
from byte 0 and checks each one's first bytes. These tests damage a shard the sample leaves out and
show that the result is nibabel's reading or a clear error naming that shard, never other data.
"""

from __future__ import annotations

import gzip
import io
import pathlib

import fsspec
import numpy as np
import pytest
from conftest import BUCKET, client_with_both_plugins, next_task_counters
from nibabel.streamlines import TrkFile

from dask_prefetch import read_tractogram
from dask_prefetch.formats import CorruptTractogramError
from dask_prefetch.testing.tractograms import synthetic_streamlines, trk_bytes, upload_sharded
from dask_prefetch.tractography.planning import SAMPLE, sample_positions

SYNC = {"scheduler": "sync"}
SHARDS = SAMPLE + 4
COUNTS = [1 + i % 4 for i in range(SHARDS)]  # streamlines per shard; each shard's n_count says its own


def unsampled() -> int:
    """The number of a shard (0-based) whose first bytes the graph build does not read."""
    return next(i for i in range(SHARDS) if i not in sample_positions(SHARDS))


def write_shards(tmp_path: pathlib.Path) -> list[str]:
    """A global header + SHARDS shards with headers of their own, on disk; global header first."""
    shards = [synthetic_streamlines(n, seed) for seed, n in enumerate(COUNTS)]
    return upload_sharded(fsspec.filesystem("file"), str(tmp_path / "t"), shards)


def nibabel_reading(paths: list[str], skip: int) -> list[np.ndarray]:
    """nibabel over the global header followed by every shard from byte ``skip``: the reference."""
    data = pathlib.Path(paths[0]).read_bytes() + b"".join(pathlib.Path(p).read_bytes()[skip:] for p in paths[1:])
    return list(TrkFile.load(io.BytesIO(data), lazy_load=False).streamlines)


def assert_reads(tg, expected: list[np.ndarray]) -> None:
    """Both ways a task reads (one chunk, and streamed chunk by chunk) give ``expected``."""
    got = tg.to_bag().compute(**SYNC)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    streamed = np.concatenate(tg.map_chunks(lambda c: c.lengths, per="chunk").compute(**SYNC))
    np.testing.assert_array_equal(streamed, [len(s) for s in expected])


def replace_shard(paths: list[str], i: int, data: bytes) -> str:
    pathlib.Path(paths[1 + i]).write_bytes(data)
    return pathlib.Path(paths[1 + i]).name.replace(".", r"\.")


@pytest.mark.parametrize("npartitions", [None, 3, 1])
def test_shards_inferred_from_a_sample_read_as_nibabel_reads_them(tmp_path, npartitions):
    paths = write_shards(tmp_path)
    tg = read_tractogram(str(tmp_path / "t.*"), npartitions=npartitions)
    assert tg.npartitions == (npartitions or SHARDS)
    assert all(p.kind == "bodies" and p.shard_heads == "trk" and not p.shard_counts for p in tg.partitions)
    assert tg.partitions[0].first_stream()[1] == 0  # the task reads every shard from byte 0, its header too
    expected = nibabel_reading(paths, 1000)
    assert len(expected) == sum(COUNTS)
    assert_reads(tg, expected)
    per_partition = [len(c) for c in tg.map_chunks(lambda chunk: chunk.lengths).compute(**SYNC)]
    assert sum(per_partition) == sum(COUNTS) and len(per_partition) == tg.npartitions


def test_no_more_shards_than_a_sample_are_all_read_at_graph_build(tmp_path):
    shards = [synthetic_streamlines(n, seed) for seed, n in enumerate(COUNTS[:SAMPLE])]
    upload_sharded(fsspec.filesystem("file"), str(tmp_path / "t"), shards)
    tg = read_tractogram(str(tmp_path / "t.*"))
    assert [c for p in tg.partitions for c in p.shard_counts] == COUNTS[:SAMPLE]
    assert {p.shard_heads for p in tg.partitions} == {""}


def other_header(data: bytes, change: str) -> bytes:
    """A shard's bytes with its header changed so that its records would read differently, or not at all."""
    out = bytearray(data)
    if change == "voxel sizes":
        out[12:24] = np.array([2, 2, 2], "<f4").tobytes()
    elif change == "scalars":
        out[36:38] = np.int16(1).tobytes()
    elif change == "n_count -1":
        out[988:992] = np.int32(-1).tobytes()
    elif change == "not a header":
        out[:5] = b"XXXXX"
    return bytes(out)


@pytest.mark.parametrize("change", ["voxel sizes", "scalars", "n_count -1", "not a header"])
def test_an_unsampled_shard_with_another_header_fails_its_task_naming_it(tmp_path, change):
    paths = write_shards(tmp_path)
    i = unsampled()
    name = replace_shard(paths, i, other_header(pathlib.Path(paths[1 + i]).read_bytes(), change))
    tg = read_tractogram(str(tmp_path / "t.*"), npartitions=2)  # the graph: from the sample, which is intact
    assert {p.shard_heads for p in tg.partitions} == {"trk"}
    with pytest.raises(CorruptTractogramError, match=rf"{name}: at byte \d+: .*layout= and header_bytes="):
        tg.lengths.compute(**SYNC)
    with pytest.raises(CorruptTractogramError, match=name):
        tg.map_chunks(len, per="chunk").compute(**SYNC)
    stated = read_tractogram(str(tmp_path / "t.*"), header_bytes=1000)  # told: the shards' headers are skipped
    assert_reads(stated, nibabel_reading(paths, 1000))


def test_an_unsampled_shard_holding_more_than_its_count_says_how_to_choose(tmp_path):
    paths = write_shards(tmp_path)
    i = unsampled()
    data = bytearray(pathlib.Path(paths[1 + i]).read_bytes())
    data[988:992] = np.int32(COUNTS[i] - 1).tobytes()
    name = replace_shard(paths, i, bytes(data))
    claims = rf"{name}: at byte 988: its own header claims n_count={COUNTS[i] - 1} but it holds {COUNTS[i]}"
    for npartitions in (None, 1):
        tg = read_tractogram(str(tmp_path / "t.*"), npartitions=npartitions)
        with pytest.raises(CorruptTractogramError, match=claims):
            tg.lengths.compute(**SYNC)
        with pytest.raises(CorruptTractogramError, match=claims):
            tg.map_chunks(len, per="chunk").compute(**SYNC)


def test_an_unsampled_shard_shorter_than_a_header_names_it(tmp_path):
    paths = write_shards(tmp_path)
    i = unsampled()
    name = replace_shard(paths, i, pathlib.Path(paths[1 + i]).read_bytes()[:600])
    with pytest.raises(CorruptTractogramError, match=rf"{name}: .*needs 1000 bytes"):
        read_tractogram(str(tmp_path / "t.*")).lengths.compute(**SYNC)


def write_bodies(tmp_path: pathlib.Path) -> list[str]:
    """A global header + SHARDS bare bodies (records only), on disk."""
    paths = write_shards(tmp_path)
    for p in paths[1:]:
        pathlib.Path(p).write_bytes(pathlib.Path(p).read_bytes()[1000:])
    return paths


def test_bare_bodies_inferred_from_a_sample_read_as_nibabel_reads_them(tmp_path):
    paths = write_bodies(tmp_path)
    tg = read_tractogram(str(tmp_path / "t.*"), npartitions=3)
    assert {(p.shard_heads, p.header_bytes) for p in tg.partitions} == {("bare", 0)}
    assert_reads(tg, nibabel_reading(paths, 0))


@pytest.mark.parametrize("other", ["complete TRK", "gzip"])
def test_an_unsampled_body_that_is_a_file_of_its_own_fails_its_task_naming_it(tmp_path, other):
    paths = write_bodies(tmp_path)
    i = unsampled()
    complete = trk_bytes(synthetic_streamlines(COUNTS[i], i))
    name = replace_shard(paths, i, complete if other == "complete TRK" else gzip.compress(complete[1000:]))
    tg = read_tractogram(str(tmp_path / "t.*"), npartitions=2)
    assert {p.shard_heads for p in tg.partitions} == {"bare"}
    with pytest.raises(CorruptTractogramError, match=rf"{name}: at byte 0: starts like a file of its own"):
        tg.lengths.compute(**SYNC)


def test_workers_open_checked_shards_ahead_and_tasks_claim_them(raw_fs, storage_options, tiers):
    """With both plugins, a worker opens its next partitions as their tasks will (from each shard's byte 0)."""
    shards = [synthetic_streamlines(n, seed) for seed, n in enumerate(COUNTS)]
    paths = upload_sharded(raw_fs, f"{BUCKET}/t/hydi", shards)
    data = raw_fs.cat_file(paths[0]) + b"".join(raw_fs.cat_file(p)[1000:] for p in paths[1:])
    expected = list(TrkFile.load(io.BytesIO(data), lazy_load=False).streamlines)
    with client_with_both_plugins(tiers(64)) as client:
        tg = read_tractogram(f"s3://{BUCKET}/t/*", storage_options=storage_options, block_size="16 KiB")
        assert {p.shard_heads for p in tg.partitions} == {"trk"}
        got = tg.to_bag().compute()
        per_worker = next_task_counters(client)
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert sum(c for _, c in per_worker.values()) == sum(a for a, _ in per_worker.values()) > 0, per_worker
