"""Local storage tiers: byte budgets, space reservations and private scratch directories.

A :class:`TierSet` is a list of directories in descending priority, each with a budget.
Space is reserved *before* a download starts and released when the block is evicted, so the
bytes on disk under a tier never exceed its budget. A TierSet may be shared by several open
files (one budget for all of them); each file keeps its blocks in a :class:`ScratchDirectory`
of its own under every tier.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from ..checks import check_storage

MiB = 2**20
PAGE = 4096  # tmpfs and ext4 allocate whole pages: budget what the disk will really use
SCRATCH_PREFIX = "dask-prefetch-"
_LOCK_NAME = ".lock"
_STALE_GRACE_SECONDS = 60.0
#: Why a tier takes no new block (see :attr:`StorageTier.unusable`).
DISK_FULL = "disk full"
REMOVED = "directory removed"


def disk_bytes(nbytes: int) -> int:
    """Bytes a file of ``nbytes`` occupies on a page-granular filesystem."""
    return -(-nbytes // PAGE) * PAGE


@dataclass
class StorageTier:
    """One directory and its byte budget; ``used`` counts reserved bytes.

    ``unusable`` says why no new block goes here: :data:`DISK_FULL` (the disk had no room, though
    the budget did; cleared when one of our blocks is released) or :data:`REMOVED` (for good).
    """

    directory: str
    budget: int
    used: int = field(default=0)
    unusable: str | None = None

    @property
    def free(self) -> int:
        return self.budget - self.used


class TierSet:
    """Storage tiers in descending priority with thread-safe space reservation.

    Parameters
    ----------
    storage
        ``[(directory, MiB), ...]``, highest priority first.
    create
        Make missing directories (see :func:`make_directories`) instead of refusing them.

    Raises
    ------
    TypeError
        If ``storage`` is malformed (see :func:`dask_prefetch.checks.check_storage`).
    ValueError
        If ``storage`` is malformed, or names one directory twice, also through a symlink or
        another path to it (its budget would count twice).
    FileNotFoundError, NotADirectoryError, PermissionError
        If a directory does not exist (and ``create`` is false or it cannot be made), is not a
        directory, or is not writable.
    """

    def __init__(self, storage: Sequence[tuple[str, float]], create: bool = False) -> None:
        tiers = []
        seen: dict[tuple[int, int], str] = {}
        for directory, mib in check_storage(storage):
            directory = os.path.abspath(directory)
            if create:
                make_directories(directory)
            info = _directory_stat(directory)
            if not os.access(directory, os.W_OK | os.X_OK):
                raise PermissionError(f"prefetch_storage directory {directory!r} is not writable")
            same = seen.get((info.st_dev, info.st_ino))
            if same is not None:
                raise ValueError(
                    f"prefetch_storage names directory {os.path.realpath(directory)!r} twice, as {same!r} "
                    f"and {directory!r}: its budget would count twice"
                )
            seen[(info.st_dev, info.st_ino)] = directory
            tiers.append(StorageTier(directory, int(mib * MiB)))
        self.tiers: tuple[StorageTier, ...] = tuple(tiers)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._shedders: dict[Callable[[], None], Callable[[], None]] = {}
        self._caps: dict[Callable[[], None], int] = {}  # users holding at most this much
        self._starved: set[Callable[[], None]] = set()  # users whose reader waits for room (see press)

    @property
    def largest_budget(self) -> int:
        return max(t.budget for t in self.tiers)

    def reserve(self, nbytes: int, user: Callable[[], None] | None = None, urgent: bool = True) -> StorageTier | None:
        """Reserve room for a file of ``nbytes`` in the first tier that has it, or None.

        Parameters
        ----------
        nbytes
            The file's size (reserved page-rounded).
        user
            The listener callback of the user reserving (see :meth:`add_listener`).
        urgent
            True for the block a reader needs now (its cursor block); False for prefetching
            ahead, which is refused while any reader waits for room (see :meth:`press`).
        """
        need = disk_bytes(nbytes)
        with self._lock:
            if not urgent and self._starved:
                return None  # readers waiting for their cursor blocks come first
            for tier in self.tiers:
                if tier.free >= need and tier.unusable is None:
                    tier.used += need
                    break
            else:
                return None
            woken = self._stop_starving(user)
        for listener in woken:
            listener()
        return tier

    def release(self, tier: StorageTier, nbytes: int) -> None:
        """Give back a reservation made by :meth:`reserve`, then wake the listeners."""
        with self._lock:
            tier.used -= disk_bytes(nbytes)
            if tier.unusable == DISK_FULL:
                tier.unusable = None  # room was freed: worth another try
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def set_unusable(self, tier: StorageTier, why: str) -> None:
        """Stop placing blocks in ``tier``: :data:`DISK_FULL` until space is released, :data:`REMOVED` for good."""
        with self._lock:
            if tier.unusable != REMOVED:
                tier.unusable = why

    def unusable_reasons(self) -> list[str]:
        """``"directory: why"`` for every tier that takes no block now (all of them: nothing can)."""
        with self._lock:
            return [f"{t.directory}: {t.unusable}" for t in self.tiers if t.unusable is not None]

    def add_listener(self, callback: Callable[[], None], shed: Callable[[], None] | None = None) -> None:
        """Join as a user of these tiers.

        ``callback()`` is called whenever space is released, ``shed()`` when another user cannot
        get room for the block its reader needs (give back what is beyond your :meth:`fair_share`;
        a user with no reader yet, such as a file opened ahead of its task, gives back everything).
        Both must be quick and not raise.
        """
        with self._lock:
            self._listeners.append(callback)
            if shed is not None:
                self._shedders[callback] = shed

    def remove_listener(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)
            self._shedders.pop(callback, None)
            self._caps.pop(callback, None)
            woken = self._stop_starving(callback)
        for listener in woken:
            listener()

    def set_cap(self, callback: Callable[[], None], nbytes: int | None) -> None:
        """The user registered with ``callback`` holds at most ``nbytes`` (None: its fair share)."""
        with self._lock:
            if nbytes is None:
                self._caps.pop(callback, None)
            elif callback in self._listeners:
                self._caps[callback] = nbytes

    def fair_share(self) -> int:
        """Bytes each user may hold: the budget left by capped users, split among the others."""
        with self._lock:
            left = sum(t.budget for t in self.tiers) - sum(self._caps.values())
            return max(0, left) // max(1, len(self._listeners) - len(self._caps))

    def press(self, callback: Callable[[], None]) -> None:
        """The user registered with ``callback`` has no room for the block its reader needs.

        Until that user's next :meth:`reserve` succeeds (or it leaves), it is *starved*: no one
        may reserve for prefetching (``urgent=False``), and every other user is asked to shed
        what is beyond its share (files opened ahead of their task shed everything). Readers'
        cursor blocks are the only space left then, and each is released when its reader moves
        on, so the starved reader gets its block: the smallest budget, one block, makes
        progress one block at a time.
        """
        with self._lock:
            if callback in self._listeners:
                self._starved.add(callback)
            shedders = [shed for cb, shed in self._shedders.items() if cb is not callback]
        for shed in shedders:
            shed()

    def satisfied(self, callback: Callable[[], None]) -> None:
        """The user registered with ``callback`` needs no room now (its reader moved to a block it holds)."""
        with self._lock:
            woken = self._stop_starving(callback)
        for listener in woken:
            listener()

    def starved(self) -> bool:
        """Whether some reader waits for room for its cursor block (see :meth:`press`)."""
        with self._lock:
            return bool(self._starved)

    def _stop_starving(self, user: Callable[[], None] | None) -> list[Callable[[], None]]:
        """Forget that ``user`` is starved; the listeners to wake if prefetching may resume (lock held)."""
        if user is None or user not in self._starved:
            return []
        self._starved.discard(user)
        return [] if self._starved else list(self._listeners)


def _directory_stat(directory: str) -> os.stat_result:
    """``os.stat`` of a tier directory, or an error that says what is wrong with it."""
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        raise FileNotFoundError(f"prefetch_storage directory {directory!r} does not exist") from None
    except NotADirectoryError:
        raise NotADirectoryError(
            f"prefetch_storage directory {directory!r} cannot exist: a component of its path is a file"
        ) from None
    except PermissionError:
        raise PermissionError(f"prefetch_storage directory {directory!r} cannot be reached (permission denied)") from None
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"prefetch_storage directory {directory!r} is not a directory")
    return info


def make_directories(directory: str) -> list[str]:
    """Create ``directory`` and its missing parents, mode 0700, as fsspec's caches make theirs.

    Only the missing components are created (and made private); existing ones are left as they
    are. Safe when several processes make the same directory at once.

    Returns
    -------
    list of str
        The directories created, outermost first.

    Raises
    ------
    NotADirectoryError
        If the path, or a component of it, is a file.
    PermissionError
        If a missing component cannot be created.
    """
    directory = os.path.abspath(directory)
    missing = []
    path = directory
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    made = []
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue  # made meanwhile by another process (another worker on this machine)
        except NotADirectoryError:
            raise NotADirectoryError(
                f"prefetch_storage directory {directory!r} cannot be made: a component of its path is a file"
            ) from None
        except PermissionError as e:
            raise PermissionError(
                f"prefetch_storage directory {directory!r} does not exist and cannot be made "
                f"({os.path.dirname(path)!r}: {e.strerror})"
            ) from None
        os.chmod(path, 0o700)  # whatever the umask
        made.append(path)
    _directory_stat(directory)
    return made


class ScratchDirectory:
    """A private directory (mode 0700) for one owner's block files under ``parent``.

    It holds an exclusive ``flock`` on a lock file for its lifetime, so a sweep of a later
    process can tell directories of dead owners (lock free) from live ones. Only the process
    that made it removes it: after ``os.fork`` the child lets go of its copy of the lock (so the
    parent's death still frees it) and never deletes the parent's directory.

    Raises
    ------
    OSError
        If the directory cannot be created.
    """

    def __init__(self, parent: str) -> None:
        _sweep_once(parent)
        self._pid = os.getpid()
        # Made under a name sweeps ignore, locked, then renamed: never seen unlocked by a sweep.
        making = tempfile.mkdtemp(prefix=f".{SCRATCH_PREFIX}", dir=parent)
        try:
            self._lock_fd: int | None = os.open(os.path.join(making, _LOCK_NAME), os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.path = making.replace(f"/.{SCRATCH_PREFIX}", f"/{SCRATCH_PREFIX}{os.getpid()}-", 1)
            os.rename(making, self.path)
        except BaseException:
            shutil.rmtree(making, ignore_errors=True)
            if getattr(self, "_lock_fd", None) is not None:
                os.close(self._lock_fd)  # type: ignore[arg-type]
            raise
        _live_scratch.add(self)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def remove(self) -> None:
        """Delete the directory and everything in it; idempotent. In another process (a fork), do nothing."""
        if os.getpid() != self._pid:
            self._forget()
            return
        shutil.rmtree(self.path, ignore_errors=True)
        self._forget()

    def _forget(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        _live_scratch.discard(self)


_live_scratch: weakref.WeakSet[ScratchDirectory] = weakref.WeakSet()
_swept: set[str] = set()
_swept_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked child holds copies of our lock descriptors: close them, so our death frees the locks."""
    global _swept_lock
    _swept_lock = threading.Lock()  # another thread may have held it at the fork
    _swept.clear()  # a new process: its first scratch directory per tier sweeps again
    for scratch in list(_live_scratch):
        if scratch._lock_fd is not None:
            try:
                os.close(scratch._lock_fd)
            except OSError:
                pass
            scratch._lock_fd = None
    _live_scratch.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _sweep_once(parent: str) -> None:
    with _swept_lock:
        if parent in _swept:
            return
        _swept.add(parent)
    sweep_stale(parent)


def sweep_stale(parent: str) -> list[str]:
    """Remove scratch directories under ``parent`` left by processes that are gone.

    A directory is stale when nobody holds its lock (its owner died), or when it has no lock
    file and is older than a grace period. Only directories owned by this user are touched,
    and their contents are never read. Opening a file sweeps each tier once per process; a
    tier whose disk is full is swept again (see :class:`~dask_prefetch.engine.blockfiles.BlockFiles`),
    and ``PrefetchWorkerPlugin.setup`` sweeps its tiers at once.

    Returns
    -------
    list of str
        The directories removed.
    """
    removed = []
    for path in _scratch_candidates(parent):
        if _is_stale(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def sweep_storage(storage: Sequence[tuple[str, float]] | None = None) -> list[str]:
    """Sweep every tier directory of ``storage`` of dead processes' scratch directories, now.

    For long-lived processes that start using tiers (the worker plugin's setup, the
    ``dask-prefetch`` command's start): a killed process's blocks (RAM, on ``/dev/shm``) go at
    once rather than when a file is next opened there. Missing directories are skipped.

    Parameters
    ----------
    storage
        ``[(directory, MiB), ...]``; None: ``dask-prefetch.storage`` (or its default).

    Returns
    -------
    list of str
        The directories removed.

    Raises
    ------
    TypeError, ValueError
        If ``storage`` is malformed (see :func:`dask_prefetch.checks.check_storage`).
    """
    if storage is None:
        from ..config import default_storage

        storage = default_storage()
    removed = []
    for directory, _ in check_storage(storage):
        removed += sweep_stale(os.path.abspath(directory))
    return removed


def _scratch_candidates(parent: str) -> Iterable[str]:
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    uid = os.getuid()
    return [
        e.path
        for e in entries
        if e.name.startswith(SCRATCH_PREFIX) and e.is_dir(follow_symlinks=False) and e.stat().st_uid == uid
    ]


def _is_stale(path: str) -> bool:
    lock = os.path.join(path, _LOCK_NAME)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        try:
            return time.time() - os.stat(path).st_mtime > _STALE_GRACE_SECONDS
        except OSError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live owner holds it
    finally:
        os.close(fd)
    return True
