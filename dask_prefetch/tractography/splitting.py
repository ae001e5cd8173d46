"""One big TRK file cut into partitions: candidate record starts near even cuts, read from the store.

The candidates come from :func:`~dask_prefetch.formats.trk_split.find_record_start` over a small
window at each cut (one ranged read per cut, concurrent where the store is async); they are
proven when the partitions are read (see :class:`~.partitions.Partition`, kind ``"trk-range"``,
and how :class:`~.tractogram.Tractogram` orders its partitions' results).
"""

from __future__ import annotations

from typing import Any

from ..formats import TractogramHeader
from ..formats.trk_split import find_record_start

#: Bytes read at each cut first; a cut where no record starts in them is read again, larger.
WINDOW_BYTES = 256 * 1024
MAX_WINDOW_BYTES = 16 * 2**20


def trk_cuts(fs: Any, path: str, header: TractogramHeader, size: int, n: int) -> list[int]:
    """Byte offsets ``[data_offset, b_1, ..., size]`` splitting ``path``'s records into (up to) ``n`` ranges.

    Fewer ranges when two cuts find the same record start, or a cut finds none within
    :data:`MAX_WINDOW_BYTES` (a streamline longer than that).
    """
    first = header.data_offset
    body = size - first
    nominal = [first + (body * j // n) // 4 * 4 for j in range(1, n)]
    found: dict[int, int | None] = {}
    pending, window = [c for c in nominal if c < size], WINDOW_BYTES
    while pending:
        ends = [min(size, c + window) for c in pending]
        data = fs.cat_ranges([path] * len(pending), pending, ends)
        retry = []
        for cut, end, raw in zip(pending, ends, data):
            if isinstance(raw, BaseException):
                raise raw
            start = find_record_start(raw, cut, header)
            if start is None and end < size and window < MAX_WINDOW_BYTES:
                retry.append(cut)
            else:
                found[cut] = start
        pending, window = retry, window * 4
    inner = sorted({b for b in found.values() if b is not None and first < b < size})
    return [first, *inner, size]
