"""Read very large, sequentially-read S3 objects into Dask with rolling prefetch.

The data path: S3 -> :mod:`.fetch` (ranged GETs) -> :mod:`.tiers` (local storage budgets) ->
:mod:`.engine` (the rolling window) -> :mod:`.file` (what users read) -> :mod:`.streamlines`
(TRK/TCK parsers) -> :mod:`.tractogram` (Dask collections).
"""

from . import config  # registers the dask.config defaults
from .cluster import PrefetchSchedulerPlugin, PrefetchWorkerPlugin, register_plugins
from .engine import PrefetchEngine
from .file import PrefetchFile
from .filesystem import S3PrefetchFileSystem
from .prefetchfs import PrefetchFileSystem
from .stats import EngineStats, process_stats
from .tiers import TierSet
from .tractogram import MixedDataWarning, Tractogram, read_tractogram

__all__ = [
    "EngineStats",
    "MixedDataWarning",
    "PrefetchEngine",
    "PrefetchFile",
    "PrefetchFileSystem",
    "PrefetchSchedulerPlugin",
    "PrefetchWorkerPlugin",
    "S3PrefetchFileSystem",
    "TierSet",
    "Tractogram",
    "config",
    "process_stats",
    "read_tractogram",
    "register_plugins",
]

try:
    from importlib.metadata import version as _version

    __version__ = _version("dask-prefetch")
except Exception:  # not installed (running from a checkout)
    __version__ = "0+unknown"
