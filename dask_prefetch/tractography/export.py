"""Back to the ecosystem: a tractogram that fits in memory as nibabel's ``Tractogram`` or dipy's ``StatefulTractogram``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..formats import StreamlineChunk, TractogramHeader


def to_nibabel(chunk: StreamlineChunk) -> Any:
    """A :class:`nibabel.streamlines.Tractogram` of ``chunk``: RAS+ mm streamlines and their named data.

    The streamlines are already in RAS+ mm, so ``affine_to_rasmm`` is the identity (nibabel's
    meaning: what brings them to RAS+ mm). Per-point data become ``ArraySequence`` s aligned with
    the streamlines, per-streamline data ``(n_streamlines, k)`` arrays, under their names.
    """
    from nibabel.streamlines import ArraySequence, Tractogram

    def sequence(flat: np.ndarray) -> ArraySequence:
        seq = ArraySequence()
        seq._data, seq._offsets, seq._lengths = flat, chunk.offsets, chunk.lengths
        return seq

    return Tractogram(
        streamlines=sequence(chunk.points),
        data_per_point={name: sequence(values) for name, values in chunk.data_per_point.items()},
        data_per_streamline=dict(chunk.data_per_streamline),
        affine_to_rasmm=np.eye(4),
    )


def to_sft(chunk: StreamlineChunk, header: TractogramHeader, reference: Any = None) -> Any:
    """A dipy :class:`~dipy.io.stateful_tractogram.StatefulTractogram` of ``chunk``, in RAS+ mm.

    Parameters
    ----------
    chunk
        The streamlines and their named data.
    header
        Their file's header: the reference space when ``reference`` is None (TRK and TRX carry
        one; TCK does not).
    reference
        Anything dipy takes as a reference (a NIfTI path or image, a TRK or TRX path, a header...).

    Raises
    ------
    ImportError
        Without dipy (``pip install dipy``).
    ValueError
        For a TCK file without ``reference``: TCK stores no reference space.
    """
    try:
        from dipy.io.stateful_tractogram import Space, StatefulTractogram
    except ImportError as e:
        raise ImportError(f"to_sft needs dipy: pip install dipy ({e})") from e
    if reference is None:
        reference = reference_of(header)
    tractogram = to_nibabel(chunk)
    return StatefulTractogram(
        tractogram.streamlines,
        reference,
        Space.RASMM,
        data_per_point=tractogram.data_per_point,
        data_per_streamline=tractogram.data_per_streamline,
    )


def reference_of(header: TractogramHeader) -> dict:
    """The header as dipy takes a reference: a TRK header dict, or a TRX ``header.json`` dict.

    Raises
    ------
    ValueError
        For TCK, which stores no reference space.
    """
    if header.format == "trk":
        return {k: v for k, v in header.fields.items() if not k.startswith("_")}
    if header.format == "trx":
        return {k: header.fields[k] for k in ("VOXEL_TO_RASMM", "DIMENSIONS", "NB_VERTICES", "NB_STREAMLINES")}
    raise ValueError(
        f"a {header.format.upper()} file stores no reference space: pass reference= (the NIfTI image the "
        "streamlines were tracked in, for example)"
    )
