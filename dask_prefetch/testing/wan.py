"""The WAN proxy's old home: :class:`WanProxy` is :class:`~dask_prefetch.testing.proxy.Proxy` with shaping defaults.

Run standalone with (50 ms and 40 MiB/s unless given)::

    python -m dask_prefetch.testing.wan --upstream http://127.0.0.1:9000 \\
        --latency 0.05 --bandwidth-mib 40
"""

from __future__ import annotations

from .proxy import WanProxy, main

__all__ = ["WanProxy"]

if __name__ == "__main__":
    main(latency=0.05, bandwidth_mib=40.0)
