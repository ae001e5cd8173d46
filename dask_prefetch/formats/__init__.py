"""Streaming tractogram parsers: TRK and TCK into flat chunks of streamlines.

They read any binary file object (a local file, ``S3PrefetchFileSystem``'s files, ``BytesIO``)
and know nothing of S3 or Dask. Each format module offers a header parser and a reader that
yields :class:`StreamlineChunk` objects of whole streamlines in RAS+ mm.
"""

from .chunk import StreamlineChunk, TractogramHeader
from .errors import CorruptTractogramError
from .detection import detect_format, open_reader

__all__ = ["CorruptTractogramError", "StreamlineChunk", "TractogramHeader", "detect_format", "open_reader"]
