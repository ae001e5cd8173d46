"""Recognise ``read_tractogram`` partition tasks in a graph, whatever optimization did to them.

Graph optimization fuses a bag's or array's tasks into one ``_execute_subgraph`` task and drops
``dask.annotate`` annotations on the way (dask#7036), so neither keys nor annotations say which
tasks read which data. The task itself does: somewhere in its spec there is a call of
``read_partition(partition, opener, ...)``. Both plugins look for it there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dask._task_spec import DataNode, Task

_MAX_DEPTH = 8  # fused subgraphs nest a level or two; deeper specs are not ours
_MAX_WIDTH = 256  # larger containers are data, not graph structure: not searched


@dataclass(frozen=True)
class PartitionRead:
    """A task's read: which partition, and through which opener (filesystem + open options)."""

    partition: Any  # dask_prefetch.tractography.partitions.Partition
    opener: Any  # dask_prefetch.tractography.partitions.Opener


def find_partition_read(run_spec: Any) -> PartitionRead | None:
    """The partition a task reads, found in its (possibly fused) spec, or None."""
    from ..tractography.partitions import read_partition  # the cluster layer is imported by the filesystem

    return _walk(run_spec, read_partition, 0)


def _walk(node: Any, target: Any, depth: int) -> PartitionRead | None:
    if depth > _MAX_DEPTH:
        return None
    if isinstance(node, Task):
        if node.func is target and len(node.args) >= 2:
            partition, opener = (_value(a) for a in node.args[:2])
            return PartitionRead(partition, opener)
        children: Any = (*node.args, *node.kwargs.values())
    elif isinstance(node, dict) and len(node) <= _MAX_WIDTH:  # a fused task's inner graph
        children = node.values()
    elif isinstance(node, (list, tuple)) and len(node) <= _MAX_WIDTH:
        children = node
    else:
        return None
    for child in children:
        if isinstance(child, (Task, dict, list, tuple)):
            found = _walk(child, target, depth + 1)
            if found is not None:
                return found
    return None


def _value(arg: Any) -> Any:
    return arg.value if isinstance(arg, DataNode) else arg
