"""The read-only binary file handed to users: reads, seeks and tells over prefetched blocks."""

from __future__ import annotations

import io
import os
import threading
import weakref
from typing import Any, Sequence

from ..checks import describe, is_int
from ..engine.rolling import PrefetchEngine
from ..engine.layout import Layout


class PrefetchFile(io.RawIOBase):
    """A read-only, seekable binary file over one or more S3 objects, prefetched ahead.

    Made by :meth:`S3PrefetchFileSystem.open`; not meant to be built directly. Reads wait only
    for the bytes they need; everything behind the read position is evicted from the tiers.

    Attributes
    ----------
    fs : S3PrefetchFileSystem
        The filesystem that opened it.
    paths : list of str
        The objects, in logical order.
    size : int
        Logical size in bytes (the first object whole, then every other one minus its header).
    stats : EngineStats
        Bytes fetched, requests made, seconds spent waiting for data.

    Notes
    -----
    Closing (explicitly, by leaving a ``with`` block, by garbage collection or at interpreter
    exit) stops the prefetch and deletes every cache file. Pickling gives "re-open at this
    position": the copy pins the objects' ETags afresh.

    Threads may share one file. Each call (``read``, ``readinto``, ``readline``, ``seek``,
    ``tell``) holds the file's lock: it returns the file's bytes from the position it began at
    and moves that position by exactly as many, as if the calls ran one after another. The
    position is shared, so ``seek`` then ``read`` in one thread may read from where another
    thread moved it in between; threads that each want their own ranges should open a file each
    (prefetch plans ahead of one position) or hold a lock of their own around the pair.
    ``close`` from another thread does not wait for a read in progress to get its data: it
    stops the engine at once, which wakes a reader waiting for bytes with ``ValueError`` (I/O
    operation on closed file); a read that already has its bytes returns them.
    """

    def __init__(
        self,
        fs: Any,
        paths: Sequence[str],
        layout: Layout,
        engine: PrefetchEngine,
        open_kwargs: dict,
        position: int = 0,
    ):
        super().__init__()
        self.fs = fs
        self.paths = list(paths)
        self.size = layout.size
        self.layout = layout
        self.stats = engine.stats
        self._engine = engine
        self._open_kwargs = open_kwargs
        self._pos = position
        # The block file being read: block index, logical start, serial, descriptor, bytes present.
        self._index = -1
        self._start = 0
        self._serial: int | None = None
        self._fd: int | None = None
        self._lo = self._end = 0  # block offsets known to be present: [_lo, _end)
        # Held by every call that uses or moves the position or the descriptor (one GET takes far longer).
        self._lock = threading.RLock()
        self._finalizer = weakref.finalize(self, engine.close)

    @property
    def engine(self) -> PrefetchEngine:
        """The engine prefetching this file's blocks."""
        return self._engine

    @property
    def open_kwargs(self) -> dict:
        """The ``S3PrefetchFileSystem.open`` options this file was opened with."""
        return self._open_kwargs

    @property
    def name(self) -> str:
        return self.paths[0] if len(self.paths) == 1 else f"{self.paths[0]} (+{len(self.paths) - 1} shards)"

    @property
    def path(self) -> str:
        return self.paths[0]

    @property
    def mode(self) -> str:
        return "rb"

    def __repr__(self) -> str:
        return f"<PrefetchFile {self.name!r} size={self.size} pos={self._pos}{' closed' if self.closed else ''}>"

    def readable(self) -> bool:
        self._checkClosed()
        return True

    def seekable(self) -> bool:
        self._checkClosed()
        return True

    def tell(self) -> int:
        with self._lock:
            self._checkClosed()
            return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` (from the start, the current position or the end); re-plan prefetch.

        Returns
        -------
        int
            The new position (past the end is allowed: reads there return ``b""``).

        Raises
        ------
        TypeError
            If ``offset`` or ``whence`` is not an int.
        ValueError
            If ``whence`` is not 0, 1 or 2 (``io.SEEK_SET``, ``SEEK_CUR``, ``SEEK_END``), or the file is closed.
        OSError
            If the position would be negative.
        """
        self._checkClosed()  # first, as io's files do (again below, under the lock)
        offset = _int_argument(offset, "seek() offset")
        whence = _int_argument(whence, "seek() whence")
        with self._lock:
            self._checkClosed()
            return self._seek(offset, whence)

    def _seek(self, offset: int, whence: int) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._pos + offset
        elif whence == io.SEEK_END:
            position = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if position < 0:
            raise OSError(f"{self.name}: cannot seek to negative position {position}")
        self._pos = position
        if position < self.size:
            index = self.layout.block_at(position)
            if index != self._index:  # leaving the block: it may be evicted, so let go of its file
                self._close_fd()
                self._engine.move_to(index)
        return position

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the current position; short only at end of file.

        Raises
        ------
        TypeError
            If ``buffer`` is not a writable bytes-like object.
        """
        self._checkClosed()  # first, as io's files do (again below, under the lock)
        try:
            view = memoryview(buffer).cast("B")
        except TypeError:
            raise TypeError(f"readinto() needs a writable bytes-like object, got {type(buffer).__name__}") from None
        if view.readonly:
            raise TypeError(f"readinto() needs a writable bytes-like object, got a read-only {type(buffer).__name__}")
        with self._lock:
            self._checkClosed()
            return self._readinto(view)

    def _readinto(self, view: memoryview) -> int:
        total = 0
        started = self._pos
        try:
            while total < len(view) and self._pos < self.size:
                fd, offset, count = self._available(len(view) - total)
                got = os.preadv(fd, [view[total : total + count]], offset)
                if got <= 0:
                    raise OSError(f"{self.name}: block file shorter than expected at byte {self._pos}")
                total += got
                self._pos += got
        except BaseException:
            self._pos = started  # nothing was reported read: a retry reads the same bytes
            raise
        self.stats.bytes_served += total
        return total

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative or None).

        Raises
        ------
        TypeError
            If ``size`` is neither an int nor None.
        """
        self._checkClosed()  # first, as io's files do (again below, under the lock)
        size = None if size is None else _int_argument(size, "read() size")
        with self._lock:
            self._checkClosed()
            return self._read(size)

    def _read(self, size: int | None) -> bytes:
        remaining = self.size - self._pos
        size = remaining if size is None or size < 0 else min(size, remaining)
        pieces = []
        started = self._pos
        try:
            while size > 0:
                fd, offset, count = self._available(size)
                piece = os.pread(fd, count, offset)
                if not piece:
                    raise OSError(f"{self.name}: block file shorter than expected at byte {self._pos}")
                pieces.append(piece)
                self._pos += len(piece)
                size -= len(piece)
        except BaseException:
            self._pos = started  # nothing was returned: a retry reads the same bytes
            raise
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self.stats.bytes_served += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readline(self, size: int | None = -1) -> bytes:
        """One line (up to ``size`` bytes), read under the lock: another thread's read cannot split it."""
        with self._lock:
            return super().readline(size)

    def _available(self, wanted: int) -> tuple[int, int, int]:
        """(fd, offset in block file, count) for up to ``wanted`` bytes at the position, waiting if needed."""
        offset = self._pos - self._start
        if not (self._lo <= offset < self._end and self._fd is not None):
            index = self.layout.block_at(self._pos)
            block = self.layout.blocks[index]
            offset = self._pos - block.start
            if index != self._index:
                self._close_fd()  # let go of the block left behind first: its space may be what the next one needs
            have = self._serial if index == self._index else None
            serial, fd, end = self._engine.view(index, offset, have)
            if fd is not None:  # another block, or the same block fetched again into a new file
                self._close_fd()
                self._fd, self._serial, self._index, self._start = fd, serial, index, block.start
            self._lo, self._end = offset, end
        return self._fd, offset, min(wanted, self._end - offset)  # type: ignore[return-value]

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._serial = None
            self._index = -1
            self._lo = self._end = 0

    def close(self) -> None:
        """Stop prefetching and delete the cache files; idempotent and prompt, from any thread.

        The engine stops first, without the file's lock, so a read of another thread waiting for
        data wakes at once with ``ValueError``; then, once no read holds it, the descriptor closes.
        """
        if not self.closed:
            self._finalizer()  # engine.close(): readers blocked in view() raise ValueError
        with self._lock:
            self._close_fd()
            super().close()

    def __reduce__(self) -> tuple:
        with self._lock:
            return _reopen, (self.fs, self.paths, self._open_kwargs, self._pos)


def _int_argument(value: Any, name: str) -> int:
    """``value`` as an int (NumPy integers too); bools, floats and strings raise ``TypeError``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {describe(value)}")
    return int(value)


def _reopen(fs: Any, paths: list[str], open_kwargs: dict, position: int) -> PrefetchFile:
    return fs.open(paths if len(paths) > 1 else paths[0], **open_kwargs, offset=position)
