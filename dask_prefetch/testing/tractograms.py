"""Synthetic sharded tractograms, stored the way large ones are: a global header + TRK shards."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

HEADER = 1000


def synthetic_streamlines(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` random walks of 20-200 points (float32, mm, around (50, 50, 50))."""
    rng = np.random.default_rng(seed)
    return [np.cumsum(rng.normal(0, 1, (k, 3)), axis=0).astype(np.float32) + 50 for k in rng.integers(20, 200, n)]


def trk_bytes(streamlines: list[np.ndarray]) -> bytes:
    """A complete TRK file (nibabel's writer, identity affine) holding ``streamlines``."""
    from nibabel.streamlines import Tractogram, TrkFile

    buf = io.BytesIO()
    TrkFile(Tractogram(streamlines, affine_to_rasmm=np.eye(4))).save(buf)
    return buf.getvalue()


def upload_sharded(fs: Any, prefix: str, shards: list[list[np.ndarray]]) -> list[str]:
    """Write ``prefix.trk`` (a lone 1000-byte header, ``n_count`` 0) and one TRK per shard.

    Each shard is a complete TRK file (its own header first), as in 100 GB-1 TB tractograms
    split into objects. Returns the paths, global header first.
    """
    bodies = [trk_bytes(s) for s in shards]
    header = bytearray(bodies[0][:HEADER] if bodies else trk_bytes([])[:HEADER])
    header[988:992] = np.int32(0).tobytes()  # n_count 0: "read to the end"
    paths = [f"{prefix}.trk"]
    fs.pipe(paths[0], bytes(header))
    for i, body in enumerate(bodies):
        paths.append(f"{prefix}.pt{i:03d}")
        fs.pipe(paths[-1], body)
    return paths


def sharded_tractogram(total_mb: float, shards: int, seed: int = 0) -> list[list[np.ndarray]]:
    """Streamlines for ``shards`` shards adding up to about ``total_mb`` MB of TRK."""
    per_shard = max(1, int(total_mb * 1e6 / shards / (110 * 12 + 4)))  # ~110 points of 12 bytes each
    return [synthetic_streamlines(per_shard, seed + i) for i in range(shards)]
