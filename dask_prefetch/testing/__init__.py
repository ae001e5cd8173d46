"""Local stand-ins for S3 used by the tests and benchmarks.

Imports are lazy, and moto is only ever imported by the S3 server's child process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .faults import FaultProxy
    from .s3server import LocalS3Server
    from .wan import WanProxy

__all__ = ["FaultProxy", "LocalS3Server", "WanProxy"]


def __getattr__(name: str) -> Any:
    # Lazy, so ``python -m dask_prefetch.testing.wan`` does not import itself twice.
    if name == "LocalS3Server":
        from .s3server import LocalS3Server

        return LocalS3Server
    if name == "WanProxy":
        from .wan import WanProxy

        return WanProxy
    if name == "FaultProxy":
        from .faults import FaultProxy

        return FaultProxy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
