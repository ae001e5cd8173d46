"""Where a TRX zip's members are, and their bytes inflated on the fly: no store, no Dask.

The zip's central directory is parsed by the standard library (:mod:`zipfile`, ZIP64 included)
from any seekable binary file object; a member's data starts after its *local* header, whose
name and extra fields may differ in length from the central directory's, so that header's 30
fixed bytes are read too (:func:`data_start`). A stored member is then a plain byte range of the
zip; a deflated one is inflated from its compressed bytes with bounded memory
(:class:`Inflater`), in pieces of any size.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from .errors import CorruptTractogramError

ZIP_MAGIC = b"PK\x03\x04"
#: Bytes of a local file header before its name and extra field.
LOCAL_HEADER_SIZE = 30
_NAME_AND_EXTRA = struct.Struct("<HH")  # at byte 26 of a local header
#: Compressed bytes read (and at most bytes inflated) at a time.
INFLATE_CHUNK = 1 << 20


@dataclass(frozen=True)
class ZipEntry:
    """One member as the central directory describes it.

    ``header_offset`` is where its local header starts; ``compressed`` its bytes in the zip;
    ``size`` its bytes once inflated; ``deflated`` whether it is compressed (else stored).
    """

    name: str
    header_offset: int
    compressed: int
    size: int
    deflated: bool


def read_directory(fileobj: BinaryIO, name: str, wanted: tuple[str, ...] = ("header.json",)) -> tuple[
    list[ZipEntry], dict[str, bytes]
]:
    """The members of the zip ``fileobj`` and the whole bytes of the small ones named in ``wanted``.

    Parameters
    ----------
    fileobj
        The zip, seekable (only its end, the central directory and the ``wanted`` members are read).
    name
        For error messages.
    wanted
        Members read whole (inflated and CRC-checked by :mod:`zipfile`) if present.

    Raises
    ------
    CorruptTractogramError
        Not a zip (no end of central directory: also a truncated zip), an encrypted member, a
        compression other than stored or deflated, a member whose data would end past the zip,
        or a ``wanted`` member that does not inflate to its CRC.
    """
    try:
        with zipfile.ZipFile(fileobj) as zf:
            infos = zf.infolist()
            end = fileobj.seek(0, 2)
            entries = []
            for info in infos:
                if info.is_dir():
                    continue
                if info.flag_bits & 0x1:
                    raise CorruptTractogramError(name, info.header_offset, f"member {info.filename!r} is encrypted")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise CorruptTractogramError(
                        name,
                        info.header_offset,
                        f"member {info.filename!r} uses zip compression method {info.compress_type}: "
                        "TRX readers take stored or deflated members only",
                    )
                if info.header_offset + LOCAL_HEADER_SIZE + info.compress_size > end:
                    raise CorruptTractogramError(
                        name, info.header_offset, f"member {info.filename!r} would end past the zip ({end} bytes)"
                    )
                deflated = info.compress_type == zipfile.ZIP_DEFLATED
                if not deflated and info.compress_size != info.file_size:
                    raise CorruptTractogramError(
                        name, info.header_offset, f"stored member {info.filename!r} has two sizes"
                    )
                entry = ZipEntry(info.filename, info.header_offset, info.compress_size, info.file_size, deflated)
                entries.append(entry)
            names = {info.filename for info in infos}
            small = {w: zf.read(w) for w in wanted if w in names}
    except zipfile.BadZipFile as e:  # also a zip cut short: its end of central directory is gone
        raise CorruptTractogramError(name, 0, f"not a readable zip ({e}); a truncated TRX looks like this") from None
    except (zlib.error, EOFError) as e:
        raise CorruptTractogramError(name, 0, f"a member does not inflate: {e}") from None
    return entries, small


def data_start(local_header: bytes, entry: ZipEntry, name: str) -> int:
    """Where ``entry``'s data starts in the zip, from the first 30 bytes of its local header.

    Raises
    ------
    CorruptTractogramError
        If those bytes are short or are not a local file header.
    """
    if len(local_header) < LOCAL_HEADER_SIZE or not local_header.startswith(ZIP_MAGIC):
        raise CorruptTractogramError(
            name,
            entry.header_offset,
            f"no local file header for member {entry.name!r} where the central directory says",
        )
    name_length, extra_length = _NAME_AND_EXTRA.unpack_from(local_header, 26)
    return entry.header_offset + LOCAL_HEADER_SIZE + name_length + extra_length


class Inflater:
    """A deflated member's bytes handed out front to back, in pieces, inflated as they are asked for.

    Parameters
    ----------
    fileobj
        Positioned at the member's compressed data; at most ``compressed`` bytes are read.
    compressed
        The member's compressed size.
    name, at
        The zip and where the member's data starts, for error messages.

    Notes
    -----
    Memory stays bounded whatever the member's size: at most :data:`INFLATE_CHUNK` compressed
    bytes are held and at most as many inflated at a time, besides the buffers filled. The member's
    CRC is not checked (its whole inflated bytes are not seen); a corrupt stream still fails,
    since deflate checks its own structure.
    """

    def __init__(self, fileobj: BinaryIO, compressed: int, name: str, at: int) -> None:
        self._f, self._left, self._name, self._at, self._compressed = fileobj, compressed, name, at, compressed
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._pending = b""

    def skip(self, n: int) -> None:
        """Inflate the next ``n`` bytes and drop them (deflate has no random access)."""
        self._pass(n, None)

    def readinto(self, out: memoryview) -> None:
        """Fill ``out`` with the next ``len(out)`` inflated bytes.

        Raises
        ------
        CorruptTractogramError
            If the stream is corrupt or ends before them.
        """
        out = memoryview(out).cast("B")
        self._pass(len(out), out)

    def _pass(self, n: int, out: memoryview | None) -> None:
        """The next ``n`` inflated bytes: into ``out``, or dropped when it is None."""
        done = 0
        try:
            while done < n:
                if not self._pending:
                    if self._left == 0 or self._inflater.eof:
                        break
                    self._pending = self._f.read(min(INFLATE_CHUNK, self._left))
                    if not self._pending:
                        break
                    self._left -= len(self._pending)
                piece = self._inflater.decompress(self._pending, min(n - done, INFLATE_CHUNK))
                self._pending = self._inflater.unconsumed_tail
                if out is not None:
                    out[done : done + len(piece)] = piece
                done += len(piece)
        except zlib.error as e:
            raise CorruptTractogramError(self._name, self._here, f"deflated data is corrupt: {e}") from None
        if done < n:
            raise CorruptTractogramError(
                self._name, self._here, f"deflated member ends {n - done} bytes short of what it must hold"
            )

    @property
    def _here(self) -> int:
        return self._at + self._compressed - self._left
