"""The graph of ``read_tractogram("s3://b/t/*")`` from one listing (#15 item 3).

Requests are counted by a :class:`~dask_prefetch.testing.FaultProxy` (no faults) between the
filesystem and the real local S3 server: every request the graph build makes passes through it.
"""

from __future__ import annotations

import io
from importlib.util import find_spec
from typing import Iterator

import numpy as np
import pytest
import s3fs
from conftest import BUCKET
from nibabel.streamlines import TrkFile
from s3fs.utils import FileExpired

from dask_prefetch import read_tractogram
from dask_prefetch.formats import CorruptTractogramError
from dask_prefetch.testing import FaultProxy
from dask_prefetch.testing.tractograms import synthetic_streamlines, upload_sharded
from dask_prefetch.tractography.planning import SAMPLE

HEADER = 1000
SHARDS = 30
SYNC = {"scheduler": "sync"}


class Requests:
    """Requests seen by the proxy since the last :meth:`take`, by kind."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.seen = self._now()

    def _now(self) -> dict[str, int]:
        c = self.proxy.counts()
        gets = c.get("method:GET", 0)
        return {"ranged GET": c["gets"], "other GET": gets - c["gets"], "HEAD": c.get("method:HEAD", 0)}

    def take(self) -> dict[str, int]:
        now = self._now()
        delta = {k: now[k] - self.seen[k] for k in now}
        self.seen = now
        return delta


@pytest.fixture
def proxied(s3_server, storage_options) -> Iterator[tuple[dict, Requests]]:
    """Storage options through a counting proxy in front of the server, and the counter."""
    with FaultProxy(s3_server.endpoint_url) as proxy:
        yield {**storage_options, "endpoint_url": proxy.endpoint_url}, Requests(proxy)


@pytest.fixture
def tractogram(raw_fs) -> tuple[list[str], list[np.ndarray]]:
    """A global header and SHARDS shards with their own TRK headers under ``t/``; what nibabel reads of them."""
    paths = upload_sharded(raw_fs, f"{BUCKET}/t/hydi", [synthetic_streamlines(3, seed) for seed in range(SHARDS)])
    return paths, nibabel_streamlines(raw_fs, paths)


def nibabel_streamlines(raw: s3fs.S3FileSystem, paths: list[str]) -> list[np.ndarray]:
    """nibabel's reading of the global header followed by every shard's records: the reference."""
    data = raw.cat_file(paths[0]) + b"".join(raw.cat_file(p)[HEADER:] for p in paths[1:])
    return list(TrkFile.load(io.BytesIO(data), lazy_load=False).streamlines)


def assert_equal_to(tg, expected: list[np.ndarray]) -> None:
    got = tg.to_bag().compute(**SYNC)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


CLIENTS = ["aiobotocore", pytest.param("obstore", marks=pytest.mark.skipif(not find_spec("obstore"), reason="no obstore"))]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("stated", [False, True], ids=["inferred", "header_bytes"])
def test_a_glob_is_listed_once_and_no_object_is_asked_for(proxied, tractogram, stated, client):
    options, requests = proxied
    paths, expected = tractogram
    kwargs = {"header_bytes": HEADER} if stated else {}
    tg = read_tractogram(f"s3://{BUCKET}/t/*", storage_options={**options, "s3_client": client}, **kwargs)
    made = requests.take()
    assert made["other GET"] == 1  # one listing (ListObjectsV2)
    assert made["HEAD"] == 1  # one object asked for: whether the bucket is versioned, not one per object
    # Ranged GETs: the global header once; with the layout to infer, also a sample of the shards' first bytes
    # (the tasks check the others'), however many shards there are.
    assert made["ranged GET"] == (1 if stated else 1 + SAMPLE), made
    assert tg.npartitions == SHARDS and all(p.kind == "bodies" for p in tg.partitions)
    assert_equal_to(tg, expected)


def test_pins_from_the_listing_are_the_ones_a_head_gives(proxied, raw_fs, tractogram):
    options, _ = proxied
    paths, _ = tractogram
    tg = read_tractogram(f"s3://{BUCKET}/t/*", storage_options=options, header_bytes=HEADER)
    pins = {pin[0]: pin for p in tg.partitions for pin in p.pins}
    assert sorted(pins) == sorted(paths)
    for path, pin in pins.items():
        info = raw_fs.info(path, refresh=True)  # a HEAD
        assert pin == (path, info["size"], info["ETag"], None)


@pytest.mark.parametrize("stated", [False, True], ids=["inferred", "header_bytes"])
def test_an_object_changed_after_the_graph_was_built_raises(proxied, raw_fs, tractogram, stated):
    options, _ = proxied
    paths, _ = tractogram
    kwargs = {"header_bytes": HEADER} if stated else {}
    tg = read_tractogram(f"s3://{BUCKET}/t/*", storage_options=options, npartitions=3, **kwargs)
    changed = paths[7]
    raw_fs.pipe(changed, raw_fs.cat_file(changed)[:-12])  # one shard replaced (a point shorter)
    with pytest.raises(FileExpired, match=changed.rsplit("/", 1)[-1]):
        tg.lengths.compute(**SYNC)


def test_paths_given_without_a_glob_are_each_asked_for(proxied, tractogram):
    options, requests = proxied
    paths, expected = tractogram
    tg = read_tractogram([f"s3://{p}" for p in paths], storage_options=options, header_bytes=HEADER)
    made = requests.take()
    assert made["other GET"] == 0 and made["HEAD"] == len(paths)  # no listing said their sizes
    assert_equal_to(tg, expected)


def test_a_list_with_the_layout_to_infer_reads_its_sample_in_place_of_heads(proxied, raw_fs, tractogram):
    """The sampled objects' sizes and versions come with their first bytes: one round trip, not a HEAD then a GET."""
    options, requests = proxied
    paths, expected = tractogram
    tg = read_tractogram([f"s3://{p}" for p in paths], storage_options=options)
    made = requests.take()
    assert made == {"ranged GET": 1 + SAMPLE, "other GET": 0, "HEAD": len(paths) - 1 - SAMPLE}, made
    assert tg.npartitions == SHARDS and all(p.kind == "bodies" for p in tg.partitions)
    pins = {pin[0]: pin for p in tg.partitions for pin in p.pins}
    for path, pin in pins.items():
        info = raw_fs.info(path, refresh=True)  # a HEAD
        assert pin == (path, info["size"], info["ETag"], None)
    assert_equal_to(tg, expected)


def test_one_object_is_pinned_by_the_get_of_its_first_bytes(proxied, raw_fs, tractogram):
    options, requests = proxied
    paths, _ = tractogram
    tg = read_tractogram(f"s3://{paths[3]}", storage_options=options)
    made = requests.take()
    assert made == {"ranged GET": 1, "other GET": 0, "HEAD": 0}, made
    info = raw_fs.info(paths[3], refresh=True)
    assert [pin for p in tg.partitions for pin in p.pins] == [(paths[3], info["size"], info["ETag"], None)]
    expected = list(TrkFile.load(io.BytesIO(raw_fs.cat_file(paths[3])), lazy_load=False).streamlines)
    assert_equal_to(tg, expected)


@pytest.mark.parametrize("where", [0, 1, 2], ids=["header", "sampled", "not sampled"])
def test_a_missing_object_of_a_list_is_named(proxied, tractogram, where):
    options, _ = proxied
    paths, _ = tractogram
    missing = f"{BUCKET}/t/none.trk"
    listed = list(paths)
    listed[where] = missing  # positions 0 and 1 are read (the header, the first shard), 2 is asked for
    with pytest.raises(FileNotFoundError, match="none.trk"):
        read_tractogram([f"s3://{p}" for p in listed], storage_options=options)


def test_an_empty_object_among_the_sampled_is_pinned_and_refused_by_name(proxied, raw_fs, tractogram):
    options, _ = proxied
    paths, _ = tractogram
    raw_fs.pipe(paths[1], b"")  # a sampled shard (S3 refuses a range of an empty object)
    with pytest.raises(ValueError, match=paths[1].rsplit("/", 1)[-1]):
        read_tractogram([f"s3://{p}" for p in paths], storage_options=options)


def versioning(raw: s3fs.S3FileSystem) -> None:
    raw.call_s3("put_bucket_versioning", Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})


def test_a_versioned_bucket_pins_every_version_id_and_reads_those_versions(proxied, raw_fs):
    """The listing has no VersionIds: every object is asked for, and tasks read the versions seen at build."""
    versioning(raw_fs)
    shards = [synthetic_streamlines(3, seed) for seed in range(6)]
    paths = upload_sharded(raw_fs, f"{BUCKET}/t/hydi", shards)
    expected = nibabel_streamlines(raw_fs, paths)
    options, requests = proxied
    tg = read_tractogram(f"s3://{BUCKET}/t/*", storage_options=options, header_bytes=HEADER)
    made = requests.take()
    assert made["other GET"] == 1 and made["HEAD"] == len(paths)  # the probe (one of them), then every other
    versions = {pin[0]: pin[3] for p in tg.partitions for pin in p.pins}
    assert versions == {p: raw_fs.info(p, refresh=True)["VersionId"] for p in paths}
    assert None not in versions.values()
    upload_sharded(raw_fs, f"{BUCKET}/t/hydi", shards[::-1])  # new versions of every object
    assert_equal_to(tg, expected)  # the pinned versions, as before the listing was used


def test_a_versioned_bucket_listed_by_hand_pins_the_versions_its_sample_was_read_from(proxied, raw_fs):
    versioning(raw_fs)
    shards = [synthetic_streamlines(3, seed) for seed in range(SAMPLE + 3)]
    paths = upload_sharded(raw_fs, f"{BUCKET}/t/hydi", shards)
    expected = nibabel_streamlines(raw_fs, paths)
    options, requests = proxied
    tg = read_tractogram([f"s3://{p}" for p in paths], storage_options=options)
    assert requests.take()["HEAD"] == len(paths) - 1 - SAMPLE
    versions = {pin[0]: pin[3] for p in tg.partitions for pin in p.pins}
    assert versions == {p: raw_fs.info(p, refresh=True)["VersionId"] for p in paths}
    assert None not in versions.values()
    upload_sharded(raw_fs, f"{BUCKET}/t/hydi", shards[::-1])  # new versions of every object
    assert_equal_to(tg, expected)


def test_a_version_aware_filesystem_takes_version_ids_from_the_listing(proxied, raw_fs):
    versioning(raw_fs)
    paths = upload_sharded(raw_fs, f"{BUCKET}/t/hydi", [synthetic_streamlines(3, seed) for seed in range(6)])
    expected = nibabel_streamlines(raw_fs, paths)
    options, requests = proxied
    tg = read_tractogram(f"s3://{BUCKET}/t/*", storage_options={**options, "version_aware": True}, header_bytes=HEADER)
    made = requests.take()
    assert made["other GET"] == 1 and made["HEAD"] == 0  # ListObjectVersions says each VersionId
    versions = {pin[0]: pin[3] for p in tg.partitions for pin in p.pins}
    assert versions == {p: raw_fs.info(p, refresh=True)["VersionId"] for p in paths}
    assert_equal_to(tg, expected)


def test_a_glob_matching_a_prefix_names_it(proxied, raw_fs, tractogram):
    options, _ = proxied
    raw_fs.pipe(f"{BUCKET}/t/sub/x.trk", b"x")
    with pytest.raises(IsADirectoryError, match="t/sub"):
        read_tractogram(f"s3://{BUCKET}/t/*", storage_options=options, header_bytes=HEADER)


def test_each_shard_keeps_its_own_count_when_headers_differ_in_nothing_else(proxied, raw_fs):
    """Shard headers equal but for n_count: each shard still has its own claim, which its task reads."""
    counts = [1 + seed % 4 for seed in range(12)]
    paths = upload_sharded(raw_fs, f"{BUCKET}/t/hydi", [synthetic_streamlines(n, seed) for seed, n in enumerate(counts)])
    expected = nibabel_streamlines(raw_fs, paths)
    options, _ = proxied
    tg = read_tractogram(f"s3://{BUCKET}/t/*", storage_options=options)
    assert len(counts) > SAMPLE and {(p.shard_heads, p.shard_counts) for p in tg.partitions} == {("trk", ())}
    assert_equal_to(tg, expected)
    assert [len(c) for c in tg.map_chunks(lambda chunk: chunk.lengths).compute(**SYNC)] == counts


def test_a_corrupt_count_among_shards_with_equal_headers_names_its_shard(proxied, raw_fs):
    paths = upload_sharded(raw_fs, f"{BUCKET}/t/hydi", [synthetic_streamlines(2, seed) for seed in range(8)])
    data = bytearray(raw_fs.cat_file(paths[5]))
    data[988:992] = np.int32(-1).tobytes()
    raw_fs.pipe(paths[5], bytes(data))
    options, _ = proxied
    with pytest.raises(CorruptTractogramError, match=r"hydi\.pt004.*n_count=-1"):
        read_tractogram(f"s3://{BUCKET}/t/*", storage_options=options)
