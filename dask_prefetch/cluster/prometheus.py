"""Prometheus metrics for the workers' ``/metrics`` endpoint (when ``prometheus_client`` is installed).

distributed serves ``prometheus_client``'s default registry on each worker's HTTP port. One
collector per process reports every :class:`PrefetchWorkerPlugin` living in it, labelled by
worker address: counters ``dask_prefetch_fetched_bytes_total``, ``..._served_bytes_total``,
``..._requests_total``, ``..._stall_seconds_total``, ``..._start_stall_seconds_total``,
``..._files_opened_total``, ``..._files_opened_ahead_total``, ``..._reads_total``,
``..._reads_waited_total``, ``..._gets_resumed_total``, ``..._gets_reissued_total``,
``..._concurrency_backoffs_total``; gauges
``dask_prefetch_in_flight_requests``, ``dask_prefetch_open_files`` and ``dask_prefetch_tier_bytes``
(label ``tier``, the tier's index).

The counters are running totals since the worker started, as Prometheus counters must be: a job's
own figures are their ``increase(...)`` over its time range, e.g. its bytes per second
``rate(dask_prefetch_fetched_bytes_total[1m])`` and its hit share
``1 - increase(dask_prefetch_reads_waited_total[5m]) / increase(dask_prefetch_reads_total[5m])``.
From a client, :func:`dask_prefetch.engine.stats.job_stats` gives the same between two snapshots.
Without ``prometheus_client`` installed (``pip install dask-prefetch[prometheus]``) distributed
serves no ``/metrics`` page and nothing here is registered.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from .worker import PrefetchWorkerPlugin

_lock = threading.Lock()
_register_lock = threading.Lock()
_plugins: dict[str, PrefetchWorkerPlugin] = {}
_registered = False


def add(address: str, plugin: PrefetchWorkerPlugin) -> None:
    """Report ``plugin`` (of the worker at ``address``) from now on."""
    global _registered
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return
    with _register_lock:  # registering calls collect(), which takes _lock
        if not _registered:
            REGISTRY.register(_Collector())
            _registered = True
    with _lock:
        _plugins[address] = plugin


def remove(address: str) -> None:
    with _lock:
        _plugins.pop(address, None)


class _Collector:
    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"dask_prefetch_{name}", doc, labels=["worker"])

        counters = {
            "bytes_fetched": counter("fetched_bytes", "Bytes fetched from S3 into the worker's tiers"),
            "bytes_served": counter("served_bytes", "Bytes read by tasks from the worker's tiers"),
            "requests": counter("requests", "Ranged GETs started"),
            "stall_seconds": counter("stall_seconds", "Seconds tasks waited for data"),
            "start_stall_seconds": counter("start_stall_seconds", "Seconds tasks waited for a file's first bytes"),
            "files_opened": counter("files_opened", "Prefetching files opened"),
            "reads": counter("reads", "Times tasks asked for bytes of a block not yet in hand"),
            "reads_waited": counter("reads_waited", "... and had to wait for them (the rest are prefetch hits)"),
            "gets_resumed": counter("gets_resumed", "Ranged GETs resumed after breaking or stalling"),
            "gets_reissued": counter("gets_reissued", "Straggling ranged GETs raced by a second one"),
            "concurrency_backoffs": counter(
                "concurrency_backoffs", "Times a file halved its GETs in flight after the store throttled (503 SlowDown)"
            ),
        }
        ahead = counter("files_opened_ahead", "Files opened for the worker's next tasks")
        in_flight = GaugeMetricFamily("dask_prefetch_in_flight_requests", "Ranged GETs in flight", labels=["worker"])
        open_files = GaugeMetricFamily("dask_prefetch_open_files", "Prefetching files open", labels=["worker"])
        tier_bytes = GaugeMetricFamily(
            "dask_prefetch_tier_bytes", "Bytes of blocks held per tier", labels=["worker", "tier"]
        )
        with _lock:
            plugins = list(_plugins.items())
        for address, plugin in plugins:
            stats = plugin.stats()
            for field, family in counters.items():
                family.add_metric([address], getattr(stats, field))
            ahead.add_metric([address], plugin.next_tasks.opened_ahead if plugin.next_tasks else 0)
            in_flight.add_metric([address], plugin.in_flight())
            open_files.add_metric([address], plugin.open_files())
            for i, tier in enumerate(plugin.tiers.tiers if plugin.tiers else ()):
                tier_bytes.add_metric([address, str(i)], tier.used)
        yield from counters.values()
        yield from (ahead, in_flight, open_files, tier_bytes)
