"""Tractograms as Dask collections: layouts, partitions, and :func:`~.tractogram.read_tractogram`.

* :mod:`.planning` — how listed objects become partitions (layout inference, contiguous groups);
* :mod:`.partitions` — what one task reads and how it parses it, through the prefetching filesystems;
* :mod:`.tractogram` — :func:`~.tractogram.read_tractogram` and the :class:`~.tractogram.Tractogram` collection.
"""
