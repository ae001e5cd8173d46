"""Checks of argument and setting values: a wrong type raises ``TypeError``, a bad value ``ValueError``.

Every message names the argument (or the ``dask-prefetch.<key>`` setting) and the value.
"""

from __future__ import annotations

import datetime
import math
import numbers
import os
from typing import Any, Iterable, Mapping, Sequence

from dask.utils import parse_bytes, parse_timedelta

MiB = 2**20
PAGE = 4096  # the smallest budget that can hold anything (see tiers.disk_bytes)


def describe(value: Any) -> str:
    """``value`` for an error message: its repr and its type."""
    return f"{value!r} ({type(value).__name__})"


def is_int(value: Any) -> bool:
    """An integer (Python or NumPy), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value: Any, name: str, minimum: int | None = None) -> int:
    """``value`` as an ``int``, at least ``minimum``.

    Raises
    ------
    TypeError
        If it is not an integer (bools, floats and strings are refused).
    ValueError
        If it is smaller than ``minimum``.
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {describe(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_concurrency(value: Any, name: str) -> int | str:
    """GETs in flight: an ``int`` >= 1 (fixed), or ``"auto"`` (adapted to the link).

    Raises
    ------
    TypeError
        If it is neither an integer nor ``"auto"``.
    ValueError
        If it is smaller than 1.
    """
    if value == "auto":
        return "auto"
    if not is_int(value):
        raise TypeError(f"{name} must be an int or 'auto', got {describe(value)}")
    return check_int(value, name, minimum=1)


def check_bytes(value: Any, name: str) -> int:
    """A positive size: an ``int`` of bytes or a string such as ``"32 MiB"``.

    Raises
    ------
    TypeError
        If it is neither an integer nor a string.
    ValueError
        If the string is not a size, or the size is not positive.
    """
    if isinstance(value, str):
        try:
            nbytes = int(parse_bytes(value))
        except ValueError:
            raise ValueError(f"{name} must be a size such as '32 MiB', got {value!r}") from None
    elif is_int(value):
        nbytes = int(value)
    else:
        raise TypeError(f"{name} must be an int of bytes or a string such as '32 MiB', got {describe(value)}")
    if nbytes <= 0:
        raise ValueError(f"{name} must be > 0 bytes, got {value!r}")
    return nbytes


def check_seconds(value: Any, name: str) -> float:
    """A positive, finite duration: seconds as a number, a string such as ``"2 min"``, or a timedelta.

    Raises
    ------
    TypeError
        If it is none of those (bools are refused).
    ValueError
        If the string is not a duration, or the duration is not positive and finite.
    """
    if isinstance(value, str):
        try:
            seconds = float(parse_timedelta(value, default="s"))
        except (KeyError, ValueError):
            raise ValueError(f"{name} must be a duration such as '120s', got {value!r}") from None
    elif isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{name} must be a number of seconds or a string such as '120s', got {describe(value)}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return seconds


def check_storage(storage: Any, name: str = "prefetch_storage") -> list[tuple[str, float]]:
    """Tiers as ``[(directory, MiB), ...]``, their shape checked (not the directories themselves).

    Returns
    -------
    list of (str, float)

    Raises
    ------
    TypeError
        If ``storage`` is not a list, an entry not a (directory, MiB) pair, or a budget not a number.
    ValueError
        If the list is empty, a budget is not positive and finite (or smaller than one 4 KiB page),
        or a directory is named twice.
    """
    if isinstance(storage, (str, bytes, os.PathLike, Mapping)) or not isinstance(storage, Iterable):
        raise TypeError(f"{name} must be a list of (directory, MiB) pairs, got {describe(storage)}")
    pairs: list[tuple[str, float]] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(storage):
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence) or len(entry) != 2:
            raise TypeError(f"{name} entries are (directory, MiB) pairs, got {entry!r} at index {i}")
        directory, mib = entry
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"{name}[{i}] directory must be a str or os.PathLike, got {describe(directory)}")
        directory = os.fspath(directory)
        if not directory:
            raise ValueError(f"{name}[{i}] directory is an empty path")
        if isinstance(mib, bool) or not isinstance(mib, numbers.Real):
            raise TypeError(f"{name} budget for {directory!r} must be a number of MiB, got {describe(mib)}")
        if not (math.isfinite(mib) and mib > 0):
            raise ValueError(f"{name} budget for {directory!r} must be > 0 MiB, got {mib!r}")
        if mib * MiB < PAGE:
            raise ValueError(f"{name} budget for {directory!r} of {mib!r} MiB is less than one 4 KiB page")
        key = os.path.normpath(os.path.abspath(directory))
        if key in seen:
            raise ValueError(f"{name} names directory {directory!r} twice (at index {seen[key]} and {i})")
        seen[key] = i
        pairs.append((directory, float(mib)))
    if not pairs:
        raise ValueError(f"{name} must name at least one (directory, MiB) tier, got an empty list")
    return pairs
