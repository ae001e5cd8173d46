"""The optional cluster layer: Dask plugins for one prefetch budget per worker and cross-task prefetch.

Without them every read still works, each open file with a budget of its own.
"""

from .install import register_plugins
from .scheduler import SCHEDULER_PLUGIN_NAME, PrefetchSchedulerPlugin
from .worker import PLUGIN_NAME, PrefetchWorkerPlugin, current_worker_plugin

__all__ = [
    "PLUGIN_NAME",
    "SCHEDULER_PLUGIN_NAME",
    "PrefetchSchedulerPlugin",
    "PrefetchWorkerPlugin",
    "current_worker_plugin",
    "register_plugins",
]
