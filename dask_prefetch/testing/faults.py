"""The fault proxy's old home: :class:`FaultProxy` is :class:`~dask_prefetch.testing.proxy.Proxy`, unshaped.

The faults are described in :mod:`dask_prefetch.testing.proxy`. Run standalone with::

    python -m dask_prefetch.testing.faults --upstream http://127.0.0.1:9000 --rate slowdown=0.1
"""

from __future__ import annotations

from .proxy import FAULTS, FaultProxy, main

__all__ = ["FAULTS", "FaultProxy"]

if __name__ == "__main__":
    main()
