"""Local stand-ins for S3, GCS and Azure used by the tests and benchmarks.

Imports are lazy, and moto is only ever imported by the S3 server's child process; GCS is
fake-gcs-server (:class:`LocalGCSServer`), Azure is Azurite (:class:`LocalAzuriteServer`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .azurite import LocalAzuriteServer
    from .gcs import LocalGCSServer
    from .proxy import FaultProxy, WanProxy
    from .s3server import LocalS3Server

__all__ = ["FaultProxy", "LocalAzuriteServer", "LocalGCSServer", "LocalS3Server", "WanProxy"]


def __getattr__(name: str) -> Any:
    # Lazy, so ``python -m dask_prefetch.testing.proxy`` does not import itself twice.
    if name == "LocalS3Server":
        from .s3server import LocalS3Server

        return LocalS3Server
    if name in ("WanProxy", "FaultProxy"):
        from . import proxy

        return getattr(proxy, name)
    if name == "LocalAzuriteServer":
        from .azurite import LocalAzuriteServer

        return LocalAzuriteServer
    if name == "LocalGCSServer":
        from .gcs import LocalGCSServer

        return LocalGCSServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
