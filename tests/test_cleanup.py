"""Every cache file is removed: on close, on exceptions, on garbage collection, at exit, after a crash."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading

import pytest
from conftest import MiB, put_shards, scratch_dirs

from dask_prefetch import S3PrefetchFileSystem

SMALL = dict(block_size=64 * 1024, part_size=16 * 1024)


def all_tiers_empty(storage) -> bool:
    return all(os.listdir(d) == [] for d, _ in storage)


def test_close_removes_everything_and_is_idempotent(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    storage = tiers(0.5, 0.5)
    f = fs.open(path, prefetch_storage=storage, **SMALL)
    f.read(1000)
    assert all(len(scratch_dirs(d)) == 1 for d, _ in storage)
    f.close()
    f.close()
    assert f.closed and all_tiers_empty(storage)
    with pytest.raises(ValueError, match="closed file"):
        f.read(1)


def test_leaving_a_with_block_by_exception_cleans_up(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    storage = tiers(1)
    with pytest.raises(ZeroDivisionError):
        with fs.open(path, prefetch_storage=storage, **SMALL) as f:
            f.read(10)
            1 / 0
    assert all_tiers_empty(storage)


def test_garbage_collection_cleans_up(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    storage = tiers(1)
    f = fs.open(path, prefetch_storage=storage, **SMALL)
    f.read(10)
    engine = f._engine
    del f
    gc.collect()
    assert engine.closed and all_tiers_empty(storage)


def test_close_from_another_thread_while_prefetching(fs, raw_fs, tiers):
    paths = put_shards(raw_fs, [MiB] * 4)
    storage = tiers(4)
    f = fs.open(paths, prefetch_storage=storage, **SMALL)
    t = threading.Thread(target=f.close)
    t.start()
    t.join(5)
    assert not t.is_alive() and all_tiers_empty(storage)


CHILD = """
import json, os, signal, sys
from dask_prefetch import S3PrefetchFileSystem
options, path, tier, how = json.loads(sys.argv[1])
fs = S3PrefetchFileSystem(**options)
f = fs.open(path, prefetch_storage=[(tier, 1)], block_size=65536)
f.read(100)
print(json.dumps(os.listdir(tier)), flush=True)
if how == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
# how == "exit": leave without closing; interpreter exit must clean up
"""


def run_child(storage_options, path, tier, how):
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    arg = json.dumps([storage_options, path, tier, how])
    return subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True, env=env, timeout=60)


def test_interpreter_exit_cleans_up(storage_options, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    tier = tiers(1)[0][0]
    child = run_child(storage_options, path, tier, "exit")
    assert child.returncode == 0, child.stderr
    assert len(json.loads(child.stdout)) == 1  # it did have a scratch directory
    assert os.listdir(tier) == []


def test_leftovers_of_a_killed_process_are_swept_by_the_next_open(storage_options, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    storage = tiers(1)
    tier = storage[0][0]
    child = run_child(storage_options, path, tier, "kill")
    assert child.returncode == -signal.SIGKILL
    (leftover,) = scratch_dirs(tier)
    assert os.listdir(leftover)  # block files were left behind
    fs = S3PrefetchFileSystem(**storage_options, skip_instance_cache=True)
    with fs.open(path, prefetch_storage=storage, **SMALL) as f:
        assert leftover not in scratch_dirs(tier)  # swept, never read as data
        assert f.read() == raw_fs.cat(path)
    assert os.listdir(tier) == []


FORK_CHILD = """
import hashlib, json, os, signal, sys
from dask_prefetch import S3PrefetchFileSystem
options, path, tier, how = json.loads(sys.argv[1])
fs = S3PrefetchFileSystem(**options)
f = fs.open(path, prefetch_storage=[(tier, 1)], block_size=65536, part_size=16384)
head = f.read(100)
scratch = os.listdir(tier)
pid = os.fork()
if pid == 0:
    if how == "parent-killed":
        signal.alarm(60)  # never outlives the test by long
        sys.stdin.read()  # alive until the test closes our stdin
        os._exit(0)
    sys.exit(0)  # a normal exit: atexit handlers and finalizers run in the child
if how == "parent-killed":
    print(json.dumps({"scratch": [os.path.join(tier, s) for s in scratch], "child": pid}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
_, status = os.waitpid(pid, 0)
after = os.listdir(tier)
rest = f.read()
print(json.dumps({"status": status, "scratch": scratch, "after": after, "refetched": f.engine.stats.blocks_refetched,
                  "sha256": hashlib.sha256(head + rest).hexdigest()}))
f.close()
"""


def test_a_forked_childs_exit_leaves_the_parents_blocks_alone(storage_options, raw_fs, tiers):
    import hashlib

    (path,) = put_shards(raw_fs, [MiB])
    tier = tiers(1)[0][0]
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    arg = json.dumps([storage_options, path, tier, "child-exits"])
    run = subprocess.run([sys.executable, "-c", FORK_CHILD, arg], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["status"] == 0 and len(out["scratch"]) == 1
    assert out["after"] == out["scratch"]  # the child's exit did not delete the parent's live directory
    assert out["refetched"] == 0 and out["sha256"] == hashlib.sha256(raw_fs.cat(path)).hexdigest()
    assert os.listdir(tier) == []  # and the parent's own exit cleaned up


def test_a_killed_parents_leftovers_are_swept_while_its_forked_child_lives(storage_options, raw_fs, tiers):
    from dask_prefetch.cache.tiers import sweep_stale

    (path,) = put_shards(raw_fs, [MiB])
    tier = tiers(1)[0][0]
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    arg = json.dumps([storage_options, path, tier, "parent-killed"])
    proc = subprocess.Popen(
        [sys.executable, "-c", FORK_CHILD, arg], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        out = json.loads(proc.stdout.readline())
        assert proc.wait(60) == -signal.SIGKILL
        os.kill(out["child"], 0)  # the forked child is still alive, holding copies of the parent's descriptors
        assert sweep_stale(tier) == out["scratch"]  # yet the dead parent's directory is seen as dead
    finally:
        proc.stdin.close()  # the child exits
        proc.stdout.read()  # ... and so closes its copy of our pipe (it dies within 60 s in any case)
    assert os.listdir(tier) == []
