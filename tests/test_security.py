"""Multi-user machines and hostile names: private modes, no path from a key, no symlink followed, nothing written to S3."""

from __future__ import annotations

import os
import stat
import time

import numpy as np
import pytest
from conftest import BUCKET, MiB, put_shards, random_bytes, scratch_dirs

from dask_prefetch import S3PrefetchFileSystem, read_tractogram
from dask_prefetch.testing import FaultProxy
from dask_prefetch.testing.tractograms import synthetic_streamlines, upload_sharded
from dask_prefetch.cache.tiers import SCRATCH_PREFIX, sweep_stale

SMALL = dict(block_size=64 * 1024, part_size=16 * 1024)


def modes_under(directory: str) -> dict[str, int]:
    out = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, directory)] = stat.S_IMODE(os.lstat(path).st_mode)
    return out


def test_cache_directories_are_0700_and_files_0600_whatever_the_umask(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    storage = tiers(1)
    old = os.umask(0)  # the most permissive umask: modes must not depend on it
    try:
        with fs.open(path, prefetch_storage=storage, **SMALL) as f:
            f.read(100)
            modes = modes_under(storage[0][0])
    finally:
        os.umask(old)
    dirs = {name: mode for name, mode in modes.items() if os.sep not in name}
    files = {name: mode for name, mode in modes.items() if os.sep in name}
    assert len(dirs) == 1 and set(dirs.values()) == {0o700}
    assert len(files) >= 2 and set(files.values()) == {0o600}  # the lock file and block files


@pytest.mark.parametrize("key", ["../../escaped", "a/../../../escaped", "..%2F..%2Fescaped", "dir/./../escaped"])
def test_object_keys_never_become_local_paths(fs, raw_fs, tiers, tmp_path, key):
    raw_fs.call_s3("put_object", Bucket=BUCKET, Key=key, Body=random_bytes(300_000))
    storage = tiers(1)
    with fs.open(f"{BUCKET}/{key}", prefetch_storage=storage, **SMALL) as f:
        data = f.read(1000)
        (scratch,) = scratch_dirs(storage[0][0])
        names = set(os.listdir(scratch))
        data += f.read()
    assert data == random_bytes(300_000)
    blocks = {str(i) for i in range(5)}
    assert names - {".lock"} and names - {".lock"} <= blocks | {f"{b}.part" for b in blocks}  # named by index only
    assert list(tmp_path.rglob("*escaped*")) == []


def test_planted_symlinks_are_never_followed(fs, raw_fs, tiers, tmp_path):
    (path,) = put_shards(raw_fs, [MiB])
    storage = tiers(1)
    tier = storage[0][0]
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_bytes(b"keep me")
    # a link dressed as a dead owner's scratch directory, and a dead owner's directory holding links out
    os.symlink(victim, os.path.join(tier, f"{SCRATCH_PREFIX}1-planted"))
    stale = os.path.join(tier, f"{SCRATCH_PREFIX}2-stale")
    os.mkdir(stale, 0o700)
    os.symlink(victim / "precious", os.path.join(stale, "0"))
    os.symlink(victim, os.path.join(stale, "dir"))
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert sweep_stale(tier) == [stale]  # removed as the link it is, not what it points to
    with fs.open(path, prefetch_storage=storage, **SMALL) as f:
        assert f.read() == raw_fs.cat(path)
    assert (victim / "precious").read_bytes() == b"keep me"
    assert os.path.islink(os.path.join(tier, f"{SCRATCH_PREFIX}1-planted"))  # not ours to remove either


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory owned by another user needs root")
def test_other_users_directories_in_a_shared_tier_are_left_alone(tiers):
    tier = tiers(1)[0][0]
    theirs = os.path.join(tier, f"{SCRATCH_PREFIX}3-someone-else")
    os.mkdir(theirs, 0o700)
    os.chown(theirs, 12345, 12345)
    old = time.time() - 3600
    os.utime(theirs, (old, old))  # stale by age, no lock: would be swept if it were ours
    assert sweep_stale(tier) == []
    assert os.path.isdir(theirs)


def test_only_get_and_head_reach_s3(s3_server, storage_options, raw_fs, tiers, tmp_path):
    shards = [synthetic_streamlines(20, seed) for seed in range(3)]
    paths = upload_sharded(raw_fs, f"{BUCKET}/tg/big", shards)
    with FaultProxy(s3_server.endpoint_url) as proxy:
        options = {**storage_options, "endpoint_url": proxy.endpoint_url}
        fs = S3PrefetchFileSystem(**options, skip_instance_cache=True)
        with fs.open(paths, header_bytes=1000, prefetch_storage=tiers(1), **SMALL) as f:
            f.read()
        tg = read_tractogram([f"s3://{p}" for p in paths], storage_options=options, prefetch_storage=tiers(1))
        lengths = tg.lengths.compute(scheduler="sync")
        methods = {k: v for k, v in proxy.counts().items() if k.startswith("method:")}
    assert int(np.sum(lengths)) == sum(len(s) for shard in shards for s in shard)
    assert set(methods) <= {"method:GET", "method:HEAD"} and methods["method:GET"] > 0
