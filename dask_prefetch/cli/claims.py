"""The demo's default setting and what the README claims the demo measures there (a test keeps them in step)."""

from __future__ import annotations

DEMO_DEFAULTS = {
    "size_mb": 200.0,
    "shards": 8,
    "latency": 0.05,
    "bandwidth_mib": 40.0,
    "workers": 2,
    "threads": 1,
}
"""``dask-prefetch demo``'s options when none is given."""

README_DEMO_CLAIM = "1.8x (median; 1.1-2.2x)"
"""nibabel over plain s3fs's time over dask_prefetch's, as the README states it for :data:`DEMO_DEFAULTS`."""
