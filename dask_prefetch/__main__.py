"""``python -m dask_prefetch``: the ``dask-prefetch`` command."""

import sys

from .cli.main import main

sys.exit(main())
