"""``--preload dask_prefetch.preload``: both plugins for batch jobs with no client code.

::

    dask scheduler --preload dask_prefetch.preload
    DASK_DASK_PREFETCH__STORAGE='[["/dev/shm", 2048], ["/scratch", 50000]]' \
        dask worker tcp://scheduler:8786 --preload dask_prefetch.preload

On a scheduler it adds :class:`~dask_prefetch.PrefetchSchedulerPlugin`, on a worker
:class:`~dask_prefetch.PrefetchWorkerPlugin` with its tiers from ``dask-prefetch.storage``
(``dask.config``: a YAML file, or environment variables as above).
"""

from __future__ import annotations

from typing import Any

from .cluster.install import setup_server


async def dask_setup(server: Any) -> None:
    """Called by distributed when the scheduler or worker starts."""
    await setup_server(server)
