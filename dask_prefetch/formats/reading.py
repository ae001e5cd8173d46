"""Reading helpers shared by the format parsers."""

from __future__ import annotations

from typing import Any, BinaryIO


def read_full(fileobj: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes: fewer only at end of file, however short the object's own reads are."""
    data = fileobj.read(n)
    if data is None:
        data = b""
    if len(data) >= n or not data:
        return data
    pieces = [data]
    got = len(data)
    while got < n:
        more = fileobj.read(n - got)
        if not more:
            break
        pieces.append(more)
        got += len(more)
    return b"".join(pieces)


def readinto_full(fileobj: BinaryIO, buffer: Any) -> int:
    """Fill ``buffer`` (any writable buffer) from ``fileobj``; fewer bytes only at end of file.

    Returns the number of bytes read.
    """
    view = memoryview(buffer).cast("B")
    readinto = getattr(fileobj, "readinto", None)
    got, n = 0, len(view)
    while got < n:
        if readinto is not None:
            k = readinto(view[got:]) or 0
        else:
            piece = fileobj.read(n - got)
            k = len(piece) if piece else 0
            view[got : got + k] = piece or b""
        if not k:
            break
        got += k
    return got
