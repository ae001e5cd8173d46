"""Format detection by magic number, and one entry point that opens the right reader.

TRX is detected too (a zip: ``PK\\x03\\x04``), but it is a container of arrays read by byte
ranges (:mod:`.trx`), not a stream: :func:`open_reader` refuses it.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator, Protocol

from .chunk import StreamlineChunk, TractogramHeader
from .compression import decompressed, is_gzip
from .errors import CorruptTractogramError
from .reading import read_full
from .trx_zip import ZIP_MAGIC

_MAGICS = {b"TRACK": "trk", b"mrtrix tracks": "tck", ZIP_MAGIC: "trx"}


class Reader(Protocol):
    header: TractogramHeader

    def __iter__(self) -> Iterator[StreamlineChunk]: ...


def detect_format(prefix: bytes, name: str = "<file>") -> str:
    """``"trk"``, ``"tck"`` or ``"trx"`` (a zip) from a file's first bytes (at least 13).

    Raises
    ------
    CorruptTractogramError
        If no magic number is there.
    """
    for magic, fmt in _MAGICS.items():
        if prefix.startswith(magic):
            return fmt
    if is_gzip(prefix):
        raise CorruptTractogramError(name, 0, "gzip-compressed: decompress its first bytes before detecting the format")
    raise CorruptTractogramError(name, 0, f"neither a TRK nor a TCK file, nor a TRX zip (starts with {bytes(prefix[:13])!r})")


def open_reader(fileobj: BinaryIO, name: str = "<file>", size_hint: int | None = None, **kwargs: object) -> Reader:
    """Detect the format at the file object's position and return its reader (header parsed).

    ``kwargs`` go to :class:`~.trk.TrkReader` or :class:`~.tck.TckReader`. The file object must
    be seekable (it is rewound to where it was before parsing the header). A gzip-compressed file
    is read through a :class:`~.compression.GunzipStream`, whatever its name; ``size_hint``: its
    decompressed size if known (see :func:`~.compression.inflated_size_hint`), to size buffers.
    """
    fileobj = decompressed(fileobj, name, size_hint=size_hint)
    start = fileobj.tell()
    fmt = detect_format(read_full(fileobj, 13), name)
    fileobj.seek(start)
    if fmt == "trx":
        raise CorruptTractogramError(
            name, 0, "a zip (TRX?) among TRK/TCK files: TRX is read by read_tractogram on its own, not as a stream"
        )
    if fmt == "trk":
        from .trk import TrkReader

        return TrkReader(fileobj, name, **kwargs)  # type: ignore[arg-type]
    from .tck import TckReader

    return TckReader(fileobj, name, **kwargs)  # type: ignore[arg-type]
