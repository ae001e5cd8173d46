"""Format detection by magic number, and one entry point that opens the right reader."""

from __future__ import annotations

from typing import BinaryIO, Iterator, Protocol

from .chunk import StreamlineChunk, TractogramHeader
from .compression import decompressed, is_gzip
from .errors import CorruptTractogramError
from .reading import read_full

_MAGICS = {b"TRACK": "trk", b"mrtrix tracks": "tck"}


class Reader(Protocol):
    header: TractogramHeader

    def __iter__(self) -> Iterator[StreamlineChunk]: ...


def detect_format(prefix: bytes, name: str = "<file>") -> str:
    """``"trk"`` or ``"tck"`` from a file's first bytes (at least 13).

    Raises
    ------
    CorruptTractogramError
        If neither magic number is there.
    """
    for magic, fmt in _MAGICS.items():
        if prefix.startswith(magic):
            return fmt
    if is_gzip(prefix):
        raise CorruptTractogramError(name, 0, "gzip-compressed: decompress its first bytes before detecting the format")
    raise CorruptTractogramError(name, 0, f"neither a TRK nor a TCK file (starts with {bytes(prefix[:13])!r})")


def open_reader(fileobj: BinaryIO, name: str = "<file>", **kwargs: object) -> Reader:
    """Detect the format at the file object's position and return its reader (header parsed).

    ``kwargs`` go to :class:`~.trk.TrkReader` or :class:`~.tck.TckReader`. The file object must
    be seekable (it is rewound to where it was before parsing the header). A gzip-compressed file
    is read through a :class:`~.compression.GunzipStream`, whatever its name.
    """
    fileobj = decompressed(fileobj, name)
    start = fileobj.tell()
    fmt = detect_format(read_full(fileobj, 13), name)
    fileobj.seek(start)
    if fmt == "trk":
        from .trk import TrkReader

        return TrkReader(fileobj, name, **kwargs)  # type: ignore[arg-type]
    from .tck import TckReader

    return TckReader(fileobj, name, **kwargs)  # type: ignore[arg-type]
