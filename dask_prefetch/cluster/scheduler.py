"""``PrefetchSchedulerPlugin``: place ``read_tractogram`` partitions on workers ahead of time.

Without it the scheduler hands a worker a read task only when a thread frees up, so a worker
never knows what it reads next. With it, when a graph arrives, its read tasks (found in their
specs, so the placement survives graph optimization, which fuses tasks and drops annotations)
are split into contiguous groups balanced by bytes and worker threads, and each group is
restricted to one worker. A worker then holds its partitions in its queue in priority order, and
its :class:`PrefetchWorkerPlugin` opens the next ones while the current ones compute.

The restrictions are *loose*: if the worker dies, its partitions run on the others (and the
plugin lifts the dead worker's restrictions), and work stealing may still move them to idle or
new workers.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Hashable, Iterable, Sequence

from distributed.diagnostics.plugin import SchedulerPlugin

from .tasks import find_partition_read

SCHEDULER_PLUGIN_NAME = "dask-prefetch-scheduler"
_GONE = ("erred", "forgotten")


class PrefetchSchedulerPlugin(SchedulerPlugin):
    """Place ``read_tractogram`` partition tasks on workers in balanced, contiguous groups.

    Examples
    --------
    >>> client.register_plugin(PrefetchSchedulerPlugin())  # doctest: +SKIP
    >>> client.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[("/dev/shm", 2048)]))  # doctest: +SKIP

    Notes
    -----
    Tasks that already carry worker, host or resource restrictions are left alone. Placement
    happens once, when a graph reaches the scheduler, over the workers running then.

    Attributes
    ----------
    placed : dict
        Read task key -> worker address, for the placed tasks the scheduler still knows.
    """

    name = SCHEDULER_PLUGIN_NAME
    idempotent = True

    def __init__(self) -> None:
        self.placed: dict[Hashable, str] = {}

    def update_graph(self, scheduler: Any, *, tasks: Iterable[Hashable] = (), **kwargs: Any) -> None:
        reads = []
        for key in tasks:
            ts = scheduler.tasks.get(key)
            if ts is None or ts.state != "released" or ts.run_spec is None:
                continue
            if ts.worker_restrictions or ts.host_restrictions or ts.resource_restrictions:
                continue  # the user placed it
            read = find_partition_read(ts.run_spec)
            if read is not None:
                reads.append((ts, max(1, int(getattr(read.partition, "nbytes", 0) or 0))))
        # The least busy first: a small graph (or one read) goes where there is room, not always to one worker.
        workers = sorted(scheduler.running, key=lambda ws: (len(ws.processing) / max(1, ws.nthreads), ws.address))
        if not reads or not workers:
            return
        reads.sort(key=lambda item: item[0].priority)
        groups = balanced_groups([nbytes for _, nbytes in reads], [ws.nthreads for ws in workers])
        for (ts, _), group in zip(reads, groups):
            address = workers[group].address
            ts.worker_restrictions = {address}
            ts.loose_restrictions = True  # never stuck: any worker may run it if this one is gone
            self.placed[ts.key] = address

    def transition(self, key: Hashable, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish in _GONE:
            self.placed.pop(key, None)

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        """The worker's partitions have been rescheduled elsewhere: forget it in their restrictions."""
        for key in [k for k, address in self.placed.items() if address == worker]:
            del self.placed[key]
            ts = scheduler.tasks.get(key)
            if ts is not None and ts.worker_restrictions == {worker}:
                ts.worker_restrictions = None
                ts.loose_restrictions = False


def balanced_groups(weights: Sequence[int], capacities: Sequence[int]) -> list[int]:
    """Split items in order into contiguous groups, one per worker, sized by the workers' capacities.

    Parameters
    ----------
    weights
        Each item's cost (bytes), in the order the items will run.
    capacities
        Each worker's capacity (threads).

    Returns
    -------
    list of int
        The worker of each item: non-decreasing, so each worker gets one contiguous run.

    Raises
    ------
    TypeError
        If a weight or a capacity is not a number.
    ValueError
        If one is negative or not finite, or there is no capacity at all.

    Examples
    --------
    >>> balanced_groups([1, 1, 1, 1], [1, 1])
    [0, 0, 1, 1]
    >>> balanced_groups([1, 1, 1, 1, 1, 1], [2, 1])
    [0, 0, 0, 0, 1, 1]
    """
    _check_non_negative(weights, "weights")
    _check_non_negative(capacities, "capacities")
    if not sum(capacities) > 0:
        raise ValueError(f"capacities must add up to more than 0, got {list(capacities)!r}")
    total_weight = float(sum(weights)) or 1.0
    total_capacity = float(sum(capacities))
    bounds, acc = [], 0.0
    for capacity in capacities:
        acc += capacity / total_capacity
        bounds.append(acc)
    groups, done, worker = [], 0.0, 0
    for weight in weights:
        middle = (done + weight / 2) / total_weight  # where the item's bulk lies in the whole
        while worker < len(bounds) - 1 and middle > bounds[worker]:
            worker += 1
        groups.append(worker)
        done += weight
    return groups


def _check_non_negative(values: Sequence[float], name: str) -> None:
    """Every item a finite number >= 0, or ``TypeError`` / ``ValueError`` naming it."""
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name}[{i}] must be a number, got {value!r} ({type(value).__name__})")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}[{i}] must be a finite number >= 0, got {value!r}")
