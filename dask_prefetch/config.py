"""Defaults for dask_prefetch, registered with ``dask.config``.

Every setting lives under the ``dask-prefetch`` key (see ``dask-prefetch.yaml``) and can be
overridden the usual Dask ways: ``dask.config.set({"dask-prefetch.block-size": "64 MiB"})``, a
YAML file in ``~/.config/dask/``, or ``DASK_DASK_PREFETCH__BLOCK_SIZE=64MiB`` in the environment
(``DASK_PREFETCH__BLOCK_SIZE=64MiB`` works too, and survives ``dask.config.refresh()``; being
read as a default, it gives way to a YAML file and to the long name).
Constructor and ``open`` arguments override the configuration; ``None`` means "use it".

Arguments and configured values are checked alike (see :mod:`dask_prefetch.checks`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import dask.config
import yaml

from .checks import check_bytes, check_concurrency, check_int, check_seconds, check_storage
from .formats import kernels as _kernels

_DEFAULTS_FILE = Path(__file__).with_name("dask-prefetch.yaml")

with _DEFAULTS_FILE.open() as _f:
    _PACKAGE_DEFAULTS = yaml.safe_load(_f)
dask.config.update_defaults(_PACKAGE_DEFAULTS)


def _short_environment_names(environ: Mapping[str, str]) -> dict:
    """``DASK_PREFETCH__BLOCK_SIZE=64MiB`` as ``DASK_DASK_PREFETCH__BLOCK_SIZE`` would be read by Dask."""
    prefix = "DASK_PREFETCH__"
    renamed = {f"DASK_DASK_PREFETCH__{k[len(prefix) :]}": v for k, v in environ.items() if k.startswith(prefix)}
    return dask.config.collect_env(renamed) if renamed else {}


class _ShortNames(Mapping):
    """The short environment names, read afresh each time Dask reads its defaults.

    Registered as defaults, so that ``dask.config.refresh()`` (which rebuilds the configuration
    from the registered defaults, the YAML files and the ``DASK_*`` variables) keeps them. As
    defaults they give way to a YAML file and to the long names; the package's own defaults give
    way to them.
    """

    def _values(self) -> dict:
        return _short_environment_names(os.environ)

    def __getitem__(self, key: str) -> Any:
        return self._values()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())


# Read before the package's defaults at each refresh (the first default read wins there), and
# applied now over the package's defaults only, as a refresh would.
dask.config.defaults.insert(dask.config.defaults.index(_PACKAGE_DEFAULTS), _ShortNames())
_INNER = _PACKAGE_DEFAULTS["dask-prefetch"]
_INNER = {**_INNER, **{k.replace("-", "_"): v for k, v in _INNER.items()}}  # as Dask may spell the keys
dask.config.update(
    dask.config.config,
    _short_environment_names(os.environ),
    priority="new-defaults",
    defaults={"dask-prefetch": _INNER, "dask_prefetch": _INNER},
)

MiB = 2**20


def get(key: str) -> Any:
    """The configured value of ``dask-prefetch.<key>``."""
    return dask.config.get(f"dask-prefetch.{key}")


# The parsers know no configuration: the setting that picks their TRK kernels is handed to them.
_kernels.set_switch(lambda: bool(get("compiled-parsers")))


# -- configured values, overridden by arguments --------------------------------------------------


def _resolve(key: str, value: Any, name: str | None) -> tuple[Any, str]:
    """The value to use (``value``, or the configured one when it is None) and the name to blame."""
    if value is None:
        return get(key), f"dask-prefetch.{key}"
    return value, name or key.replace("-", "_")


def get_bytes(key: str, value: int | str | None = None, name: str | None = None) -> int:
    """``value`` (or the configured ``key`` when it is None) as a positive number of bytes.

    ``name`` is the argument named in errors (default: ``key`` with underscores).

    Raises
    ------
    TypeError, ValueError
        As :func:`check_bytes`.
    """
    return check_bytes(*_resolve(key, value, name))


def get_int(key: str, value: int | None = None, name: str | None = None, minimum: int | None = None) -> int:
    """``value`` (or the configured ``key`` when it is None) as an int of at least ``minimum``.

    A configured value may be a string of digits (as set from a command line).

    Raises
    ------
    TypeError, ValueError
        As :func:`check_int`.
    """
    value, name = _resolve(key, value, name)
    if isinstance(value, str) and name.startswith("dask-prefetch.") and value.strip().lstrip("+-").isdigit():
        value = int(value)
    return check_int(value, name, minimum)


#: GETs in flight an ``"auto"`` file starts with (its first block goes out in as many parts).
AUTO_CONCURRENCY = 16


def get_concurrency(value: int | str | None = None, name: str = "concurrency") -> tuple[int, int]:
    """GETs in flight at first and at most, from ``value`` (or ``dask-prefetch.concurrency`` when it is None).

    An int is a fixed number (both the same); ``"auto"`` starts at :data:`AUTO_CONCURRENCY` and
    adapts up to ``dask-prefetch.max-concurrency``. A configured value may be a string of digits.

    Raises
    ------
    TypeError, ValueError
        As :func:`~dask_prefetch.checks.check_concurrency`, naming the argument or the setting.
    """
    value, name = _resolve("concurrency", value, name)
    if isinstance(value, str) and name.startswith("dask-prefetch.") and value.strip().lstrip("+-").isdigit():
        value = int(value)
    value = check_concurrency(value, name)
    if value != "auto":
        return int(value), int(value)
    ceiling = get_int("max-concurrency", minimum=1)
    return min(AUTO_CONCURRENCY, ceiling), ceiling


def get_seconds(key: str, value: float | str | None = None, name: str | None = None) -> float:
    """``value`` (or the configured ``key`` when it is None) as a positive, finite number of seconds.

    Raises
    ------
    TypeError, ValueError
        As :func:`check_seconds`.
    """
    return check_seconds(*_resolve(key, value, name))


def default_storage() -> list[tuple[str, float]]:
    """Tiers to use when none are given: configured, else ``/dev/shm`` or the temp dir.

    Returns
    -------
    list of (directory, MiB)

    Raises
    ------
    TypeError, ValueError
        If ``dask-prefetch.storage`` or ``dask-prefetch.default-budget`` is malformed.
    """
    configured = get("storage")
    if configured:
        return check_storage(configured, "dask-prefetch.storage")
    budget_mib = get_bytes("default-budget") / MiB
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return [(shm, budget_mib)]
    return [(tempfile.gettempdir(), budget_mib)]
