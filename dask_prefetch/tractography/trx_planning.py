"""TRX tractograms as partitions, cut on ``offsets``: each a byte range of every per-vertex array.

When the graph is built, the offsets at the cuts are read (one small concurrent ``cat_ranges``),
so each segment of a stored TRX knows its vertices ``[v0, v1)`` and its task reads exactly those
rows of ``positions`` and of every ``dpv`` array, and its rows of every ``dps`` array, as byte
ranges of the zip (or of the directory's objects): no extraction (see
:mod:`dask_prefetch.tractography.trx_reading`). A deflated TRX has no random access: its tasks inflate from
the start and learn their vertices from ``offsets`` themselves. By default a stored TRX gets one
partition per started 256 MiB of per-vertex arrays and a deflated one a single partition;
``npartitions=k`` gives exactly ``k``, cut by streamline counts across the files (empty ones too
when there are fewer streamlines than partitions).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import dask
import dask.array as da
import numpy as np

from .partitions import Opener, Partition
from .planning import MixedDataWarning
from ..formats import TractogramHeader
from ..formats.trx import HEADER, TrxContents, TrxMember
from .trx_locate import locate_trx, pin_infos, sources
from .trx_reading import TrxSegment, read_group, read_group_data

#: Names that make ``read_tractogram`` read paths as TRX (a zip, or a directory), besides a zip's magic.
TRX_SUFFIX = ".trx"


def is_trx_name(path: str) -> bool:
    """Whether a path names a TRX by its suffix (``a.trx``, ``s3://b/a.trx/``)."""
    return path.rstrip("/").lower().endswith(TRX_SUFFIX)


def is_trx_directory(fs: Any, path: str) -> bool:
    """Whether ``path`` is a directory (a key prefix) holding a TRX's ``header.json``."""
    return fs.isfile(f"{path.rstrip('/')}/{HEADER}")


@dataclass(frozen=True)
class TrxPlan:
    """What ``read_tractogram`` needs of TRX files: the header, partitions, groups, and what was seen.

    ``groups`` maps a group name to ``(file, member, first streamline of the file)`` for every
    file that has it, ``group_data`` a ``dpg`` key (``"<group>/<name>"``) to ``(file, member)``
    for every file that has it; ``seen`` is ``(path, size, version)`` of every object read.
    """

    header: TractogramHeader
    partitions: list[Partition]
    groups: dict[str, list[tuple[TrxContents, TrxMember, int]]]
    seen: list[tuple[Any, Any, Any]]
    pins: dict[str, tuple]
    group_data: dict[str, list[tuple[TrxContents, TrxMember]]] = field(default_factory=dict)


def plan_trx(
    fs: Any, paths: Sequence[str], npartitions: int | None, version: Callable[[dict], tuple] | None
) -> TrxPlan:
    """Locate every TRX of ``paths`` on ``fs`` and cut the partitions (see the module's notes).

    ``version(info)`` gives the ``(token, version id)`` tasks pin each object to (None: no pins).

    Raises
    ------
    FileNotFoundError
        For a missing path.
    CorruptTractogramError
        For a TRX that cannot be read or whose arrays disagree with its header.

    Warns
    -----
    MixedDataWarning
        When the files disagree on their named data (dpv/dps names, columns or dtypes): only the
        names every file has, with the same columns and dtype, are read.
    """
    seen_infos = [fs.info(path) for path in paths]
    files = _common_data([locate_trx(fs, path, info) for path, info in zip(paths, seen_infos)])
    infos = {p: i for p, i in zip(paths, seen_infos) if i.get("type") != "directory"}  # zips: pinned as seen
    objects = [p for c in files for p in sources(c) if p not in infos]  # a directory's objects
    infos.update(zip(objects, pin_infos(fs, objects)))
    pins = {} if version is None else {p: (p, int(i["size"]), *version(i)) for p, i in infos.items()}
    parts = trx_partitions(fs, files, npartitions, pins)
    header = files[0].tractogram_header()
    if len(files) > 1:
        header = replace(header, nb_streamlines=sum(c.nb_streamlines for c in files))
    groups: dict[str, list[tuple[TrxContents, TrxMember, int]]] = {}
    group_data: dict[str, list[tuple[TrxContents, TrxMember]]] = {}
    first = 0
    for c in files:
        for key, m in c.groups:
            groups.setdefault(key, []).append((c, m, first))
        for key, m in c.dpg:
            group_data.setdefault(key, []).append((c, m))
        first += c.nb_streamlines
    seen = [(p, i.get("size"), i.get("ETag") or i.get("mtime")) for p, i in sorted(infos.items())]
    return TrxPlan(header, parts, groups, seen, pins, group_data)


def _common_data(files: list[TrxContents]) -> list[TrxContents]:
    """``files`` reading only the named data they all share (warned about when they differ)."""
    specs = [c.named_data() for c in files]
    if len(set(specs)) == 1:
        return files
    dpv = set.intersection(*(set(d) for d, _ in specs))
    dps = set.intersection(*(set(d) for _, d in specs))
    warnings.warn(
        f"these {len(files)} TRX files disagree on their named data ({files[0].name!r}: {specs[0]}; "
        f"{files[-1].name!r}: {specs[-1]}): only what they all share is read (dpv {sorted(n for n, _, _ in dpv)}, "
        f"dps {sorted(n for n, _, _ in dps)})",
        MixedDataWarning,
        stacklevel=4,
    )
    return [
        replace(
            c,
            dpv=tuple((k, m) for k, m in c.dpv if (k, m.columns, m.dtype) in dpv),
            dps=tuple((k, m) for k, m in c.dps if (k, m.columns, m.dtype) in dps),
        )
        for c in files
    ]

#: A stored TRX is cut into one partition per started ``TRX_PARTITION_BYTES`` of per-vertex arrays.
TRX_PARTITION_BYTES = 256 * 2**20


def _vertex_bytes(c: TrxContents) -> int:
    return sum(m.nbytes for m in [c.positions, *(m for _, m in c.dpv)] if m is not None)


def _deflated(c: TrxContents) -> bool:
    return c.positions is not None and c.positions.deflated


def trx_partitions(fs: Any, files: Sequence[TrxContents], npartitions: int | None, pins: dict) -> list[Partition]:
    """The ``"trx"`` partitions of ``files`` (in order); ``pins`` maps each source object to its pin.

    ``npartitions`` None: per file, one per started :data:`TRX_PARTITION_BYTES` (stored) or one
    (deflated); else exactly ``npartitions``, cut by streamline counts across the files.
    """
    totals = np.cumsum([0] + [c.nb_streamlines for c in files])
    if npartitions is None:
        cuts: list[int] = [0]
        for i, c in enumerate(files):
            k = 1 if _deflated(c) else max(1, math.ceil(_vertex_bytes(c) / TRX_PARTITION_BYTES))
            cuts.extend(int(totals[i] + round(j * c.nb_streamlines / k)) for j in range(1, k + 1))
    else:
        cuts = [round(j * int(totals[-1]) / npartitions) for j in range(npartitions + 1)]
    # Runs of each partition as (file, first, stop), then the vertices at every cut inside a stored file.
    runs = []
    for a, b in zip(cuts, cuts[1:]):
        run = []
        for i, c in enumerate(files):
            lo, hi = max(a, totals[i]), min(b, totals[i + 1])
            if lo < hi:
                run.append((i, int(lo - totals[i]), int(hi - totals[i])))
        if not run:  # an empty partition: a zero-length run of the file where it falls (or the last)
            i = min(int(np.searchsorted(totals, a, side="right")) - 1, len(files) - 1)
            run.append((i, int(a - totals[i]), int(a - totals[i])))
        runs.append(run)
    vertices = _vertices_at(fs, files, {(i, s) for run in runs for i, f, t in run for s in (f, t)})
    parts = []
    for run in runs:
        segments = tuple(
            TrxSegment(files[i], f, t, None if _deflated(files[i]) else (vertices[i, f], vertices[i, t]))
            for i, f, t in run
        )
        paths = tuple(dict.fromkeys(m.source for s in segments for m in s.members)) or (files[run[0][0]].name,)
        parts.append(
            Partition(
                "trx",
                paths,
                nbytes=sum(_segment_bytes(s) for s in segments),
                pins=tuple(pins[p] for p in paths if p in pins),
                trx=segments,
            )
        )
    return parts


def _segment_bytes(s: TrxSegment) -> int:
    c = s.contents
    if c.nb_streamlines == 0:
        return 0
    if s.vertices is None:  # deflated: it inflates from the start of every member
        return sum(m.stored for m in s.members)
    v0, v1 = s.vertices
    per_vertex = sum(m.row_bytes for m in [c.positions, *(m for _, m in c.dpv)] if m is not None)
    per_streamline = sum(m.row_bytes for m in [c.offsets, *(m for _, m in c.dps)] if m is not None)
    return (v1 - v0) * per_vertex + (s.stop - s.first) * per_streamline


def _vertices_at(fs: Any, files: Sequence[TrxContents], wanted: set[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """The first vertex of streamline ``s`` of file ``i`` for every ``(i, s)`` of a stored TRX (offsets read)."""
    out = {}
    reads = []
    for i, s in sorted(wanted):
        c = files[i]
        if _deflated(c):
            continue
        if s == 0 or c.nb_streamlines == 0:
            out[i, s] = 0
        elif s == c.nb_streamlines:
            out[i, s] = c.nb_vertices
        else:
            reads.append((i, s, c.offsets))
    if reads:
        got = fs.cat_ranges(
            [m.source for _, _, m in reads], [m.byte_range(s, s + 1)[0] for _, s, m in reads],
            [m.byte_range(s, s + 1)[1] for _, s, m in reads],
        )
        for (i, s, m), data in zip(reads, got):
            if isinstance(data, BaseException):
                raise data
            out[i, s] = int(np.frombuffer(data, dtype=m.dtype)[0])
    return out




def trx_groups(plan: TrxPlan, opener: Opener) -> dict[str, da.Array]:
    """Each group's streamline indices (int64, into all the files' streamlines in order), one task per file."""
    out = {}
    for key, entries in plan.groups.items():
        arrays = []
        for c, m, first in entries:
            task = dask.delayed(read_group, pure=True)(opener, m, _pinned(plan, m), c.name, first)
            arrays.append(da.from_delayed(task, shape=(m.rows,), dtype=np.int64))
        out[key] = da.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    return out


def trx_data_per_group(plan: TrxPlan, opener: Opener) -> dict[str, dict[str, da.Array]]:
    """``{group: {name: array}}`` of the ``dpg`` arrays, one task per array and file.

    An array is one row of its columns, in its stored dtype, as trx-python loads it: shape
    ``(1, columns)`` for one TRX; several files that hold the same one give one row each, in file
    order (their groups' indices are joined into one index array, their per-group values are not
    a single value any more).
    """
    out: dict[str, dict[str, da.Array]] = {}
    for key, entries in plan.group_data.items():
        group, name = key.split("/", 1)
        rows = []
        for c, m in entries:
            task = dask.delayed(read_group_data, pure=True)(opener, m, _pinned(plan, m), c.name)
            dtype = np.dtype(m.dtype).newbyteorder("=")
            rows.append(da.from_delayed(task, shape=(1, m.columns * m.rows), dtype=dtype))
        out.setdefault(group, {})[name] = da.concatenate(rows) if len(rows) > 1 else rows[0]
    return out


def _pinned(plan: TrxPlan, m: TrxMember) -> list[dict] | None:
    """The pin of the object holding ``m``, as ``open(pinned=...)`` takes it (None: not pinned)."""
    pin = plan.pins.get(m.source)
    return None if pin is None else [dict(zip(("name", "size", "ETag", "VersionId"), pin))]
