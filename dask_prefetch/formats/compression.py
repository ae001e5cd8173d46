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


#: The largest ratio of inflated to compressed bytes deflate can reach (about 1032:1).
MAX_RATIO = 1032


def inflated_size_hint(trailer: bytes, compressed: int) -> int:
    """A lower bound of a gzip file's inflated size from its last 4 bytes (``ISIZE``), to size buffers.

    ``ISIZE`` is the last member's inflated length modulo 2**32: the whole file's for a single
    member under 4 GiB, less than it otherwise, so never more than the file holds, unless the
    trailer is damaged; the value is then capped at what ``compressed`` bytes can inflate to.
    A damaged trailer is caught by the gzip reader's own length check, not here.
    """
    if len(trailer) < 4:
        return 0
    return min(int.from_bytes(trailer[-4:], "little"), MAX_RATIO * compressed)


class GunzipStream(io.RawIOBase):
    """The decompressed bytes of a gzip-compressed binary file object, read sequentially.

    Parameters
    ----------
    fileobj
        The compressed bytes, positioned at the gzip header. Not closed by :meth:`close`.
    name
        Named in errors.
    size_hint
        The decompressed size if known in advance (:func:`inflated_size_hint`), or None: readers
        may size their buffers from :attr:`size_hint`, which is never checked against the bytes.

    Notes
    -----
    :meth:`seek` forward decompresses and discards; backward starts over from the first byte (as
    :class:`gzip.GzipFile` does), and from the end is not supported: a compressed file's length is
    unknown until it is read.
    """

    def __init__(self, fileobj: BinaryIO, name: str = "<file>", size_hint: int | None = None) -> None:
        super().__init__()
        self.name = name
        self.size_hint = size_hint
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


def decompressed(
    fileobj: BinaryIO, name: str = "<file>", buffer_size: int = 2**20, size_hint: int | None = None
) -> BinaryIO:
    """``fileobj`` itself, or a :class:`GunzipStream` over it when its next bytes are gzip's.

    The compressed side is read through a buffer of ``buffer_size`` bytes (gzip alone would read
    it 8 KiB at a time); ``size_hint`` is the stream's (see :class:`GunzipStream`).
    """
    start = fileobj.tell()
    magic = fileobj.read(2)
    fileobj.seek(start)
    if not is_gzip(magic):
        return fileobj
    return GunzipStream(io.BufferedReader(_Unclosed(fileobj), buffer_size), name, size_hint)  # type: ignore[arg-type]


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
