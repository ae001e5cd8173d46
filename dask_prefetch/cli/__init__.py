"""The ``dask-prefetch`` command line (``python -m dask_prefetch`` too)."""
