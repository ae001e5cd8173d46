"""The in-memory model: a run of whole streamlines as flat arrays, and a format-neutral header."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class TractogramHeader:
    """What a reader learnt from a file's header.

    Attributes
    ----------
    format
        ``"trk"``, ``"tck"`` or ``"trx"``.
    voxel_to_rasmm
        4x4 affine of the reference image (identity when the format has none).
    nb_streamlines
        The count **the header claims** (TRK ``n_count``, TCK ``count``), or None when it claims
        none (TRK ``n_count`` 0, TCK without ``count``). Never checked against the data and never
        trusted for correctness: as in nibabel, a TRK reader stops after that many records (a
        larger claim than the file holds just reads to the end), a TCK reader reads to the Inf row.
    data_offset
        Byte offset of the first streamline record.
    scalar_names, property_names
        TRK per-point scalars and per-streamline properties, one name per field as nibabel names
        them (the keys of ``data_per_point`` / ``data_per_streamline``; columns no name covers are
        ``"scalars"`` / ``"properties"``). Empty for TCK.
    scalar_columns, property_columns
        Columns of each of those fields (``scalar_names[i]`` has ``scalar_columns[i]`` columns).
    fields
        The raw header fields, for anything else.
    """

    format: str
    voxel_to_rasmm: np.ndarray
    nb_streamlines: int | None
    data_offset: int
    scalar_names: tuple[str, ...] = ()
    property_names: tuple[str, ...] = ()
    scalar_columns: tuple[int, ...] = ()
    property_columns: tuple[int, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for names, columns in ((self.scalar_names, "scalar_columns"), (self.property_names, "property_columns")):
            if not getattr(self, columns):  # one column per name unless told otherwise
                object.__setattr__(self, columns, (1,) * len(names))
            elif len(getattr(self, columns)) != len(names):
                raise ValueError(f"{columns} needs one count per name, got {getattr(self, columns)} for {names}")

    @property
    def n_scalars(self) -> int:
        """Scalars per point (columns of a chunk's ``scalars``)."""
        return sum(self.scalar_columns)

    @property
    def n_properties(self) -> int:
        """Properties per streamline (columns of a chunk's ``properties``)."""
        return sum(self.property_columns)

    @property
    def scalar_column_names(self) -> tuple[str, ...]:
        """One name per scalar column (a field of k columns repeats its name k times)."""
        return tuple(n for n, k in zip(self.scalar_names, self.scalar_columns) for _ in range(k))

    @property
    def property_column_names(self) -> tuple[str, ...]:
        """One name per property column."""
        return tuple(n for n, k in zip(self.property_names, self.property_columns) for _ in range(k))

    def data_fields(self) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]:
        """``((scalar name, columns), ...), ((property name, columns), ...)``: the named data each
        streamline carries, which files must share to be read into one chunk."""
        scalars = tuple(zip(self.scalar_names, self.scalar_columns))
        return scalars, tuple(zip(self.property_names, self.property_columns))


@dataclass
class StreamlineChunk:
    """Whole streamlines, flat: points in RAS+ mm and how many belong to each streamline.

    Attributes
    ----------
    points
        ``(total_points, 3)`` float32.
    lengths
        ``(n_streamlines,)`` int64, points per streamline.
    scalars
        ``(total_points, n_scalars)`` float32 per-point values (TRK), or None.
    properties
        ``(n_streamlines, n_properties)`` float32 per-streamline values (TRK), or None.
    data_per_point
        Named per-point arrays, ``(total_points, k)`` each: TRX ``dpv`` in their own dtypes, and
        views of the columns of ``scalars`` named by ``scalar_fields`` (TRK, nibabel's names).
    data_per_streamline
        Named per-streamline arrays, ``(n_streamlines, k)`` each: TRX ``dps``, and views of the
        columns of ``properties`` named by ``property_fields``.
    scalar_fields, property_fields
        ``((name, columns), ...)`` naming the columns of ``scalars`` / ``properties`` in order
        (a TRK header's :meth:`TractogramHeader.data_fields`); their views are added to the dicts.
    """

    points: np.ndarray
    lengths: np.ndarray
    scalars: np.ndarray | None = None
    properties: np.ndarray | None = None
    data_per_point: dict[str, np.ndarray] = field(default_factory=dict)
    data_per_streamline: dict[str, np.ndarray] = field(default_factory=dict)
    scalar_fields: tuple[tuple[str, int], ...] = ()
    property_fields: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        for fields, flat, kind in (
            (self.scalar_fields, self.scalars, "data_per_point"),
            (self.property_fields, self.properties, "data_per_streamline"),
        ):
            if not fields:
                continue
            named, first = dict(getattr(self, kind)), 0
            if flat is None or flat.shape[1] != sum(k for _, k in fields):
                have = None if flat is None else flat.shape[1]
                raise ValueError(f"{kind} fields {fields} do not match {have} columns")
            for name, k in fields:
                named.setdefault(name, flat[:, first : first + k])  # a view: no copy
                first += k
            setattr(self, kind, named)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the named views of ``scalars`` / ``properties`` (remade on unpickling): once, not twice."""
        state = dict(self.__dict__)
        for fields, kind in ((self.scalar_fields, "data_per_point"), (self.property_fields, "data_per_streamline")):
            views = {n for n, _ in fields}
            state[kind] = {k: v for k, v in state[kind].items() if k not in views}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def __len__(self) -> int:
        return len(self.lengths)

    def head(self, n: int) -> "StreamlineChunk":
        """The first ``n`` streamlines (all of them when there are fewer), with their values."""
        if n >= len(self.lengths):
            return self
        n = max(0, n)
        points = int(self.lengths[:n].sum())
        def named(kind: str, fields: tuple[tuple[str, int], ...], rows: int) -> dict[str, np.ndarray]:
            views = {name for name, _ in fields}  # remade from the cut scalars / properties
            return {k: v[:rows] for k, v in getattr(self, kind).items() if k not in views}

        return StreamlineChunk(
            self.points[:points],
            self.lengths[:n],
            None if self.scalars is None else self.scalars[:points],
            None if self.properties is None else self.properties[:n],
            named("data_per_point", self.scalar_fields, points),
            named("data_per_streamline", self.property_fields, n),
            self.scalar_fields,
            self.property_fields,
        )

    @property
    def offsets(self) -> np.ndarray:
        """Index of each streamline's first point in ``points``."""
        out = np.zeros(len(self.lengths), dtype=np.int64)
        np.cumsum(self.lengths[:-1], out=out[1:])
        return out

    def arc_lengths(self) -> np.ndarray:
        """Length in mm of every streamline (the sum of its steps), float64, vectorised over the chunk."""
        points = self.points.astype(np.float64)
        into = np.zeros(len(points))  # the step into each point from the one before
        into[1:] = np.linalg.norm(np.diff(points, axis=0), axis=1)
        starts, some = self.offsets, self.lengths > 0
        into[starts[some]] = 0.0  # a streamline's first point has no step into it
        total = np.cumsum(into)
        out = np.zeros(len(self.lengths))
        out[some] = total[starts[some] + self.lengths[some] - 1] - total[starts[some]]
        return out

    def streamlines(self) -> list[np.ndarray]:
        """One ``(n_points, 3)`` view per streamline."""
        return np.split(self.points, np.cumsum(self.lengths[:-1])) if len(self.lengths) else []

    def to_array_sequence(self) -> Any:
        """The chunk as a nibabel ``ArraySequence`` (no copy of the points)."""
        from nibabel.streamlines import ArraySequence

        seq = ArraySequence()
        seq._data = self.points
        seq._offsets = self.offsets
        seq._lengths = self.lengths
        return seq

    @classmethod
    def empty(cls, n_scalars: int = 0, n_properties: int = 0) -> "StreamlineChunk":
        return cls(
            np.empty((0, 3), np.float32),
            np.empty(0, np.int64),
            np.empty((0, n_scalars), np.float32) if n_scalars else None,
            np.empty((0, n_properties), np.float32) if n_properties else None,
        )

    @classmethod
    def concat(cls, chunks: Sequence["StreamlineChunk"]) -> "StreamlineChunk":
        """One chunk holding all of ``chunks`` in order.

        Raises
        ------
        ValueError
            If the chunks disagree on scalars or properties: some have them and others not
            (``None``), or they have different numbers of columns; or on the names of their
            named data. Points and lengths alone can always be joined: drop the others first
            (``StreamlineChunk(c.points, c.lengths)``).
        """
        if not chunks:
            return cls.empty()
        if len(chunks) == 1:
            return chunks[0]

        def cat(name: str) -> np.ndarray | None:
            parts = [getattr(c, name) for c in chunks]
            shapes = {None if p is None else p.shape[1:] for p in parts}
            if len(shapes) > 1:
                described = sorted("none" if s is None else f"{s[0] if s else 1} columns" for s in shapes)
                raise ValueError(f"cannot join chunks whose {name} differ: {', '.join(described)}")
            return None if parts[0] is None else np.concatenate(parts)

        def fields(name: str) -> tuple[tuple[str, int], ...]:
            found = {getattr(c, name) for c in chunks}
            if len(found) > 1:
                raise ValueError(f"cannot join chunks whose {name} differ: {sorted(found)}")
            return found.pop()

        def named(name: str, derived: tuple[tuple[str, int], ...]) -> dict[str, np.ndarray]:
            dicts = [getattr(c, name) for c in chunks]
            keys = {tuple(d) for d in dicts}
            if len(keys) > 1:
                raise ValueError(f"cannot join chunks whose {name} differ: names {sorted(keys)}")
            views = {n for n, _ in derived}  # made again from the joined scalars / properties, not copied twice
            return {k: np.concatenate([d[k] for d in dicts]) for k in dicts[0] if k not in views}

        scalar_fields, property_fields = fields("scalar_fields"), fields("property_fields")
        return cls(
            cat("points"),  # type: ignore[arg-type]
            cat("lengths"),  # type: ignore[arg-type]
            cat("scalars"),
            cat("properties"),
            named("data_per_point", scalar_fields),
            named("data_per_streamline", property_fields),
            scalar_fields,
            property_fields,
        )


class PointsBuilder:
    """Whole streamlines appended into one float32 ``(n, 3)`` array that grows by doubling.

    Parameters
    ----------
    capacity
        Points to make room for at first (an estimate; more is made as needed).
    """

    def __init__(self, capacity: int = 0) -> None:
        self._points = np.empty((max(int(capacity), 1024), 3), np.float32)
        self._n = 0
        self._lengths: list[np.ndarray] = []

    def extend(self, n_points: int, lengths: np.ndarray) -> np.ndarray:
        """Room for ``n_points`` more points, of streamlines of ``lengths``: a view to fill."""
        need = self._n + n_points
        if need > len(self._points):
            grown = np.empty((max(need, 2 * len(self._points)), 3), np.float32)
            grown[: self._n] = self._points[: self._n]
            self._points = grown
        self._lengths.append(np.asarray(lengths, np.int64))
        view = self._points[self._n : need]
        self._n = need
        return view

    def append(self, chunk: StreamlineChunk) -> None:
        """Copy a chunk's points and lengths in (its scalars and properties are not kept)."""
        self.extend(len(chunk.points), chunk.lengths)[...] = chunk.points

    def finish(self) -> StreamlineChunk:
        """The streamlines so far, as one chunk (a view of the array, not a copy)."""
        lengths = np.concatenate(self._lengths) if self._lengths else np.empty(0, np.int64)
        return StreamlineChunk(self._points[: self._n], lengths)
