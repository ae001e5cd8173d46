"""``PrefetchWorkerPlugin``: one cache budget per Dask worker, shared by every task's open files.

Without the plugin each open file has a budget of its own, so a worker running 8 tasks holds 8
budgets at once. With it, every ``S3PrefetchFileSystem`` file a task opens (without an explicit
``prefetch_storage``) reserves its blocks from the worker's one :class:`~dask_prefetch.cache.tiers.TierSet`,
inside a private directory per worker that ``teardown`` removes (and that the next worker on the
machine sweeps, at its setup, if this one was killed).

The plugin is found by its type, whatever name it was registered under; a worker has at most
one (a second one's setup raises).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from distributed.diagnostics.plugin import WorkerPlugin

from .. import checks, config
from ..checks import describe
from ..cache.tiers import ScratchDirectory, TierSet, sweep_storage
from ..engine.stats import EngineStats
from ..formats import kernels
from ..fs import opening
from . import prometheus
from .next_tasks import NextTaskPrefetcher

if TYPE_CHECKING:
    from ..engine.rolling import PrefetchEngine
    from ..fs.file import PrefetchFile

logger = logging.getLogger(__name__)

PLUGIN_NAME = "dask-prefetch"
_acting_plugin: contextvars.ContextVar[PrefetchWorkerPlugin | None] = contextvars.ContextVar(
    "dask_prefetch_acting_plugin", default=None
)


class PrefetchWorkerPlugin(WorkerPlugin):
    """Own each worker's prefetch tiers and account for its prefetching.

    Parameters
    ----------
    prefetch_storage
        ``[(directory, MiB), ...]`` in descending priority, on the workers' machines: the budget of
        each worker (not of each file). Default: ``dask-prefetch.storage`` or ``/dev/shm``.
        Directories missing on a worker are created there when the plugin is set up, as fsspec's
        caches do: only the missing components, each private (mode 0700).

    store, storage_options
        A URL the worker's tasks will read (``"s3://bucket"``), and the ``storage_options`` they
        read it with (as given to :func:`~dask_prefetch.read_tractogram`). At setup the worker
        makes that store's prefetching filesystem (the instance its tasks will use) and opens as
        many connections as a file's first GETs (``dask-prefetch.concurrency``'s start, +1), so
        that its first task pays for neither the client nor the connections. A store that
        cannot be reached is logged, not raised; :attr:`connections` says how many were opened.

    Raises
    ------
    TypeError
        If ``prefetch_storage`` is not a list of ``(directory, MiB)`` pairs with numeric budgets,
        or ``storage_options`` not a dict.
    ValueError
        If it is empty, a budget is not positive and finite, or a directory is named twice.
        The rest is checked on each worker when the plugin is set up, and raised from
        ``client.register_plugin``: a directory that cannot be made or is not a writable
        directory (``OSError``, one line naming it), one directory named twice through a
        symlink (``ValueError``), another ``PrefetchWorkerPlugin`` already on the worker under
        another name (``ValueError``: one budget per worker), and the ``dask-prefetch.next-tasks``
        and ``next-task-bytes`` configuration.

    Examples
    --------
    >>> client.register_plugin(PrefetchWorkerPlugin(prefetch_storage=[("/dev/shm", 2048)]))  # doctest: +SKIP

    Notes
    -----
    Files opened in a task find the plugin by its type (:func:`current_worker_plugin`), so it
    may be registered under any name. At setup it sweeps its tiers of the scratch directories of
    dead processes (a killed worker's blocks, which on ``/dev/shm`` hold RAM), and warms the TRK
    kernels (:func:`dask_prefetch.formats.kernels.warm`: loaded from numba's on-disk cache, or
    compiled once), in a thread, so that the worker's first task does not pay for them;
    :attr:`warmup` says how long that took.

    With :class:`PrefetchSchedulerPlugin` placing ``read_tractogram`` tasks, each worker also
    opens the streams of the read tasks next in its queue while the current ones compute
    (``dask-prefetch.next-tasks``, ``dask-prefetch.next-task-bytes``; see
    :mod:`dask_prefetch.cluster.next_tasks`).

    Metrics appear in ``worker.metrics`` (and so on the scheduler and in the dashboard's workers
    table): ``prefetch_bytes_fetched``, ``prefetch_bytes_served``, ``prefetch_requests``,
    ``prefetch_stall_seconds``, ``prefetch_in_flight``, ``prefetch_open_files`` and
    ``prefetch_tier{i}_bytes`` (bytes held per tier), ``prefetch_start_stall_seconds``
    (waiting for files' first bytes), ``prefetch_opened_ahead`` and ``prefetch_claimed_ahead``
    (files opened for the next tasks, and those the tasks used), ``prefetch_reads`` and
    ``prefetch_reads_waited`` (a task asking for a block's bytes, and having to wait: the rest are
    prefetch hits), ``prefetch_gets_resumed`` and ``prefetch_gets_reissued`` (see
    :mod:`dask_prefetch.engine.fetch`).
    """

    name = PLUGIN_NAME
    idempotent = True

    def __init__(
        self,
        prefetch_storage: Sequence[tuple[str, float]] | None = None,
        *,
        store: str | None = None,
        storage_options: dict | None = None,
    ) -> None:
        if prefetch_storage is not None:  # the shape now; the directories on each worker, in setup
            prefetch_storage = checks.check_storage(prefetch_storage)
        if store is not None and not isinstance(store, str):
            raise TypeError(f"store must be a URL (str), got {describe(store)}")
        if storage_options is not None and not isinstance(storage_options, dict):
            raise TypeError(f"storage_options must be a dict, got {describe(storage_options)}")
        self.prefetch_storage = prefetch_storage
        self.store, self.storage_options = store, storage_options
        self.connections = 0
        self.tiers: TierSet | None = None
        self._directories: list[ScratchDirectory] = []
        self._engines: set[PrefetchEngine] = set()
        self._finished = EngineStats()
        self._lock = threading.Lock()
        self.next_tasks: NextTaskPrefetcher | None = None
        self.warmup: kernels.Warmup | None = None
        self._set_up = False

    def __getstate__(self) -> dict:  # only the settings travel to the workers
        return {"prefetch_storage": self.prefetch_storage, "store": self.store, "storage_options": self.storage_options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(  # type: ignore[misc]
            state["prefetch_storage"], store=state.get("store"), storage_options=state.get("storage_options")
        )

    async def setup(self, worker: Any) -> None:
        """Make the worker's tiers (creating missing directories) after sweeping them of dead owners; warm kernels."""
        self._set_up_tiers(worker)
        # Compiling takes ~1 s (loading from numba's cache ~0.1 s, numba's import aside): in a thread, so
        # the worker keeps answering meanwhile; awaited, so the tasks sent after register_plugin find them.
        self.warmup = await asyncio.get_running_loop().run_in_executor(None, _warm_kernels)
        if self.store is not None:
            self.connections = await _open_connections(self.store, self.storage_options)

    def _set_up_tiers(self, worker: Any) -> None:
        others = [name for name, p in worker.plugins.items() if p is not self and _is_active(p)]
        if others:
            raise ValueError(
                f"worker {worker.address} already has a PrefetchWorkerPlugin, registered as {others[0]!r}: "
                f"one per worker (it holds the worker's one budget); unregister one of them "
                f"(client.unregister_worker_plugin(name))"
            )
        storage = self.prefetch_storage or config.default_storage()
        try:
            TierSet(storage, create=True)  # make missing directories; check them, budgets and settings
        except (OSError, ValueError) as e:  # the message says it all: no frames of ours behind it
            raise e.with_traceback(None) from None
        sweep_storage(storage)  # a killed worker's blocks go now, not when a file is next opened there
        lookahead = None if config.get("next-tasks") is None else config.get_int("next-tasks", minimum=0)
        head_bytes, claim_timeout = config.get_bytes("next-task-bytes"), config.get_seconds("read-timeout")
        try:
            for directory, _ in storage:
                self._directories.append(ScratchDirectory(directory))
            self.tiers = TierSet([(d.path, mib) for d, (_, mib) in zip(self._directories, storage)])
        except BaseException:
            for made in self._directories:
                made.remove()
            self._directories = []
            raise
        self.next_tasks = NextTaskPrefetcher(
            worker,
            lookahead=lookahead,
            head_bytes=head_bytes,
            acting=self.acting,
            claim_timeout=claim_timeout,
            budget=sum(tier.budget for tier in self.tiers.tiers),
        )
        for key, metric in self._metrics().items():
            worker.metrics[key] = metric
        prometheus.add(worker.address, self)
        self._set_up = True

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        """Open the next read tasks' streams ahead (see :class:`NextTaskPrefetcher`)."""
        if self.next_tasks is not None:
            self.next_tasks.transition(key, start, finish)

    def teardown(self, worker: Any) -> None:
        """Stop every prefetching file of this worker and delete its directories."""
        if not self._set_up:
            return  # its setup failed: the metrics and directories in place are another plugin's, if any
        self._set_up = False
        if self.next_tasks is not None:
            self.next_tasks.close()
        with self._lock:
            engines, self._engines = list(self._engines), set()
        for engine in engines:
            engine.close()
        for directory in self._directories:
            directory.remove()
        self.tiers = None  # files opened from now on no longer find this plugin
        for key in self._metrics():
            worker.metrics.pop(key, None)
        prometheus.remove(worker.address)

    def track(self, engine: PrefetchEngine) -> None:
        """Count an engine drawing on this worker's tiers (its stats, its teardown)."""
        with self._lock:
            self._prune()
            self._engines.add(engine)

    def claim(self, fs: Any, paths: list[str], open_kwargs: dict, offset: int) -> PrefetchFile | None:
        """The file this worker opened ahead for the running task, if it asks for that stream."""
        return self.next_tasks.claim(fs, paths, open_kwargs, offset) if self.next_tasks is not None else None

    def on_first_bytes(self) -> Callable[[], None] | None:
        """What the running task's file calls when its first bytes arrive (see :class:`NextTaskPrefetcher`)."""
        return self.next_tasks.on_first_bytes() if self.next_tasks is not None else None

    @contextlib.contextmanager
    def acting(self) -> Iterator[None]:
        """Make files opened in this context (outside any task) draw on this worker's tiers."""
        token = _acting_plugin.set(self)
        try:
            yield
        finally:
            _acting_plugin.reset(token)

    def stats(self) -> EngineStats:
        """Totals over every file this worker has opened."""
        with self._lock:
            self._prune()
            total = EngineStats()
            total.add(self._finished)
            for engine in self._engines:
                total.add(engine.stats)
            return total

    def in_flight(self) -> int:
        """GETs in flight across the worker's open files."""
        with self._lock:
            return sum(engine.in_flight for engine in self._engines if not engine.closed)

    def open_files(self) -> int:
        """Prefetching files open on this worker now."""
        with self._lock:
            self._prune()
            return len(self._engines)

    def _prune(self) -> None:
        for engine in [e for e in self._engines if e.closed]:
            self._engines.discard(engine)
            self._finished.add(engine.stats)

    def _metrics(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {
            "prefetch_bytes_fetched": lambda w: self.stats().bytes_fetched,
            "prefetch_bytes_served": lambda w: self.stats().bytes_served,
            "prefetch_requests": lambda w: self.stats().requests,
            "prefetch_stall_seconds": lambda w: self.stats().stall_seconds,
            "prefetch_start_stall_seconds": lambda w: self.stats().start_stall_seconds,
            "prefetch_reads": lambda w: self.stats().reads,
            "prefetch_reads_waited": lambda w: self.stats().reads_waited,
            "prefetch_gets_resumed": lambda w: self.stats().gets_resumed,
            "prefetch_gets_reissued": lambda w: self.stats().gets_reissued,
            "prefetch_opened_ahead": lambda w: self.next_tasks.opened_ahead if self.next_tasks else 0,
            "prefetch_claimed_ahead": lambda w: self.next_tasks.claimed if self.next_tasks else 0,
            "prefetch_in_flight": lambda w: self.in_flight(),
            "prefetch_open_files": lambda w: self.open_files(),
        }
        for i in range(len(self._directories)):
            metrics[f"prefetch_tier{i}_bytes"] = lambda w, i=i: self.tiers.tiers[i].used if self.tiers else 0
        return metrics


def _warm_kernels() -> kernels.Warmup | None:
    try:
        warmup = kernels.warm()
    except Exception:  # never fails a worker: the first parse compiles them, or uses numpy
        logger.warning("warming the TRK kernels failed", exc_info=True)
        return None
    logger.debug("TRK kernels %s in %.2f s (cache: %s)", warmup.how, warmup.seconds, warmup.cache_dir)
    return warmup


async def _open_connections(store: str, storage_options: dict | None) -> int:
    """Make ``store``'s prefetching filesystem and open connections to it (see ``PrefetchWorkerPlugin``).

    Made here, in the worker's event loop thread, as the tasks' read specs are unpickled there:
    fsspec's instance cache then gives them this very filesystem, and its client's open connections.
    """
    from ..tractography.tractogram import _filesystem  # the filesystem read_tractogram gives its tasks

    try:
        _, opener = _filesystem(store, storage_options, None, None)
        if opener.fs is None:  # local files: nothing to connect to
            return 0
        source = opener.fs._range_source()
        n = config.get_concurrency()[0] + 1  # a file's start GETs, and its header object's
        opened = source.open_connections(opener.fs._object_path(store), n)
        connections = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(opened, source.loop))
    except Exception:  # noqa: BLE001 - the tasks meet the store's errors themselves
        logger.warning("opening connections to %s failed", store, exc_info=True)
        return 0
    if not connections:
        logger.warning("no connection to %s could be opened (tasks will meet the error)", store)
    return connections


def _is_active(plugin: Any) -> bool:
    """A PrefetchWorkerPlugin whose setup has made its tiers (and whose teardown has not run)."""
    return isinstance(plugin, PrefetchWorkerPlugin) and plugin.tiers is not None


def current_worker_plugin() -> PrefetchWorkerPlugin | None:
    """The plugin of the worker running the current task, or None (not in a task, or no plugin).

    The worker's :class:`PrefetchWorkerPlugin` is found by its type, whatever name it was
    registered under.

    Raises
    ------
    RuntimeError
        If the worker has two active ones (their setup refuses that; this guards against
        plugins added by other means), rather than choosing one silently.
    """
    acting = _acting_plugin.get()
    if acting is not None and acting.tiers is not None:
        return acting
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    active = [(name, p) for name, p in list(worker.plugins.items()) if _is_active(p)]
    if len(active) > 1:
        raise RuntimeError(
            f"worker {worker.address} has {len(active)} PrefetchWorkerPlugins "
            f"({', '.join(repr(name) for name, _ in active)}): unregister all but one"
        )
    return active[0][1] if active else None


# Files opened in this process draw on the running task's worker plugin from now on.
opening.install_worker_lookup(current_worker_plugin)
