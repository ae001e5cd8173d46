"""Shards' first bytes checked by the task that reads them, so that a graph build reads only a sample.

When ``read_tractogram`` infers that objects are a global header and its shards, it reads the
first bytes of the global header and of a sample of the shards only (see ``planning.py``): at
HYDI's 464 shards, one ranged GET per shard was most of the graph build. The layout holds for
the shards not sampled only if each starts as the sampled ones do, and the task reading a shard
is the one that can check that without a request of its own: :class:`CheckedShards` is the
stream a ``"bodies"`` task parses then. It gives what the engine's ``header_bytes`` would (the
global header, then every shard's body), reading the shards from their byte 0 and looking at
each one's first bytes on the way:

* ``"trk"`` (shards with headers of their own): each shard's first 1000 bytes must be a TRK
  header whose records read as the global header's (:func:`~dask_prefetch.formats.trk.same_records`);
  they are left out of the stream, and the ``n_count`` each claims is kept (:attr:`CheckedShards.counts`)
  for the task's end-of-partition check;
* ``"bare"`` (shards that are bodies only): no shard may start like a tractogram or compressed
  file; its bytes are passed on whole.

A shard that does not is a :class:`CorruptTractogramError` naming it, raised before any of its
bytes are parsed: never records read with the wrong offset.
"""

from __future__ import annotations

from typing import Any, BinaryIO, Sequence

import numpy as np

from ..formats import CorruptTractogramError, TractogramHeader
from ..formats.compression import GZIP_MAGIC
from ..formats.reading import read_full
from ..formats.tck import MAGIC as TCK_MAGIC
from ..formats.trk import HEADER_SIZE, MAGIC as TRK_MAGIC, parse_trk_header, same_records
from ..formats.trx_zip import ZIP_MAGIC

__all__ = ["CHECKS", "CheckedShards", "shard_count"]

#: What a task checks of each shard's first bytes (``Partition.shard_heads``).
CHECKS = ("trk", "bare")
_FILE_MAGICS = (TRK_MAGIC, TCK_MAGIC, GZIP_MAGIC, ZIP_MAGIC)
_PEEK = max(len(m) for m in _FILE_MAGICS)
_COUNT = slice(988, 992)  # n_count in a TRK header
_INFERRED = (
    "the layout was inferred from the global header and a sample of the shards; pass layout= and header_bytes= "
    "to say how the objects are to be read"
)


def shard_count(head: bytes, path: str, global_head: bytes, header: TractogramHeader) -> int:
    """The ``n_count`` of a shard whose first bytes are ``head``, if its records read as the global header's.

    Parameters
    ----------
    head
        The shard's first 1000 bytes (fewer if it is shorter).
    path
        The shard's name, for messages.
    global_head, header
        The global header's 1000 bytes, and that header parsed.

    Raises
    ------
    CorruptTractogramError
        If ``head`` is not a TRK header (or a shorter one) or its records would read differently:
        another byte order, scalars, properties or affine.
    """
    if len(head) == HEADER_SIZE and head[: _COUNT.start] + head[_COUNT.stop :] == (
        global_head[: _COUNT.start] + global_head[_COUNT.stop :]
    ):  # shards of one writer: equal to the global header but for n_count, no parse needed
        count = int(np.frombuffer(head[_COUNT], dtype=header.fields["_endianness"] + "i4")[0])
        if count >= 0:
            return count
    try:
        own = parse_trk_header(head, path)
    except CorruptTractogramError as e:
        raise CorruptTractogramError(path, e.offset, f"{e.problem}, unlike the shards sampled: {_INFERRED}") from None
    if not same_records(own, header):
        raise CorruptTractogramError(
            path,
            0,
            "its own TRK header does not match the global header (format, byte order, scalars, properties or "
            f"affine), unlike the shards sampled: {_INFERRED} (layout='files': each file by its own header)",
        )
    return own.nb_streamlines or 0


def _check_bare(head: bytes, path: str) -> None:
    """``CorruptTractogramError`` if a shard read as a body only starts like a file of its own."""
    for magic in _FILE_MAGICS:
        if head.startswith(magic):
            raise CorruptTractogramError(
                path,
                0,
                f"starts like a file of its own ({magic!r}), unlike the shards sampled (bodies only): {_INFERRED}",
            )


class CheckedShards:
    """The stream of a global header and its shards' bodies, each shard's first bytes checked on the way.

    Parameters
    ----------
    stream
        The objects ``paths`` end to end, every one from its byte 0 (opened with ``header_bytes=0``);
        its owner closes it.
    paths, sizes
        The global header first, then the shards, and their sizes in bytes.
    check
        ``"trk"`` or ``"bare"`` (see the module's docstring).
    header
        The global header, parsed.

    Attributes
    ----------
    counts
        The ``n_count`` of each ``"trk"`` shard reached so far, in order.
    """

    def __init__(
        self, stream: BinaryIO, paths: Sequence[str], sizes: Sequence[int], check: str, header: TractogramHeader
    ) -> None:
        if check not in CHECKS:
            raise ValueError(f"check must be one of {CHECKS}, got {check!r}")
        self._stream, self._paths, self._sizes = stream, list(paths), list(sizes)
        self._check, self._header = check, header
        self.counts: list[int] = []
        self._global = read_full(stream, min(HEADER_SIZE, self._sizes[0]))
        self._pending = memoryview(self._global)  # bytes read ahead, still to hand on
        self._i = 0  # the object being read
        self._left = self._sizes[0] - len(self._global)  # its bytes not yet read from ``stream``
        self._position = 0

    @property
    def body_bytes(self) -> int:
        """Bytes the stream gives after the global header's 1000 (what the records may fill)."""
        skip = HEADER_SIZE if self._check == "trk" else 0
        return sum(size - skip for size in self._sizes[1:]) + self._sizes[0] - HEADER_SIZE

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the stream; fewer bytes only at its end (or where an object ends early)."""
        view = memoryview(buffer).cast("B")
        n = 0
        while n < len(view):
            if self._pending:
                k = min(len(self._pending), len(view) - n)
                view[n : n + k] = self._pending[:k]
                self._pending = self._pending[k:]
            elif self._left:
                k = self._stream.readinto(view[n : n + min(len(view) - n, self._left)]) or 0
                if not k:  # the object ended before its listed size: the parser reports what it lacks
                    break
                self._left -= k
            elif self._next():
                continue
            else:
                break
            n += k
        self._position += n
        return n

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left if ``n`` is negative)."""
        if n is None or n < 0:
            n = self.body_bytes + HEADER_SIZE - self._position
        buffer = bytearray(max(0, n))
        return bytes(buffer[: self.readinto(buffer)])

    def _next(self) -> bool:
        """Move on to the next shard, checking its first bytes; False after the last."""
        if self._i + 1 == len(self._paths):
            return False
        self._i += 1
        path, size = self._paths[self._i], self._sizes[self._i]
        head = read_full(self._stream, min(HEADER_SIZE if self._check == "trk" else _PEEK, size))
        if self._check == "trk":
            self.counts.append(shard_count(head, path, self._global, self._header))
        else:
            _check_bare(head, path)
            self._pending = memoryview(head)
        self._left = size - len(head)
        return True
