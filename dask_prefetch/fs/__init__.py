"""What users open: read-only fsspec filesystems whose files prefetch ahead of the reader.

* :mod:`.s3` — :class:`~.s3.S3PrefetchFileSystem`, s3fs-compatible;
* :mod:`.prefetch` — :class:`~.prefetch.PrefetchFileSystem` over any fsspec filesystem (protocol ``prefetch``);
* :mod:`.opening` — the ``open`` both share: checks, settings, tiers, engine;
* :mod:`.file` — :class:`~.file.PrefetchFile`, the binary file handed to readers;
* :mod:`.readonly` — the allow-list of reading methods; everything else raises ``PermissionError``.
"""
