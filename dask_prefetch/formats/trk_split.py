"""Where to cut one TRK file into byte ranges that start at records: candidates found, then proven by the reads.

TRK has no sync marker: a record is ``int32 n_points``, then ``n_points x (3 + n_scalars)`` and
``n_properties`` float32. Near a nominal cut, :func:`find_record_start` takes the first 4-byte
aligned offset from which a chain of records validates against the header (plausible counts,
finite values, coordinates of plausible size) for ``min_records`` records or to the end of the window.

That is only a candidate: bytes inside points can look like records. It is proven by the
reading itself. The range before a cut is read from a boundary already proven (the first starts
at the header's end) and must end exactly at the cut, with whole records (the reader raises
otherwise): then the cut is on the file's own chain of records. A range's streamlines are
therefore used only once every range before it has been read and ended where the next began
(see :mod:`dask_prefetch.tractography.tractogram`), so a wrong candidate gives a
:class:`~.errors.CorruptTractogramError`, never other streamlines.
"""

from __future__ import annotations

import numpy as np

from .chunk import TractogramHeader

#: Records a candidate's chain must validate (fewer only where the window ends first).
MIN_RECORDS = 16
#: Largest coordinate a point may have, in mm, and still look like a point. Not the volume: real
#: files (dipy's tracks300.trk, nibabel's complex.trk) have points well outside the dimensions
#: their headers give.
MAX_COORDINATE = 1e6


def find_record_start(
    window: bytes | memoryview | np.ndarray,
    window_offset: int,
    header: TractogramHeader,
    min_records: int = MIN_RECORDS,
) -> int | None:
    """The file offset of the first candidate record start in ``window`` (which begins at ``window_offset``).

    Parameters
    ----------
    window
        Bytes of the file from ``window_offset`` on.
    window_offset
        Their offset in the file (records start at the header's ``data_offset`` plus multiples of 4).
    header
        The file's header: byte order, scalars and properties per record.
    min_records
        Records the chain from a candidate must validate, unless the window ends first (then at
        least one whole record, and a plausible count for the record the window cuts).

    Returns
    -------
    int or None
        None when no offset of the window starts a valid chain (a streamline longer than the
        window, or not a TRK body).
    """
    raw = np.frombuffer(window, np.uint8)
    skip = (header.data_offset - window_offset) % 4  # to the first aligned offset
    words = raw[skip : skip + (len(raw) - skip) // 4 * 4].view(header.fields.get("_endianness", "<") + "i4")
    floats = words.view(words.dtype.str.replace("i4", "f4"))
    per_point = 3 + header.n_scalars
    counts = words.astype(np.int64)
    # A count word: n >= 1 and its record fits in what is left of the window (a cut record aside).
    plausible = np.flatnonzero((counts >= 1) & (counts < 2**26))
    for start in plausible:
        if _chain_holds(counts, floats, int(start), per_point, header.n_properties, min_records):
            return window_offset + skip + 4 * int(start)
    return None


def _chain_holds(
    counts: np.ndarray,
    floats: np.ndarray,
    at: int,
    per_point: int,
    n_properties: int,
    min_records: int,
) -> bool:
    """Whether records chain from word ``at`` for ``min_records`` records, or validly to the window's end."""
    whole = 0
    while whole < min_records:
        if at >= len(counts):
            return whole > 0  # the window ends exactly at a record boundary
        n = int(counts[at])
        if n < 1 or n >= 2**26:
            return False
        end = at + 1 + n * per_point + n_properties
        if end > len(counts):  # the window cuts this record: judge what is there
            return whole > 0 and _values_hold(floats[at + 1 :], per_point, n, cut=True)
        if not _values_hold(floats[at + 1 : end], per_point, n, cut=False):
            return False
        whole += 1
        at = end
    return True


def _values_hold(values: np.ndarray, per_point: int, n: int, cut: bool) -> bool:
    """Whether a record's floats (all of them, or the first ones when ``cut``) look like points and values."""
    if not np.all(np.isfinite(values)):
        return False
    points = values[: (len(values) if cut else n * per_point) // per_point * per_point].reshape(-1, per_point)[:, :3]
    return not np.any(np.abs(points) > MAX_COORDINATE)
