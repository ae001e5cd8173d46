"""Tiers: budgets, priority, private directories and the sweep of dead owners' leftovers."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading

import pytest

from dask_prefetch.cache.tiers import PAGE, ScratchDirectory, TierSet, sweep_stale

MiB = 2**20


def test_reserve_fills_the_first_tier_before_the_next(tiers):
    ts = TierSet(tiers(2, 3))
    first, second = ts.tiers
    got = [ts.reserve(MiB) for _ in range(6)]
    assert got == [first, first, second, second, second, None]
    assert first.used == 2 * MiB and second.used == 3 * MiB
    ts.release(first, MiB)
    assert ts.reserve(MiB) is first


def test_reservations_are_page_rounded_and_never_exceed_the_budget(tiers):
    ts = TierSet(tiers(1))
    tier = ts.tiers[0]
    n = 0
    while ts.reserve(1000) is not None:
        n += 1
    assert n == MiB // PAGE and tier.used == tier.budget


def test_concurrent_reservations_respect_the_budget(tiers):
    ts = TierSet(tiers(4))
    counts = []

    def grab():
        counts.append(sum(ts.reserve(PAGE) is not None for _ in range(2000)))

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 4 * MiB // PAGE and ts.tiers[0].used == 4 * MiB


def test_release_wakes_listeners(tiers):
    ts = TierSet(tiers(1))
    calls = []
    ts.add_listener(lambda: calls.append(1))
    tier = ts.reserve(10)
    ts.release(tier, 10)
    assert calls == [1]


def test_bad_storage_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        TierSet([])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TierSet([("/nonexistent/dask-prefetch-tier", 10)])
    with pytest.raises(ValueError, match="must be > 0"):
        TierSet([(str(tmp_path), 0)])
    with pytest.raises(TypeError, match=r"\(directory, MiB\) pairs"):
        TierSet([str(tmp_path)])
    with pytest.raises(ValueError, match="must be > 0 MiB, got nan"):
        TierSet([(str(tmp_path), float("nan"))])


def test_a_file_is_not_a_tier_directory(tmp_path):
    f = tmp_path / "file"
    f.write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match=f"^prefetch_storage directory {str(f)!r} is not a directory$"):
        TierSet([(str(f), 10)])
    with pytest.raises(NotADirectoryError, match="a component of its path is a file"):
        TierSet([(str(f / "below"), 10)])
    with pytest.raises(NotADirectoryError, match="a component of its path is a file"):
        TierSet([(str(f / "below"), 10)], create=True)


def test_one_directory_named_twice_through_a_symlink_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(ValueError, match=f"names directory {str(real)!r} twice.*its budget would count twice"):
        TierSet([(str(real), 10), (str(tmp_path / "link"), 10)])
    with pytest.raises(ValueError, match="twice"):
        TierSet([(str(tmp_path / "link"), 10), (str(tmp_path / "link" / "." / ".." / "real"), 10)])


def test_missing_directories_are_made_private_only_where_missing(tmp_path):
    from dask_prefetch.cache.tiers import make_directories

    base = tmp_path / "base"
    base.mkdir(mode=0o755)
    target = base / "a" / "b"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TierSet([(str(target), 1)])  # only when asked to
    old_umask = os.umask(0o022)
    try:
        (tier,) = TierSet([(str(target), 1)], create=True).tiers
    finally:
        os.umask(old_umask)
    assert tier.directory == str(target)
    assert [stat.S_IMODE(p.stat().st_mode) for p in (base, base / "a", target)] == [0o755, 0o700, 0o700]
    assert make_directories(str(target)) == []  # already there: untouched


@pytest.mark.skipif(os.geteuid() == 0, reason="root may make directories anywhere")
def test_a_directory_that_cannot_be_made_is_named(tmp_path):
    from dask_prefetch.cache.tiers import make_directories

    base = tmp_path / "base"
    base.mkdir()
    os.chmod(base, 0o500)  # no room to make anything below
    try:
        with pytest.raises(PermissionError, match="does not exist and cannot be made"):
            make_directories(str(base / "c"))
    finally:
        os.chmod(base, 0o755)


def test_scratch_directory_is_private_and_removed(tmp_path):
    scratch = ScratchDirectory(str(tmp_path))
    assert stat.S_IMODE(os.stat(scratch.path).st_mode) == 0o700
    with open(scratch.file("0"), "wb") as f:
        f.write(b"data")
    scratch.remove()
    scratch.remove()  # idempotent
    assert not os.path.exists(scratch.path)


def test_sweep_removes_dead_owners_directories_and_keeps_live_ones(tmp_path):
    code = (
        "import os, sys; from dask_prefetch.cache.tiers import ScratchDirectory;"
        "s = ScratchDirectory(sys.argv[1]); open(s.file('7'), 'wb').write(b'stale');"
        "print(s.path, flush=True); os._exit(0)"  # dies without cleaning up
    )
    dead = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    dead_path = dead.stdout.strip()
    assert os.path.isdir(dead_path)
    live = ScratchDirectory(str(tmp_path))  # the first scratch directory of a process sweeps its parent
    try:
        assert not os.path.exists(dead_path) and os.path.isdir(live.path)
        assert sweep_stale(str(tmp_path)) == []  # a live owner's directory is never taken
        assert os.path.isdir(live.path)
    finally:
        live.remove()


def test_sweep_storage_sweeps_every_tier_now(tmp_path):
    from dask_prefetch.cache.tiers import sweep_storage

    code = (
        "import os, sys; from dask_prefetch.cache.tiers import ScratchDirectory;"
        "print(ScratchDirectory(sys.argv[1]).path, flush=True); os._exit(0)"
    )
    tiers = [tmp_path / "a", tmp_path / "b"]
    for tier in tiers:
        tier.mkdir()
    live = ScratchDirectory(str(tiers[1]))  # (its first scratch directory there sweeps it: before the deaths)
    try:
        dead = []
        for tier in tiers:
            out = subprocess.run([sys.executable, "-c", code, str(tier)], capture_output=True, text=True, check=True)
            dead.append(out.stdout.strip())
        storage = [(str(tiers[0]), 1), (str(tiers[1]), 1), (str(tmp_path / "missing"), 1)]
        assert sorted(sweep_storage(storage)) == sorted(dead)
        assert os.listdir(tiers[0]) == [] and os.path.isdir(live.path)
    finally:
        live.remove()


def test_capped_users_leave_the_rest_of_the_budget_to_the_others(tiers):
    tier_set = TierSet(tiers(8))
    users = [lambda: None for _ in range(3)]
    for user in users:
        tier_set.add_listener(user)
    assert tier_set.fair_share() == 8 * MiB // 3
    tier_set.set_cap(users[0], 2 * MiB)  # e.g. a file opened ahead of its task: its head only
    assert tier_set.fair_share() == 3 * MiB  # (8 - 2) / 2
    tier_set.set_cap(users[0], None)
    assert tier_set.fair_share() == 8 * MiB // 3
    tier_set.set_cap(users[1], 1 * MiB)
    tier_set.remove_listener(users[1])
    assert tier_set.fair_share() == 4 * MiB


def test_a_starved_reader_comes_before_prefetching_until_it_has_its_block(tiers):
    tier_set = TierSet(tiers(1))
    woken: list[str] = []
    reader, prefetcher = (lambda: woken.append("reader")), (lambda: woken.append("prefetcher"))
    shed: list[str] = []
    tier_set.add_listener(reader, lambda: shed.append("reader"))
    tier_set.add_listener(prefetcher, lambda: shed.append("prefetcher"))
    held = tier_set.reserve(PAGE, prefetcher, urgent=False)
    assert held is not None and tier_set.reserve(MiB, reader) is None  # one page short
    tier_set.press(reader)
    assert shed == ["prefetcher"] and tier_set.starved()
    assert tier_set.reserve(PAGE, prefetcher, urgent=False) is None  # no prefetching while a reader waits
    tier_set.release(held, PAGE)
    woken.clear()
    assert tier_set.reserve(MiB, reader) is not None and not tier_set.starved()
    assert woken == ["reader", "prefetcher"]  # prefetching may resume: everyone hears of it
    tier_set.press(reader)
    tier_set.satisfied(reader)  # its reader moved on to a block it holds
    assert not tier_set.starved()
    tier_set.press(prefetcher)
    tier_set.remove_listener(prefetcher)  # a starved user that leaves is forgotten
    assert not tier_set.starved()
