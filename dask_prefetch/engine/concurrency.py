"""How many ranged GETs one prefetching file keeps in flight: fixed, or adapted to what the link gives.

An :class:`AdaptiveConcurrency` climbs while throughput rises and backs off when the store
throttles (additive increase, multiplicative decrease, as TCP and S3's own advice do):

* Time is cut into *rounds*: a round ends once as many bytes as ``limit / 2`` parts have
  arrived (and at least ``min_round`` seconds have passed), about half a GET's duration whatever
  the link. The round after a change is not judged (the new GETs are still waiting for their
  first byte), so a step is judged about one GET's duration after it is taken.
* A round is judged only if the window was *concurrency-bound* in it — the reader wanted more
  bytes than ``limit`` GETs could fetch. A round in which the window was bound by the reader
  (compute-bound) or by tier space (a full tier) says nothing of the link: the limit stays.
* Judged rounds: the limit grows by ``step`` (a quarter) while each step raises the throughput
  by a good share (``efficiency``) of what more GETs would give were they the bound; once a step brings less, the limit goes back to the best one seen and holds there,
  probing upward again after ``settle_rounds`` judged rounds (the link may have changed).
* A throttling answer (``503 SlowDown``) halves the limit at once (not below ``floor``), at most
  once per round, and forgets the throughput learnt (the store's capacity just changed).

Pure: no clock, no I/O, no locks; the engine calls it with the times and bytes it sees (under
its own lock), so the policy is tested on its own (``tests/test_concurrency.py``).
"""

from __future__ import annotations


class AdaptiveConcurrency:
    """The limit on GETs in flight of one engine.

    Parameters
    ----------
    start
        GETs in flight at first.
    ceiling
        Most GETs in flight it grows to (the connection pool's size); ``ceiling == start``: fixed.
    part_bytes
        Bytes per ranged GET (a round lasts ``limit`` parts' worth of bytes).
    floor
        Fewest GETs in flight it backs off to.
    step
        GETs added per step up (None: a quarter of the limit, at least 1).
    efficiency
        Share of the proportional gain a step must bring to be kept: with 0.4, a quarter more
        GETs must bring 10 % more throughput (they bring 25 % while they are what limits it).
    min_round
        Shortest round, seconds (a burst from already-started GETs is not a measurement).
    settle_rounds
        Judged rounds spent at the best limit before probing upward again.
    """

    def __init__(
        self,
        start: int,
        ceiling: int,
        part_bytes: int,
        floor: int = 1,
        step: int | None = None,
        efficiency: float = 0.4,
        min_round: float = 0.05,
        settle_rounds: int = 8,
    ) -> None:
        if not 1 <= floor <= start <= ceiling:
            raise ValueError(f"need 1 <= floor <= start <= ceiling, got {floor}, {start}, {ceiling}")
        if part_bytes < 1 or not 0 < efficiency <= 1 or min_round < 0 or settle_rounds < 1:
            raise ValueError("part_bytes and settle_rounds must be >= 1, efficiency in (0, 1], min_round >= 0")
        self.limit = start
        self.floor, self.ceiling, self.part_bytes = floor, ceiling, part_bytes
        self._step = step
        self.efficiency, self.min_round, self.settle_rounds = efficiency, min_round, settle_rounds
        self.peak = start
        self.backoffs = 0  # times a throttling answer halved the limit
        self._round_start: float | None = None
        self._round_bytes = 0
        self._bound = 0  # arrivals in this round while the window was concurrency-bound
        self._arrivals = 0
        self._best_rate: float | None = None  # bytes/s at _best_limit
        self._best_limit = start
        self._skip = False  # the round after a change is not judged: new GETs are still on their first byte
        self._settled = 0  # judged rounds held at the best limit
        self._throttled_round = False

    @property
    def step(self) -> int:
        """GETs the next step up adds."""
        return self._step if self._step is not None else max(1, self.limit // 4)

    @property
    def adaptive(self) -> bool:
        """Whether the limit can change at all."""
        return self.ceiling > self.floor

    def arrived(self, nbytes: int, now: float, bound: bool) -> bool:
        """``nbytes`` arrived at ``now``; ``bound``: the window wanted more GETs than the limit allows.

        Returns whether the limit changed.
        """
        if not self.adaptive:
            return False
        if self._round_start is None:
            self._new_round(now)
            return False
        self._round_bytes += nbytes
        self._arrivals += 1
        self._bound += bound
        elapsed = now - self._round_start
        if self._round_bytes * 2 < self.limit * self.part_bytes or elapsed < self.min_round:
            return False
        rate = self._round_bytes / elapsed if elapsed > 0 else float("inf")
        judged = self._bound * 2 >= self._arrivals and not self._skip  # concurrency-bound for most of it
        self._skip = False
        self._new_round(now)
        return self._judge(rate) if judged else False

    def throttled(self, now: float) -> bool:
        """The store answered a GET with a throttling error at ``now``. Returns whether the limit changed."""
        if not self.adaptive or self._throttled_round:
            return False
        self.backoffs += 1
        before = self.limit
        self.limit = max(self.floor, self.limit // 2)
        self._best_rate = None
        self._best_limit = self.limit
        self._settled = 0
        self._new_round(now)
        self._throttled_round = True  # once per round: a burst of 503s is one signal
        self._skip = True
        return self.limit != before

    def _judge(self, rate: float) -> bool:
        before, best = self.limit, self._best_limit
        if self._best_rate is None or (self.limit > best and rate >= self._best_rate * (
            1 + self.efficiency * (self.limit - best) / best
        )):
            self._best_rate, self._best_limit = rate, self.limit  # still rising: one step more
            self._settled = 0
            self.limit = min(self.ceiling, self.limit + self.step)
        elif self.limit > best:  # the last step brought too little: back to the best
            self.limit = best
            self._settled = 0
        else:  # holding at the best limit
            self._best_rate = 0.5 * (self._best_rate + rate)  # follow the link, slowly
            self._settled += 1
            if self._settled >= self.settle_rounds:
                self._settled = 0
                self.limit = min(self.ceiling, self.limit + self.step)  # probe again
        self.peak = max(self.peak, self.limit)
        self._skip = self.limit != before  # the next round still runs at the old limit in part
        return self.limit != before

    def _new_round(self, now: float) -> None:
        self._round_start = now
        self._round_bytes = self._bound = self._arrivals = 0
        self._throttled_round = False
