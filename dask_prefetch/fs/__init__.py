"""What users open: read-only fsspec filesystems whose files prefetch ahead of the reader.

* :mod:`.prefetch` — :class:`~.prefetch.PrefetchFileSystem` over any fsspec filesystem (protocol ``prefetch``);
* :mod:`.s3` — :class:`~.s3.S3PrefetchFileSystem`, its S3 case with s3fs's constructor;
* :mod:`.s3target` — :class:`~.s3target.ReadOnlyS3FileSystem`, the read-only s3fs that one holds;
* :mod:`.opening` — the ``open`` both share: checks, settings, tiers, engine;
* :mod:`.file` — :class:`~.file.PrefetchFile`, the binary file handed to readers;
* :mod:`.readonly` — the allow-list of reading methods; everything else raises ``PermissionError``.
"""
