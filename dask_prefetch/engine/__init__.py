"""The rolling prefetch engine: byte ranges of one logical file moved into local block files ahead of the reader.

It knows no file format and no Dask, and reads only through a :class:`~dask_prefetch.sources.RangeSource`.

* :mod:`.layout` — shards, blocks and parts: how objects map onto one logical file;
* :mod:`.rolling` — :class:`~.rolling.PrefetchEngine`, the window that reserves, fetches and evicts blocks;
* :mod:`.fetch` — one ranged GET streamed into a block file, resumed when its body breaks;
* :mod:`.stragglers` — when to re-issue a GET far slower than its peers;
* :mod:`.blockfiles` — the files that hold blocks in a tier's scratch directory;
* :mod:`.stats` and :mod:`.trace` — what the engine reports: counters, and an opt-in tracer.
"""
