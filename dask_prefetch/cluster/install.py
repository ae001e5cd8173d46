"""Installing both plugins: from a client (any distributed version), or by ``--preload``."""

from __future__ import annotations

from typing import Any, Sequence

from .scheduler import PrefetchSchedulerPlugin
from .worker import PrefetchWorkerPlugin


def register_plugins(
    client: Any,
    prefetch_storage: Sequence[tuple[str, float]] | None = None,
    *,
    store: str | None = None,
    storage_options: dict | None = None,
) -> Any:
    """Register :class:`PrefetchSchedulerPlugin` and :class:`PrefetchWorkerPlugin` on ``client``'s cluster.

    Uses ``Client.register_plugin``, or ``register_scheduler_plugin`` / ``register_worker_plugin``
    on a distributed old enough to lack it. Registering again is a no-op (both are idempotent).

    Parameters
    ----------
    client
        A ``distributed.Client`` (with an asynchronous client, await the result).
    prefetch_storage
        ``[(directory, MiB), ...]``: each worker's budget (default: ``dask-prefetch.storage``).
    store, storage_options
        The store the tasks will read and its options: each worker opens its connections at setup
        (see :class:`PrefetchWorkerPlugin`).

    Examples
    --------
    >>> register_plugins(client, prefetch_storage=[("/dev/shm", 2048), ("/scratch", 50_000)])  # doctest: +SKIP
    """
    worker = PrefetchWorkerPlugin(prefetch_storage, store=store, storage_options=storage_options)
    plugins = (PrefetchSchedulerPlugin(), worker)
    if hasattr(client, "register_plugin"):
        calls = [lambda p=p: client.register_plugin(p) for p in plugins]
    else:  # distributed before 2023.9 (register_worker_plugin was removed in 2026.6)
        calls = [
            lambda: client.register_scheduler_plugin(plugins[0]),
            lambda: client.register_worker_plugin(plugins[1]),
        ]
    if getattr(client, "asynchronous", False):

        async def register() -> None:
            for call in calls:
                await call()

        return register()
    for call in calls:
        call()
    return None


async def setup_server(server: Any) -> None:
    """Add the plugin that fits ``server`` (a scheduler or a worker), configured from ``dask.config``."""
    from distributed import Scheduler, Worker

    if isinstance(server, Scheduler):
        server.add_plugin(PrefetchSchedulerPlugin(), idempotent=True)
    elif isinstance(server, Worker):
        await server.plugin_add(PrefetchWorkerPlugin(), name=PrefetchWorkerPlugin.name, catch_errors=False)
    else:
        raise TypeError(
            f"dask_prefetch.preload goes on a scheduler or a worker (dask worker --preload ...), not {type(server).__name__}"
        )
