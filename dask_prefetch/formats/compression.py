"""gzip-compressed tractograms (``.trk.gz``, ``.tck.gz``, or any name): detected by magic number, read as a stream.

gzip has no random access, so a compressed file is read front to back by one reader, with
bounded memory: :class:`GunzipStream` decompresses as the parser reads, through :mod:`gzip`, which
also checks each member's CRC-32 and length, so a damaged file raises instead of giving other
points. Nothing here knows where the compressed bytes come from.
"""

from __future__ import annotations

import gzip
import io
import zlib
from typing import Any, BinaryIO

from .errors import CorruptTractogramError

GZIP_MAGIC = b"\x1f\x8b"
#: Errors of a damaged or truncated gzip stream.
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


def is_gzip(prefix: bytes) -> bool:
    """Whether bytes starting a file are a gzip stream's (its magic number ``1f 8b``)."""
    return bytes(prefix[:2]) == GZIP_MAGIC


def gunzip_prefix(data: bytes, n: int, name: str = "<file>") -> bytes:
    """The first (up to) ``n`` decompressed bytes of a gzip stream of which ``data`` are the first bytes.

    Fewer when ``data`` ends first: it may be a prefix of the compressed file.

    Raises
    ------
    CorruptTractogramError
        If ``data`` does not start a valid gzip stream.
    """
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # a gzip header and trailer around deflate
    try:
        return inflate.decompress(data, n)
    except zlib.error as e:
        raise CorruptTractogramError(name, 0, f"gzip-compressed, but does not inflate: {e}") from None


class GunzipStream(io.RawIOBase):
    """The decompressed bytes of a gzip-compressed binary file object, read sequentially.

    Parameters
    ----------
    fileobj
        The compressed bytes, positioned at the gzip header. Not closed by :meth:`close`.
    name
        Named in errors.

    Notes
    -----
    :meth:`seek` forward decompresses and discards; backward starts over from the first byte (as
    :class:`gzip.GzipFile` does), and from the end is not supported: a compressed file's length is
    unknown until it is read.
    """

    def __init__(self, fileobj: BinaryIO, name: str = "<file>") -> None:
        super().__init__()
        self.name = name
        self._gzip = gzip.GzipFile(fileobj=fileobj, mode="rb")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._gzip.readinto(buffer)
        except _GZIP_ERRORS as e:
            raise self._damaged(e) from None

    def read(self, n: int = -1) -> bytes:
        try:
            return self._gzip.read(n)
        except _GZIP_ERRORS as e:
            raise self._damaged(e) from None

    def tell(self) -> int:
        return self._gzip.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            raise io.UnsupportedOperation(f"{self.name}: a gzip stream cannot seek from its end")
        try:
            return self._gzip.seek(offset, whence)
        except _GZIP_ERRORS as e:
            raise self._damaged(e) from None

    def close(self) -> None:
        if not self.closed:
            self._gzip.close()  # leaves fileobj open: GzipFile closes only files it opened
        super().close()

    def _damaged(self, error: BaseException) -> CorruptTractogramError:
        where = self._gzip.tell()
        return CorruptTractogramError(self.name, where, f"damaged gzip stream (near decompressed byte {where}): {error}")


def decompressed(fileobj: BinaryIO, name: str = "<file>", buffer_size: int = 2**20) -> BinaryIO:
    """``fileobj`` itself, or a :class:`GunzipStream` over it when its next bytes are gzip's.

    The compressed side is read through a buffer of ``buffer_size`` bytes (gzip alone would read
    it 8 KiB at a time).
    """
    start = fileobj.tell()
    magic = fileobj.read(2)
    fileobj.seek(start)
    if not is_gzip(magic):
        return fileobj
    return GunzipStream(io.BufferedReader(_Unclosed(fileobj), buffer_size), name)  # type: ignore[arg-type]


class _Unclosed(io.RawIOBase):
    """A view of a file object that its readers may close without closing it (its owner does)."""

    def __init__(self, fileobj: BinaryIO) -> None:
        super().__init__()
        self._file = fileobj

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer: Any) -> int:
        if hasattr(self._file, "readinto"):
            return self._file.readinto(buffer)
        data = self._file.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)
