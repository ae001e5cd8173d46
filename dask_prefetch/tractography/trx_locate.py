"""Where the arrays of a TRX are on a store: a zip's members from its central directory, or a directory's objects.

Runs when the graph is built, on the filesystem the paths were listed on, with two rounds of small
concurrent reads (``cat_ranges``) for a zip: its first and last 64 KiB (the end of central
directory, the central directory itself unless it is larger, and ``header.json``, which writers
put first), then the 30-byte local headers of the members they do not hold. :mod:`zipfile` reads
the central directory through a plain fsspec file over what was fetched (missing bytes with
``cat_file``: no prefetch). The parsing itself is :mod:`dask_prefetch.formats.trx` and
:mod:`~dask_prefetch.formats.trx_zip`.
"""

from __future__ import annotations

from typing import Any

from fsspec.asyn import sync
from fsspec.spec import AbstractBufferedFile

from ..formats.errors import CorruptTractogramError
from ..formats.trx import HEADER, TrxContents, member, parse_header
from ..formats.trx_zip import LOCAL_HEADER_SIZE, data_start, read_directory

#: Bytes read at each end of a zip (and at least, by any other read of its directory).
_END_BYTES = 64 * 1024


class _RangeFile(AbstractBufferedFile):
    """A plain read-only file over ``fs.cat_file`` that serves the byte ranges ``known`` from memory,
    for :mod:`zipfile` to read the central directory through."""

    def __init__(self, fs: Any, path: str, size: int, known: dict[int, bytes]) -> None:
        super().__init__(fs, path, mode="rb", block_size=_END_BYTES, cache_type="readahead", size=size)
        self.known = known  # start -> bytes

    def _fetch_range(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        for at, data in self.known.items():
            if at <= start and end <= at + len(data):
                return data[start - at : end - at]
        return self.fs.cat_file(self.path, start=start, end=end)

    def cached(self, start: int, end: int) -> bytes | None:
        """Bytes ``[start, end)`` if they were fetched already, else None."""
        for at, data in self.known.items():
            if at <= start and end <= at + len(data):
                return data[start - at : end - at]
        return None


def locate_trx(fs: Any, path: str, info: dict) -> TrxContents:
    """The checked arrays of the TRX at ``path`` (a zip, or a directory / key prefix), and where they are.

    Parameters
    ----------
    fs
        The filesystem ``path`` was listed on.
    path
        The zip object, or the directory holding ``header.json``.
    info
        ``fs.info(path)`` (``type`` and ``size``).

    Raises
    ------
    CorruptTractogramError
        For a zip that cannot be read (a truncated one), no ``header.json``, a malformed header,
        or arrays that disagree with it (see :meth:`TrxContents.build`).
    """
    if info.get("type") == "directory":
        return _directory(fs, path)
    size = int(info["size"])
    ends = sorted({0, max(0, size - _END_BYTES)})
    known = dict(zip(ends, _fetch(fs, path, [(a, min(a + _END_BYTES, size)) for a in ends])))
    with _RangeFile(fs, path, size, known) as f:
        entries, small = read_directory(f, path)
        if HEADER not in small:
            raise CorruptTractogramError(path, 0, f"a zip without {HEADER}: not a TRX")
        header = parse_header(small[HEADER], path)
        entries = [e for e in entries if member(e.name, e.size) is not None]  # names checked before any read
        locals_ = [f.cached(e.header_offset, e.header_offset + LOCAL_HEADER_SIZE) for e in entries]
    missing = [i for i, local in enumerate(locals_) if local is None]
    wanted = [(entries[i].header_offset, entries[i].header_offset + LOCAL_HEADER_SIZE) for i in missing]
    fetched = _fetch(fs, path, wanted)
    for i, local in zip(missing, fetched):
        locals_[i] = local
    members = []
    for entry, local in zip(entries, locals_):
        start = data_start(local, entry, path)
        if start + entry.compressed > size:
            raise CorruptTractogramError(path, start, f"member {entry.name!r} ends past the zip: truncated")
        where = dict(source=path, start=start, stored=entry.compressed, deflated=entry.deflated)
        found = member(entry.name, entry.size, **where)
        members.append(found)
    return TrxContents.build(path, header, [m for m in members if m is not None])


def _fetch(fs: Any, path: str, ranges: list[tuple[int, int]]) -> list[bytes]:
    """Byte ranges of one object, concurrently where the store allows (``cat_ranges``)."""
    if not ranges:
        return []
    got = fs.cat_ranges([path] * len(ranges), [a for a, _ in ranges], [b for _, b in ranges])
    for data in got:
        if isinstance(data, BaseException):
            raise data
    return got


def _directory(fs: Any, path: str) -> TrxContents:
    """A TRX stored as a directory (a key prefix): one object per array."""
    root = path.rstrip("/")
    listing = fs.find(root, detail=True)
    rel = {name[len(root) + 1 :]: entry for name, entry in listing.items() if name.startswith(root + "/")}
    if HEADER not in rel:
        raise CorruptTractogramError(root, 0, f"a directory without {HEADER}: not a TRX")
    header = parse_header(fs.cat_file(f"{root}/{HEADER}"), root)
    members = []
    for name, entry in sorted(rel.items()):
        size = int(entry["size"])
        found = member(name, size, source=f"{root}/{name}", start=0, stored=size)
        if found is not None:
            members.append(found)
    return TrxContents.build(root, header, members)


def sources(contents: TrxContents) -> list[str]:
    """The objects a TRX's arrays are read from (the zip, or each array's own object)."""
    arrays = [contents.positions, contents.offsets, *(m for _, m in contents.dpv + contents.dps + contents.groups)]
    return list(dict.fromkeys(m.source for m in arrays if m is not None))


def pin_infos(fs: Any, paths: list[str]) -> list[dict]:
    """The ``info`` tasks pin each object to: on S3 fetched concurrently, as every other read pins them."""
    if hasattr(fs, "_pin_objects"):
        return sync(fs.loop, fs._pin_objects, paths)
    return [fs.info(p) for p in paths]

