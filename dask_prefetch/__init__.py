"""Read very large, sequentially-read objects from S3 (or any fsspec store) into Dask with rolling prefetch.

The folders follow the data path: a store -> :mod:`.sources` (ranged reads of a pinned object
version) -> :mod:`.engine` (the rolling window: which blocks to fetch, the GETs that stream them
into block files, what is evicted) -> :mod:`.cache` (local storage tiers and their budgets) ->
:mod:`.fs` (the read-only filesystems and the file users read) -> :mod:`.formats` (TRK/TCK
parsers, free of I/O and Dask) -> :mod:`.tractography` (partitions and the Dask collections).
The optional :mod:`.cluster` plugins sit beside it; :mod:`.cli` and :mod:`.testing` on top.

Names are imported on first use (as scipy does), so ``import dask_prefetch.formats`` loads
neither the store clients nor Dask.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

#: Public name -> the module that defines it.
_EXPORTS = {
    "EngineStats": "engine.stats",
    "MixedDataWarning": "tractography.tractogram",
    "PlanInputs": "sizing",
    "PrefetchEngine": "engine.rolling",
    "PrefetchFile": "fs.file",
    "PrefetchFileSystem": "fs.prefetch",
    "PrefetchSchedulerPlugin": "cluster",
    "PrefetchWorkerPlugin": "cluster",
    "S3PrefetchFileSystem": "fs.s3",
    "TierSet": "cache.tiers",
    "Tractogram": "tractography.tractogram",
    "plan": "sizing",
    "process_stats": "engine.stats",
    "read_tractogram": "tractography.tractogram",
    "register_plugins": "cluster",
}

__all__ = sorted([*_EXPORTS, "config"])


def __getattr__(name: str) -> Any:
    if name == "config":
        return importlib.import_module(f"{__name__}.config")  # also registers the dask.config defaults
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value  # once: later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, "config"])


if "dask.config" in sys.modules:  # `import dask, dask_prefetch`: the dask-prefetch.* defaults are there at once
    from . import config  # noqa: F401 (else registered by the first module that reads them)

try:
    from importlib.metadata import version as _version

    __version__ = _version("dask-prefetch")
except Exception:  # not installed (running from a checkout)
    __version__ = "0+unknown"
