"""Storage that fails under a reader: tier directories removed, disks fuller than their budgets."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from conftest import MiB, put_shards, scratch_dirs

SMALL = dict(block_size=64 * 1024, part_size=16 * 1024)


def remove_tree(path: str) -> None:
    """``rm -rf path`` while prefetching may still be adding files to it."""
    while os.path.exists(path):
        shutil.rmtree(path, ignore_errors=True)


def test_a_tier_directory_removed_mid_read_falls_back_to_the_next_tier(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [3 * MiB])
    storage = tiers(0.5, 4)
    with fs.open(path, prefetch_storage=storage, **SMALL) as f:
        head = f.read(100_000)
        remove_tree(storage[0][0])
        rest = f.read()
        assert [t.unusable for t in f.engine.tiers.tiers] == ["directory removed", None]
    assert head + rest == raw_fs.cat(path)
    assert os.listdir(storage[1][0]) == []


def test_our_scratch_directory_removed_is_made_again(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [3 * MiB])
    storage = tiers(0.5)
    with fs.open(path, prefetch_storage=storage, **SMALL) as f:
        head = f.read(100_000)
        (ours,) = scratch_dirs(storage[0][0])
        remove_tree(ours)
        rest = f.read()
        (again,) = scratch_dirs(storage[0][0])
        assert again != ours
    assert head + rest == raw_fs.cat(path)
    assert os.listdir(storage[0][0]) == []


def test_every_tier_removed_raises_a_clear_error(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [3 * MiB])
    storage = tiers(0.5)
    with fs.open(path, prefetch_storage=storage, **SMALL) as f:
        head = f.read(100_000)
        remove_tree(storage[0][0])
        with pytest.raises(OSError, match=f"{path}: no prefetch_storage tier can hold block .*: directory removed") as info:
            f.read()
    assert info.value.errno == errno.ENOENT
    assert head == raw_fs.cat(path)[:100_000]


# A tmpfs smaller than the budget claims, mounted in a private user and mount namespace (no root needed).
CHILD = textwrap.dedent(
    """
    import hashlib, json, os, subprocess, sys
    from dask_prefetch import S3PrefetchFileSystem
    options, path, tiny, disk, with_disk, block_size = json.loads(sys.argv[1])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", tiny], check=True)
    storage = [(tiny, 8)] + ([(disk, 8)] if with_disk else [])
    fs = S3PrefetchFileSystem(**options)
    out = {}
    try:
        with fs.open(path, prefetch_storage=storage, block_size=block_size, part_size=64 * 1024) as f:
            out["sha256"] = hashlib.sha256(f.read()).hexdigest()
            out["unusable"] = [t.unusable for t in f.engine.tiers.tiers]
    except OSError as e:
        out["error"], out["errno"] = str(e), e.errno
    out["left"] = os.listdir(tiny) + (os.listdir(disk) if with_disk else [])
    print(json.dumps(out))
    """
)


def run_in_namespace(storage_options, path, tmp_path, with_disk, block_size=256 * 1024):
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a small tmpfs")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces unavailable: {probe.stderr.decode().strip()}")
    tiny, disk = tmp_path / "tiny", tmp_path / "disk"
    tiny.mkdir()
    disk.mkdir()
    arg = json.dumps([storage_options, path, str(tiny), str(disk), with_disk, block_size])
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    child = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", CHILD, arg], capture_output=True, text=True, env=env, timeout=120
    )
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout)


def test_a_disk_fuller_than_its_budget_falls_back_to_the_next_tier(storage_options, raw_fs, tmp_path):
    import hashlib

    (path,) = put_shards(raw_fs, [4 * MiB])
    out = run_in_namespace(storage_options, path, tmp_path, with_disk=True)
    assert out.get("error") is None
    assert out["sha256"] == hashlib.sha256(raw_fs.cat(path)).hexdigest()
    assert out["unusable"][1] is None and out["left"] == []


def test_a_disk_with_room_for_a_few_blocks_is_enough_for_a_rolling_read(storage_options, raw_fs, tmp_path):
    import hashlib

    (path,) = put_shards(raw_fs, [4 * MiB])
    out = run_in_namespace(storage_options, path, tmp_path, with_disk=False)  # 1 MiB of disk, 256 KiB blocks
    assert out.get("error") is None, out
    assert out["sha256"] == hashlib.sha256(raw_fs.cat(path)).hexdigest()


def test_no_tier_with_room_raises_enospc(storage_options, raw_fs, tmp_path):
    (path,) = put_shards(raw_fs, [4 * MiB])
    out = run_in_namespace(storage_options, path, tmp_path, with_disk=False, block_size=2 * MiB)  # > the 1 MiB disk
    assert out["errno"] == errno.ENOSPC, out
    assert f"{path}: no prefetch_storage tier can hold block" in out["error"] and "disk full" in out["error"]
    assert out["left"] == []


RESWEEP_CHILD = textwrap.dedent(
    """
    import hashlib, json, os, subprocess, sys
    from dask_prefetch import S3PrefetchFileSystem
    from dask_prefetch.cache.tiers import ScratchDirectory
    options, path, tiny = json.loads(sys.argv[1])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", tiny], check=True)
    ScratchDirectory(tiny).remove()  # this long-lived process swept the tier once, when it was clean
    dies = (
        "import os, sys; from dask_prefetch.cache.tiers import ScratchDirectory; s = ScratchDirectory(sys.argv[1]);"
        "open(s.file('0'), 'wb').write(b'x' * 900 * 1024); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", dies, tiny], check=True)  # a sibling dies, its blocks left on the tier
    out = {"left_by_the_dead": len(os.listdir(tiny))}
    fs = S3PrefetchFileSystem(**options)
    try:
        with fs.open(path, prefetch_storage=[(tiny, 8)], block_size=256 * 1024, part_size=64 * 1024) as f:
            out["sha256"] = hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        out["error"] = str(e)
    out["left"] = os.listdir(tiny)
    print(json.dumps(out))
    """
)


def test_a_tier_short_of_space_is_swept_of_dead_owners_again(storage_options, raw_fs, tmp_path):
    import hashlib

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare(1) and user namespaces to mount a small tmpfs")
    (path,) = put_shards(raw_fs, [2 * MiB])
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    arg = json.dumps([storage_options, path, str(tiny)])
    child = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", RESWEEP_CHILD, arg], capture_output=True, text=True, env=env, timeout=120
    )
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout)
    assert out["left_by_the_dead"] == 1 and out.get("error") is None, out  # 900 KiB of the 1 MiB disk: swept
    assert out["sha256"] == hashlib.sha256(raw_fs.cat(path)).hexdigest() and out["left"] == []
