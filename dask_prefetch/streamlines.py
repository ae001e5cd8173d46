"""Deprecated: the parsers' old name. They are :mod:`dask_prefetch.formats` since the move into folders (2026-12-03).

``from dask_prefetch.streamlines import StreamlineChunk, open_reader, ...`` keeps working (with a
``DeprecationWarning``) for the names the package exported; import them from
:mod:`dask_prefetch.formats` instead.
"""

import warnings

from .formats import *  # noqa: F403 (the same objects, not copies)
from .formats import __all__  # noqa: F401

warnings.warn(
    "dask_prefetch.streamlines is now dask_prefetch.formats; the old name will go", DeprecationWarning, stacklevel=2
)
