"""Defaults for dask_prefetch, registered with ``dask.config``.

Every setting lives under the ``dask-prefetch`` key (see ``dask-prefetch.yaml``) and can be
overridden the usual Dask ways: ``dask.config.set({"dask-prefetch.block-size": "64 MiB"})``, a
YAML file in ``~/.config/dask/``, or ``DASK_DASK_PREFETCH__BLOCK_SIZE=64MiB`` in the environment
(``DASK_PREFETCH__BLOCK_SIZE=64MiB`` works too).
Constructor and ``open`` arguments override the configuration; ``None`` means "use it".
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import dask.config
import yaml
from dask.utils import parse_bytes, parse_timedelta

_DEFAULTS_FILE = Path(__file__).with_name("dask-prefetch.yaml")

with _DEFAULTS_FILE.open() as _f:
    dask.config.update_defaults(yaml.safe_load(_f))


def _short_environment_names(environ: dict[str, str]) -> dict:
    """``DASK_PREFETCH__BLOCK_SIZE=64MiB`` as ``DASK_DASK_PREFETCH__BLOCK_SIZE`` would be read by Dask."""
    prefix = "DASK_PREFETCH__"
    renamed = {f"DASK_DASK_PREFETCH__{k[len(prefix) :]}": v for k, v in environ.items() if k.startswith(prefix)}
    return dask.config.collect_env(renamed) if renamed else {}


dask.config.update(dask.config.config, _short_environment_names(dict(os.environ)), priority="new")

MiB = 2**20


def get(key: str) -> Any:
    """The configured value of ``dask-prefetch.<key>``."""
    return dask.config.get(f"dask-prefetch.{key}")


def get_bytes(key: str, value: int | str | None = None) -> int:
    """``value`` (or the configured ``key`` when it is None) as a number of bytes."""
    value = get(key) if value is None else value
    return int(parse_bytes(value)) if isinstance(value, str) else int(value)


def get_seconds(key: str, value: float | str | None = None) -> float:
    """``value`` (or the configured ``key`` when it is None) as seconds."""
    value = get(key) if value is None else value
    return float(parse_timedelta(value, default="s"))


def default_storage() -> list[tuple[str, float]]:
    """Tiers to use when none are given: configured, else ``/dev/shm`` or the temp dir.

    Returns
    -------
    list of (directory, MiB)
    """
    configured = get("storage")
    if configured:
        return [(str(d), float(mib)) for d, mib in configured]
    budget_mib = get_bytes("default-budget") / MiB
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return [(shm, budget_mib)]
    return [(tempfile.gettempdir(), budget_mib)]
