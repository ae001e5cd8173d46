"""The optional cluster layer: Dask plugins that share one prefetch budget per worker.

Without them every read still works, each open file with a budget of its own.
"""

from .worker import PLUGIN_NAME, PrefetchWorkerPlugin, current_worker_plugin

__all__ = ["PLUGIN_NAME", "PrefetchWorkerPlugin", "current_worker_plugin"]
