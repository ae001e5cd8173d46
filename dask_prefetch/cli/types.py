"""Parameter types of the ``dask-prefetch`` options: every number is checked before a command runs.

A bad value is a usage error (exit 2, one line), never a cluster that waits forever for workers.
"""

from __future__ import annotations

import math
from typing import Any

import click

class _IntRange(click.IntRange):
    name = "integer"  # "'x' is not a valid integer", as for click.INT


COUNT = _IntRange(min=1)
"""A count that must be at least one: workers, threads, shards, partitions, repeats."""

NON_NEGATIVE_INT = _IntRange(min=0)
"""A byte count that may be zero."""


class FiniteFloat(click.FloatRange):
    """A finite float in a range: ``nan``, ``inf`` and ``-inf`` are refused (``FloatRange`` lets them by).

    Parameters
    ----------
    min, max
        Bounds (None: none on that side).
    min_open, max_open
        Whether the bound itself is excluded.
    """

    def __init__(
        self, min: float | None = None, max: float | None = None, min_open: bool = False, max_open: bool = False
    ) -> None:
        super().__init__(min, max, min_open=min_open, max_open=max_open)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


POSITIVE = FiniteFloat(min=0, min_open=True)
"""A finite number above zero: sizes, bandwidths."""

NON_NEGATIVE = FiniteFloat(min=0)
"""A finite number of zero or more: a latency (0: none)."""


class StorageEntry(click.ParamType):
    """``DIRECTORY:MIB``, a prefetch tier and its budget (a finite number of MiB above zero).

    Converts to a ``(directory, mib)`` tuple.
    """

    name = "DIR:MIB"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        directory, _, mib = str(value).rpartition(":")
        if not directory:
            self.fail(f"{value!r} is not DIRECTORY:MIB.", param, ctx)
        try:
            budget = float(mib)
        except ValueError:
            self.fail(f"{value!r} is not DIRECTORY:MIB (MIB {mib!r} is not a number).", param, ctx)
        if not (math.isfinite(budget) and budget > 0):
            self.fail(f"{value!r}: the budget must be a finite number of MiB above 0, got {mib!r}.", param, ctx)
        return directory, budget


STORAGE = StorageEntry()

NUMERIC_TYPES = (click.types.IntParamType, click.types.FloatParamType, StorageEntry)
"""The types whose options take numbers (for the tests that try bad values on every one)."""
