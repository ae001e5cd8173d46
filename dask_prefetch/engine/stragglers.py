"""When to re-issue a ranged GET that is far slower than its peers.

S3's own advice for latency-sensitive readers is to track request latency and retry the slowest
few percent on a new connection. A :class:`StragglerWatch` keeps the durations of an engine's
recent GETs; a GET still running after ``factor`` times their median (and at least ``floor``
seconds) gets a second GET for the rest of its range, and the first to finish wins. One
re-issue per GET, and a few at a time (a quarter of the GETs in flight): a link that is slow for
every GET raises the median instead, so it re-issues nothing and does not add to its own load.
"""

from __future__ import annotations

import collections
import statistics


class StragglerWatch:
    """Durations of recent GETs and the re-issue budget of one engine (event loop thread only).

    Parameters
    ----------
    factor
        A GET is a straggler once it has run this many times the median; ``0`` turns re-issuing off.
    floor
        Never re-issue a GET younger than this many seconds.
    max_active
        Re-issued GETs running at once.
    window, min_samples
        How many recent durations are kept, and how many are needed before judging.
    """

    def __init__(
        self, factor: float, floor: float = 0.5, max_active: int = 1, window: int = 64, min_samples: int = 8
    ) -> None:
        if factor < 0 or floor < 0 or max_active < 1:
            raise ValueError(
                f"straggler factor and floor must be >= 0 and max_active >= 1, got {factor}, {floor}, {max_active}"
            )
        self.factor, self.floor, self.max_active, self.min_samples = factor, floor, max_active, min_samples
        self._durations: collections.deque[float] = collections.deque(maxlen=window)
        self.active = 0

    def patience(self) -> float | None:
        """Seconds after which a GET started now counts as a straggler, or None (not judged yet)."""
        if not self.factor or len(self._durations) < self.min_samples:
            return None
        return max(self.floor, self.factor * statistics.median(self._durations))

    def record(self, seconds: float) -> None:
        """A GET of a full range took ``seconds`` from its start to its last byte."""
        self._durations.append(seconds)

    def take_reissue(self) -> bool:
        """Start a re-issue if fewer than ``max_active`` are running; pair with :meth:`end_reissue`."""
        if self.active >= self.max_active:
            return False
        self.active += 1
        return True

    def end_reissue(self) -> None:
        """A re-issued GET's race is over."""
        self.active -= 1
