"""Where the arrays of a TRX are on a store: a zip's members from its central directory, or a directory's objects.

Runs when the graph is built, on the filesystem the paths were listed on, with a few small reads:
a zip's end and central directory (through a plain fsspec file over ``cat_file``: no prefetch),
every member's 30-byte local header (one concurrent ``cat_ranges``), and ``header.json``. The
parsing itself is :mod:`dask_prefetch.formats.trx` and :mod:`~dask_prefetch.formats.trx_zip`.
"""

from __future__ import annotations

from typing import Any

from fsspec.asyn import sync
from fsspec.spec import AbstractBufferedFile

from ..formats.errors import CorruptTractogramError
from ..formats.trx import HEADER, TrxContents, member, parse_header
from ..formats.trx_zip import LOCAL_HEADER_SIZE, data_start, read_directory

#: Bytes a read of the zip's end or central directory asks for at least.
_DIRECTORY_READ = 64 * 1024


class _RangeFile(AbstractBufferedFile):
    """A plain read-only file over ``fs.cat_file``, for :mod:`zipfile` to find the central directory."""

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start=start, end=end)


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
    with _RangeFile(fs, path, mode="rb", block_size=_DIRECTORY_READ, cache_type="readahead", size=size) as f:
        entries, small = read_directory(f, path)
    if HEADER not in small:
        raise CorruptTractogramError(path, 0, f"a zip without {HEADER}: not a TRX")
    header = parse_header(small[HEADER], path)
    entries = [e for e in entries if member(e.name, e.size) is not None]  # names checked before any read
    starts = [e.header_offset for e in entries]
    locals_ = fs.cat_ranges([path] * len(entries), starts, [s + LOCAL_HEADER_SIZE for s in starts]) if entries else []
    members = []
    for entry, local in zip(entries, locals_):
        if isinstance(local, BaseException):
            raise local
        start = data_start(local, entry, path)
        if start + entry.compressed > size:
            raise CorruptTractogramError(path, start, f"member {entry.name!r} ends past the zip: truncated")
        found = member(entry.name, entry.size, source=path, start=start, stored=entry.compressed, deflated=entry.deflated)
        members.append(found)
    return TrxContents.build(path, header, [m for m in members if m is not None])


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

