"""TRX tractograms: ``header.json``, member names, offsets and rows of members; no store, no Dask.

A TRX is a zip (stored or deflated) or a directory of raw little-endian arrays:
``header.json`` (``VOXEL_TO_RASMM``, ``DIMENSIONS``, ``NB_VERTICES``, ``NB_STREAMLINES``),
``positions.3.<float16|float32|float64>`` (RAS+ mm), ``offsets.<uint32|uint64>`` (the first
vertex of every streamline, with or without a final entry equal to ``NB_VERTICES``),
``dpv/<name>[.<k>].<dtype>`` (per vertex), ``dps/<name>[.<k>].<dtype>`` (per streamline),
``groups/<name>.<dtype>`` (streamline indices) and ``dpg/<group>/<name>[.<k>].<dtype>``. The
column count ``k`` is in the name (absent: 1).

:func:`parse_header` and :func:`member` turn ``header.json``'s bytes and the members' names and
sizes into :class:`TrxMember` records, :class:`TrxContents` checks them against each other, and
:func:`read_rows` and :class:`MemberRows` read rows of a member from a file object (a byte range
of a stored member, or inflated on the fly from a deflated one, see :mod:`.trx_zip`), at once or a
few at a time. Where the bytes live and how
they are fetched is the caller's business.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable

import numpy as np

from .chunk import TractogramHeader
from .errors import CorruptTractogramError
from .reading import readinto_full
from .trx_zip import Inflater

HEADER = "header.json"
_DTYPES = {
    **{t: np.dtype(t).newbyteorder("<").str for t in ("int8", "int16", "int32", "int64", "uint8", "uint16")},
    **{t: np.dtype(t).newbyteorder("<").str for t in ("uint32", "uint64", "float16", "float32", "float64")},
    "bit": "|b1",
    "bool": "|b1",
}
_PER_ROW = {"dpv": "NB_VERTICES", "dps": "NB_STREAMLINES"}  # what each kind holds one row of


@dataclass(frozen=True)
class TrxMember:
    """One array of a TRX and where its bytes are.

    Attributes
    ----------
    name
        Its path inside the TRX (``"positions.3.float16"``, ``"dpv/fa.float16"``).
    kind
        ``"positions"``, ``"offsets"``, ``"dpv"``, ``"dps"``, ``"groups"`` or ``"dpg"``.
    key
        Its name in the tractogram (``"fa"``; ``"<group>/<name>"`` for dpg).
    columns, dtype
        Values per row, and their little-endian numpy dtype (``"<f2"``).
    nbytes
        Its bytes (inflated).
    source, start, stored, deflated
        The object holding it (the zip, or its own object in a directory), where its (compressed)
        data starts there, how many bytes it takes there, and whether they are deflated.
    """

    name: str
    kind: str
    key: str
    columns: int
    dtype: str
    nbytes: int
    source: str = ""
    start: int = 0
    stored: int = -1
    deflated: bool = False

    @property
    def row_bytes(self) -> int:
        return self.columns * np.dtype(self.dtype).itemsize

    @property
    def rows(self) -> int:
        return self.nbytes // self.row_bytes

    def byte_range(self, first: int, stop: int) -> tuple[int, int]:
        """Where rows ``[first, stop)`` of a stored member are in its source."""
        return self.start + first * self.row_bytes, self.start + stop * self.row_bytes


def member(name: str, nbytes: int, **where: Any) -> TrxMember | None:
    """The member a file name inside a TRX stands for (None for ``header.json`` and stray files).

    ``where`` is :class:`TrxMember`'s ``source``, ``start``, ``stored``, ``deflated``.

    Raises
    ------
    CorruptTractogramError
        For a name in the TRX structure (``positions``, ``offsets``, ``dpv/``, ``dps/``,
        ``groups/``, ``dpg/<group>/``) whose dtype or column count cannot be read.
    """
    parts = name.strip("/").split("/")
    folder, base = "/".join(parts[:-1]), parts[-1]
    stem = base.split(".")[0]
    if folder in ("dpv", "dps", "groups"):
        kind = folder
    elif len(parts) == 3 and parts[0] == "dpg":
        kind = "dpg"
    elif folder == "" and stem in ("positions", "offsets"):
        kind = stem
    else:
        return None  # header.json, or not part of the structure (trx-python ignores those too)
    pieces = base.split(".")
    if len(pieces) not in (2, 3) or pieces[-1] not in _DTYPES or not pieces[0]:
        raise CorruptTractogramError(
            name, 0, f"not a TRX array name (<name>[.<columns>].<dtype>, dtype one of {sorted(_DTYPES)})"
        )
    try:
        columns = int(pieces[1]) if len(pieces) == 3 else 1
    except ValueError:
        columns = 0
    if columns < 1:
        raise CorruptTractogramError(name, 0, f"column count {pieces[1]!r} in the name is not a positive integer")
    key = f"{parts[1]}/{stem}" if kind == "dpg" else stem
    return TrxMember(name, kind, key, columns, _DTYPES[pieces[-1]], int(nbytes), **where)


def parse_header(data: bytes, name: str) -> dict[str, Any]:
    """``header.json``'s fields, checked: ``VOXEL_TO_RASMM`` (4x4 float64), ``DIMENSIONS`` (3 ints),
    ``NB_VERTICES`` and ``NB_STREAMLINES`` (ints >= 0); other keys kept as they are.

    Raises
    ------
    CorruptTractogramError
        If it is not JSON, or a field is missing or malformed.
    """
    try:
        header = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptTractogramError(f"{name}/{HEADER}", 0, f"not JSON: {e}") from None
    if not isinstance(header, dict):
        raise CorruptTractogramError(f"{name}/{HEADER}", 0, "not a JSON object")
    out = dict(header)
    try:
        out["VOXEL_TO_RASMM"] = np.asarray(header["VOXEL_TO_RASMM"], dtype=np.float64).reshape(4, 4)
        out["DIMENSIONS"] = tuple(int(d) for d in header["DIMENSIONS"])
        for key in ("NB_VERTICES", "NB_STREAMLINES"):
            value = header[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be an integer >= 0, got {value!r}")
        if len(out["DIMENSIONS"]) != 3:
            raise ValueError(f"DIMENSIONS must have 3 entries, got {header['DIMENSIONS']!r}")
    except KeyError as e:
        raise CorruptTractogramError(f"{name}/{HEADER}", 0, f"no {e.args[0]} field") from None
    except (TypeError, ValueError) as e:
        raise CorruptTractogramError(f"{name}/{HEADER}", 0, f"malformed: {e}") from None
    return out


@dataclass(frozen=True)
class TrxContents:
    """The checked arrays of one TRX: what a reader needs to read any streamlines of it.

    Made by :meth:`build`. ``positions`` and ``offsets`` are None only for an empty TRX (no
    streamlines or no vertices). ``dpv``, ``dps``, ``groups`` and ``dpg`` are ``(key, member)``
    pairs sorted by key.
    """

    name: str
    header: dict[str, Any] = field(compare=False)
    positions: TrxMember | None
    offsets: TrxMember | None
    dpv: tuple[tuple[str, TrxMember], ...] = ()
    dps: tuple[tuple[str, TrxMember], ...] = ()
    groups: tuple[tuple[str, TrxMember], ...] = ()
    dpg: tuple[tuple[str, TrxMember], ...] = ()

    @property
    def nb_streamlines(self) -> int:
        return int(self.header["NB_STREAMLINES"])

    @property
    def nb_vertices(self) -> int:
        return int(self.header["NB_VERTICES"])

    @property
    def has_sentinel(self) -> bool:
        """Whether ``offsets`` ends with an entry equal to ``NB_VERTICES`` (trx-python 0.6 writes one)."""
        return self.offsets is not None and self.offsets.rows == self.nb_streamlines + 1

    @classmethod
    def build(cls, name: str, header: dict[str, Any], members: Iterable[TrxMember]) -> "TrxContents":
        """Check ``members`` against ``header`` (see :func:`parse_header`) and each other.

        Raises
        ------
        CorruptTractogramError
            A missing ``positions`` or ``offsets`` (in a TRX with streamlines), an array twice,
            sizes that are not whole rows, ``positions`` not 3 float columns of ``NB_VERTICES``
            rows, ``offsets`` not one unsigned integer column of ``NB_STREAMLINES`` (+ 1) rows,
            a ``dpv``/``dps`` array not of ``NB_VERTICES``/``NB_STREAMLINES`` rows, a group not
            one integer column, a ``dpg`` array not one row.
        """
        n_vertices, n_streamlines = int(header["NB_VERTICES"]), int(header["NB_STREAMLINES"])
        found: dict[str, dict[str, TrxMember]] = {}
        for m in members:
            place = found.setdefault(m.kind, {})
            if m.key in place:
                twice = f"two arrays for {m.kind} {m.key!r}: {place[m.key].name!r} and {m.name!r}"
                raise CorruptTractogramError(name, m.start, twice)
            if m.nbytes % m.row_bytes:
                rows = f"{m.name!r} holds {m.nbytes} bytes: not whole rows of {m.row_bytes}"
                raise CorruptTractogramError(name, m.start, rows)
            place[m.key] = m

        def bad(m: TrxMember, problem: str) -> CorruptTractogramError:
            return CorruptTractogramError(name, m.start, f"{m.name!r}: {problem}")

        positions = found.get("positions", {}).get("positions")
        offsets = found.get("offsets", {}).get("offsets")
        empty = n_streamlines == 0 or n_vertices == 0
        if not empty and (positions is None or offsets is None):
            missing = " and ".join(k for k, m in (("positions", positions), ("offsets", offsets)) if m is None)
            raise CorruptTractogramError(name, 0, f"no {missing} array in a TRX of {n_streamlines} streamlines")
        if positions is not None:
            if positions.columns != 3 or np.dtype(positions.dtype).kind != "f":
                raise bad(positions, "positions must be 3 columns of float16, float32 or float64")
            if positions.rows != n_vertices:
                held = f"positions holds {positions.rows} vertices"
                raise bad(positions, f"header.json says NB_VERTICES={n_vertices} but {held}")
        if offsets is not None:
            if offsets.columns != 1 or np.dtype(offsets.dtype).kind != "u":
                raise bad(offsets, "offsets must be one column of an unsigned integer type (uint32, uint64)")
            if offsets.rows not in (n_streamlines, n_streamlines + 1):
                raise bad(
                    offsets,
                    f"header.json says NB_STREAMLINES={n_streamlines} but offsets holds {offsets.rows} entries "
                    f"(expected {n_streamlines} or {n_streamlines + 1})",
                )
        for kind, count in _PER_ROW.items():
            rows = int(header[count])
            for m in found.get(kind, {}).values():
                if m.rows != rows:
                    raise bad(m, f"{kind} arrays hold one row per {'vertex' if kind == 'dpv' else 'streamline'}: "
                                 f"{m.rows} rows where header.json says {count}={rows}")
        for m in found.get("groups", {}).values():
            if m.columns != 1 or np.dtype(m.dtype).kind not in "iu":
                raise bad(m, "a group must be one column of integer streamline indices")
        for m in found.get("dpg", {}).values():
            if m.rows != 1:
                raise bad(m, f"data per group is one row, got {m.rows}")

        def pairs(kind: str) -> tuple[tuple[str, TrxMember], ...]:
            return tuple(sorted(found.get(kind, {}).items()))

        return cls(name, header, positions, offsets, pairs("dpv"), pairs("dps"), pairs("groups"), pairs("dpg"))

    def tractogram_header(self) -> TractogramHeader:
        """As a :class:`TractogramHeader`: ``format="trx"``, ``VOXEL_TO_RASMM``, ``NB_STREAMLINES``, the
        dpv names (``scalar_names``, with their columns) and dps names (``property_names``);
        ``fields`` holds ``header.json``'s fields and the dtypes of the named arrays
        (``"data_per_point_dtypes"``, ``"data_per_streamline_dtypes"``: name to numpy dtype string)."""
        fields = dict(self.header)
        fields["data_per_point_dtypes"] = {k: m.dtype for k, m in self.dpv}
        fields["data_per_streamline_dtypes"] = {k: m.dtype for k, m in self.dps}
        return TractogramHeader(
            format="trx",
            voxel_to_rasmm=np.asarray(self.header["VOXEL_TO_RASMM"], dtype=np.float64),
            nb_streamlines=self.nb_streamlines,
            data_offset=0,
            scalar_names=tuple(k for k, _ in self.dpv),
            property_names=tuple(k for k, _ in self.dps),
            scalar_columns=tuple(m.columns for _, m in self.dpv),
            property_columns=tuple(m.columns for _, m in self.dps),
            fields=fields,
        )

    def named_data(self) -> tuple[tuple[tuple[str, int, str], ...], tuple[tuple[str, int, str], ...]]:
        """``((dpv name, columns, dtype), ...), ((dps name, columns, dtype), ...)``: what files of one
        tractogram must share to be read into one collection."""
        def spec(pairs: tuple[tuple[str, TrxMember], ...]) -> tuple[tuple[str, int, str], ...]:
            return tuple((k, m.columns, m.dtype) for k, m in pairs)

        return spec(self.dpv), spec(self.dps)


def read_rows(fileobj: BinaryIO, m: TrxMember, first: int, stop: int, name: str) -> np.ndarray:
    """Rows ``[first, stop)`` of member ``m``, ``(stop - first, columns)`` in its dtype.

    Parameters
    ----------
    fileobj
        For a stored member, positioned at row ``first`` (byte ``m.byte_range(first, stop)[0]``
        of its source); for a deflated one, at the start of its compressed data.
    m, first, stop
        The member and the rows wanted.
    name
        The TRX, for error messages.

    Raises
    ------
    CorruptTractogramError
        If the bytes end before those rows (a truncated object) or do not inflate.
    """
    return MemberRows(fileobj, m, first, name).take(stop - first)


class MemberRows:
    """The rows of one member from row ``first`` on, taken front to back a few at a time.

    Parameters
    ----------
    fileobj
        As for :func:`read_rows`: at row ``first`` of a stored member, or at the start of a
        deflated member's compressed data (the rows before ``first`` are inflated and dropped).
    m, first, name
        The member, the first row to take, and the TRX (for error messages).

    Notes
    -----
    Memory is what the rows taken hold, plus, for a deflated member, the :class:`~.trx_zip.Inflater`'s
    bounded buffers: a member of any size can be read in pieces of any size.
    """

    def __init__(self, fileobj: BinaryIO, m: TrxMember, first: int, name: str) -> None:
        self._f, self._m, self._row, self._name = fileobj, m, first, name
        self._inflater = Inflater(fileobj, m.stored, f"{name}: {m.name}", m.start) if m.deflated else None
        if self._inflater is not None:
            self._inflater.skip(first * m.row_bytes)

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` rows, ``(n, columns)`` in the member's dtype.

        Raises
        ------
        CorruptTractogramError
            If the bytes end before them (a truncated object) or do not inflate.
        """
        m = self._m
        out = np.empty((max(n, 0), m.columns), dtype=m.dtype)
        if self._inflater is not None:
            self._inflater.readinto(memoryview(out).cast("B"))
        else:
            got = readinto_full(self._f, out)
            if got < out.nbytes:
                at = m.start + self._row * m.row_bytes + got
                raise CorruptTractogramError(
                    self._name,
                    at,
                    f"{m.name!r} ends after {got} of the {out.nbytes} bytes of rows {self._row}..{self._row + n}: "
                    "truncated",
                )
        self._row += len(out)
        return out


def lengths(bounds: np.ndarray, first_vertex: int | None, name: str, at: int, n_vertices: int) -> np.ndarray:
    """Points per streamline from ``bounds``: the first vertex of every streamline of a run, then the
    vertex after its last (the next offset, or ``NB_VERTICES``).

    ``first_vertex`` is where the run must start (None: anywhere); ``at`` the byte of the first
    bound's offset, for messages.

    Raises
    ------
    CorruptTractogramError
        If the bounds decrease, pass ``NB_VERTICES``, or the run does not start at ``first_vertex``.
    """
    bounds = bounds.astype(np.int64, copy=False).ravel()
    if len(bounds) == 0:
        return np.empty(0, np.int64)
    steps = np.diff(bounds)
    if (steps < 0).any():
        i = int(np.argmax(steps < 0))
        told = f"offsets decrease after entry {i} of this run ({bounds[i]} > {bounds[i + 1]})"
        raise CorruptTractogramError(name, at, told)
    if bounds[-1] > n_vertices:
        raise CorruptTractogramError(name, at, f"offset {bounds[-1]} past NB_VERTICES={n_vertices}")
    if first_vertex is not None and bounds[0] != first_vertex:
        told = f"offset {bounds[0]} where {first_vertex} was read before: the object changed"
        raise CorruptTractogramError(name, at, told)
    return steps

