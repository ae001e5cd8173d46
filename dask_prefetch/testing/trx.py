"""Real TRX files for tests and benchmarks, written by trx-python from nibabel's and dipy's test data.

Needs ``trx-python`` (and dipy for ``tracks300.trk``): the ``test`` extra.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

#: How :func:`write_trx` stores the file.
STORAGES = ("stored", "deflated", "directory")


def source_trk(name: str) -> Path:
    """A TRK file shipped with nibabel (``standard.trk``, ``complex.trk``, ...) or dipy (``tracks300.trk``),
    or the TRK file at ``name`` if it is a path that exists."""
    if os.path.isfile(name):
        return Path(name)
    if name == "tracks300.trk":
        import dipy.data

        return Path(dipy.data.__file__).parent / "files" / name
    import nibabel

    return Path(nibabel.__file__).parent / "tests" / "data" / name


def with_named_data(tractogram: Any, seed: int = 0) -> Any:
    """``tractogram`` with a per-point ``fa`` (1 column), ``colors`` (3 columns) and a per-streamline
    ``weight`` added where it has none of them (values from the points, so they differ per point)."""
    from nibabel.streamlines import ArraySequence

    rng = np.random.default_rng(seed)
    streamlines = tractogram.streamlines
    if "fa" not in tractogram.data_per_point:
        tractogram.data_per_point["fa"] = ArraySequence(
            [np.linalg.norm(s, axis=1, keepdims=True).astype(np.float32) / 100 for s in streamlines]
        )
    if "colors" not in tractogram.data_per_point:
        tractogram.data_per_point["colors"] = ArraySequence([np.abs(s).astype(np.float32) % 255 for s in streamlines])
    if "weight" not in tractogram.data_per_streamline:
        tractogram.data_per_streamline["weight"] = rng.random((len(streamlines), 1)).astype(np.float32)
    return tractogram


def write_trx(
    path: str | os.PathLike,
    source: str = "tracks300.trk",
    storage: str = "stored",
    positions: Any = np.float32,
    offsets: Any = np.uint32,
    dpv: dict | None = None,
    dps: dict | None = None,
    groups: dict[str, np.ndarray] | None = None,
    named: bool = True,
    dpg: dict[str, dict[str, np.ndarray]] | None = None,
) -> Path:
    """Write a TRX with trx-python from the TRK ``source`` (see :func:`source_trk`); return its path.

    ``storage`` is ``"stored"`` or ``"deflated"`` (a zip: ``path`` should end with ``.trx``) or
    ``"directory"``; ``positions``/``offsets`` their dtypes; ``dpv``/``dps`` dtypes by name; ``groups``
    streamline indices by name; ``named`` adds per-point and per-streamline data (:func:`with_named_data`);
    ``dpg`` data per group, ``{group: {name: values}}`` (each written as one row, as trx-python keeps it).
    """
    import nibabel as nib
    from trx import trx_file_memmap as tmm

    reference = str(source_trk(source))
    tractogram = nib.streamlines.load(reference).tractogram
    if named:
        tractogram = with_named_data(tractogram)
    dtypes = {"positions": positions, "offsets": offsets, "dpv": dict(dpv or {}), "dps": dict(dps or {})}
    trx = tmm.TrxFile.from_tractogram(tractogram, reference=reference, dtype_dict=dtypes)
    for name, indices in (groups or {}).items():
        trx.groups[name] = np.asarray(indices)
    for group, arrays in (dpg or {}).items():
        trx.data_per_group[group] = {name: np.asarray(values).reshape(1, -1) for name, values in arrays.items()}
    path = Path(path)
    if storage == "directory":
        tmm.save(trx, str(path))
    else:
        compression = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED}[storage]
        tmm.save(trx, str(path), compression_standard=compression)
    trx.close()
    return path
