"""How the objects of a tractogram become partitions: the layout, inferred or stated, and the groups.

A list of objects is either **complete files** (each TRK or TCK file read with its own header) or
**sharded** (a lone 1000-byte TRK header in front of shards read behind it as one stream). The
layout is inferred only when the objects' first bytes leave no doubt (:func:`plan_layout`);
otherwise it is stated (``layout=``, ``header_bytes=``) or refused with an error naming the
objects. :func:`sharded_partitions` and :func:`file_partitions` then cut contiguous groups
balanced by bytes (:func:`contiguous_groups`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from fsspec.asyn import _run_coros_in_chunks, sync
from s3fs import S3FileSystem

from ..fs.s3 import S3PrefetchFileSystem
from .partitions import Partition
from ..formats import CorruptTractogramError, TractogramHeader, detect_format
from ..formats.compression import gunzip_prefix, is_gzip
from ..formats.tck import MAGIC as TCK_MAGIC
from ..formats.trk import HEADER_SIZE, parse_trk_header, same_records

__all__ = [
    "MixedDataWarning",
    "Plan",
    "contiguous_groups",
    "file_partitions",
    "plan_layout",
    "read_ranges",
    "sharded_partitions",
]


class MixedDataWarning(UserWarning):
    """The files of one tractogram disagree on their named data (TRK scalars / properties)."""


@dataclass(frozen=True)
class Plan:
    """How the objects are laid out: ``kind`` ``"files"`` or ``"sharded"``, the order to read them in
    (for ``"sharded"``, the global header first), the shards' ``header_bytes``, each object's
    named data (files), the n_count each shard's own header claims (shards detected by them),
    ``first_head``: the first bytes (at most 1000) of the object read first, when the plan read them,
    and ``shard_heads``: what the tasks check of the shards' first bytes when the plan read only a
    sample of them (``"trk"`` or ``"bare"``, see ``shard_heads.py``; "" when it read them all), and
    ``packed``: the objects found gzip-compressed by their first bytes (indices, as ``order``)."""

    kind: str
    order: list[int]
    header_bytes: int = 0
    data: tuple[Any, ...] = ()
    shard_counts: tuple[int, ...] = ()
    first_head: bytes | None = None
    shard_heads: str = ""
    packed: tuple[int, ...] = ()


def plan_layout(
    fs: Any,
    paths: list[str],
    sizes: list[int],
    infos: list[dict],
    layout: str | None,
    header_bytes: int | None,
    one_glob: bool,
    known: dict[int, bytes] | None = None,
) -> Plan:
    """Decide the layout (see :func:`read_tractogram`'s Notes), reading objects' first bytes only if needed.

    ``known``: first bytes (at most 1000) already read, by position, not read again.
    """
    n = len(paths)
    natural = list(range(n))
    if n == 1:
        if layout == "sharded":
            raise ValueError(f"layout='sharded' needs a global header and at least one shard, got only {paths[0]!r}")
        return Plan("files", natural)
    if header_bytes or (layout == "sharded" and header_bytes == 0):  # stated: no need to look at the shards
        lone = [i for i, size in enumerate(sizes) if size == HEADER_SIZE]
        first = lone[0] if one_glob and len(lone) == 1 else 0  # a glob matched a header and its shards
        _check_header_bytes(header_bytes, [p for i, p in enumerate(paths) if i != first], sizes)
        return Plan("sharded", [first] + [i for i in natural if i != first], header_bytes)
    known = dict(known or {})  # first bytes already read, by object
    if layout is None and header_bytes is None:
        sampled = _sampled_plan(fs, paths, sizes, infos, one_glob, known)
        if sampled is not None:
            return sampled
    missing = [i for i in natural if i not in known]  # a sample that disagreed is not read again
    known.update(zip(missing, _heads(fs, [paths[i] for i in missing], [sizes[i] for i in missing],
                                     [infos[i] for i in missing])))  # fmt: skip
    heads = [known[i] for i in natural]
    plan = _plan_from_heads(paths, sizes, heads, layout, header_bytes, one_glob)
    return replace(plan, first_head=heads[plan.order[0]])


#: Shards whose first bytes a graph build reads to infer a sharded layout; the tasks check the others'.
SAMPLE = 8


def sample_positions(n: int) -> list[int]:
    """Which of ``n`` shards (positions, in order) a graph build reads the first bytes of: the first, the
    last and others evenly spread between, :data:`SAMPLE` in all (every one if there are no more)."""
    if n <= SAMPLE:
        return list(range(n))
    return sorted({round(k * (n - 1) / (SAMPLE - 1)) for k in range(SAMPLE)})


def _sampled_plan(
    fs: Any, paths: list[str], sizes: list[int], infos: list[dict], one_glob: bool, known: dict[int, bytes]
) -> Plan | None:
    """A sharded layout inferred from the global header and :data:`SAMPLE` shards, or None: read them all.

    The first bytes it reads are left in ``known`` (by object), for the caller not to read them again.

    The candidate global header is the first object of exactly 1000 bytes (in a list, the first
    object). If it is a lone TRK header (``n_count`` 0) and the sampled shards (the first, the last
    and others spread between) are all bodies only, or all TRK files whose headers read as the
    global one's, the plan says so and every task checks that its own shards start the same way
    (``Partition.shard_heads``); anything else (fewer shards than a sample, a compressed object, a
    mix) is decided from every object's first bytes, as before.
    """
    lone = [i for i, size in enumerate(sizes) if size == HEADER_SIZE]
    if not lone or (not one_glob and lone[0] != 0) or len(paths) - 1 <= SAMPLE:
        return None
    g = lone[0]
    rest = [i for i in range(len(paths)) if i != g]
    look = [g, *(rest[k] for k in sample_positions(len(rest)))]
    unread = [i for i in look if i not in known]
    known.update(zip(unread, _heads(fs, [paths[i] for i in unread], [sizes[i] for i in unread],
                                    [infos[i] for i in unread])))  # fmt: skip
    heads = [known[i] for i in look]
    if any(is_gzip(h) for h in heads):
        return None
    first, *sampled = _kinds(heads, [paths[i] for i in look])
    if not (_is_header(first) and not first.nb_streamlines):
        return None
    if all(k is None for k in sampled):
        return Plan("sharded", [g, *rest], 0, first_head=heads[0], shard_heads="bare")
    if all(_is_header(k) and same_records(k, first) for k in sampled) and min(sizes[i] for i in rest) >= HEADER_SIZE:
        return Plan("sharded", [g, *rest], HEADER_SIZE, first_head=heads[0], shard_heads="trk")
    return None


def _plan_from_heads(
    paths: list[str], sizes: list[int], heads: list[bytes], layout: str | None, header_bytes: int | None, one_glob: bool
) -> Plan:
    """The layout from every object's first bytes, ``heads`` (``header_bytes`` not stated, or 0)."""
    natural = list(range(len(paths)))
    packed = [i for i, head in enumerate(heads) if is_gzip(head)]
    heads = [gunzip_prefix(h, HEADER_SIZE, p) if i in packed else h for i, (h, p) in enumerate(zip(heads, paths))]
    kinds = _kinds(heads, paths)
    if packed and layout == "sharded":
        raise ValueError(
            f"layout='sharded': {paths[packed[0]]!r} is gzip-compressed; a global header's shards must be "
            "uncompressed (a compressed file is read whole: layout='files')"
        )
    if layout == "sharded":
        return _stated_sharded(paths, sizes, kinds, one_glob)
    if layout is None and header_bytes is None and not packed:  # a compressed object is a complete file
        lone = [i for i, k in enumerate(kinds) if sizes[i] == HEADER_SIZE and _is_header(k) and not k.nb_streamlines]
        lone = lone if one_glob or 0 in lone else []  # a list says its order: the header first
        if lone:  # more than one: the others are empty shards, or it is not sharded (checked below)
            g = lone[0]
            rest = [i for i in natural if i != g]
            if all(kinds[i] is None for i in rest):  # bare bodies: only readable behind the header
                return Plan("sharded", [g] + rest, 0)
            if all(_is_header(kinds[i]) and same_records(kinds[i], kinds[g]) for i in rest):
                counts = tuple(kinds[i].nb_streamlines or 0 for i in rest)
                return Plan("sharded", [g] + rest, HEADER_SIZE, shard_counts=counts)
        _refuse_bodies(paths, kinds, lone)
    for k in kinds:
        if isinstance(k, CorruptTractogramError):
            raise k
    for path, k, head in zip(paths, kinds, heads):
        if k is None:
            detect_format(head, path)  # raises, naming the object
    data = tuple(k.data_fields() if _is_header(k) else ((), ()) for k in kinds)
    return Plan("files", natural, data=data, packed=tuple(packed))


def _stated_sharded(paths: list[str], sizes: list[int], kinds: list[Any], one_glob: bool) -> Plan:
    """``layout="sharded"`` without ``header_bytes``: find the global header and whether shards have one."""
    lone = [i for i, k in enumerate(kinds) if sizes[i] == HEADER_SIZE and _is_header(k)]
    if one_glob and len(lone) != 1:
        found = ", ".join(repr(paths[i]) for i in lone[:5]) or "none"
        raise ValueError(
            f"layout='sharded' needs exactly one lone {HEADER_SIZE}-byte TRK header among the objects, found {found}: "
            "list the objects with the global header first"
        )
    g = lone[0] if one_glob else 0
    if not _is_header(kinds[g]) or sizes[g] != HEADER_SIZE:
        raise ValueError(
            f"{paths[g]}: with layout='sharded' the first object must be a lone {HEADER_SIZE}-byte TRK header "
            f"(it has {sizes[g]} bytes; every partition reads it)"
        )
    rest = [i for i in range(len(paths)) if i != g]
    with_header = [i for i in rest if kinds[i] is not None]
    if not with_header:
        return Plan("sharded", [g] + rest, 0)
    if len(with_header) < len(rest):
        bare = next(i for i in rest if kinds[i] is None)
        raise ValueError(
            f"layout='sharded': {paths[with_header[0]]!r} starts with a tractogram header but {paths[bare]!r} does "
            "not: pass header_bytes to say how many bytes every shard starts with"
        )
    for i in with_header:
        if not (_is_header(kinds[i]) and same_records(kinds[i], kinds[g])):
            raise ValueError(
                f"layout='sharded': {paths[i]!r} has a header of its own that does not match the global header "
                f"{paths[g]!r} (format, byte order, scalars, properties or affine): it is a complete file "
                "(layout='files'), or pass header_bytes=1000 to read its records with the global header anyway"
            )
    return Plan("sharded", [g] + rest, HEADER_SIZE)


def _refuse_bodies(paths: list[str], kinds: list[Any], lone: list[int]) -> None:
    """``ValueError`` if some objects are not complete files and no single global header explains them."""
    bare = [paths[i] for i, k in enumerate(kinds) if k is None]
    if not bare:
        return
    shown = ", ".join(repr(p) for p in bare[:5]) + (f" and {len(bare) - 5} more" if len(bare) > 5 else "")
    if len(lone) == 1:
        why = f"next to the lone TRK header {paths[lone[0]]!r} and complete files"
    elif lone:
        why = f"and there are {len(lone)} lone TRK headers ({', '.join(repr(paths[i]) for i in lone[:3])})"
    else:
        why = "and no lone 1000-byte TRK header (n_count 0) is in front of them"
    raise ValueError(
        f"{shown} {'is' if len(bare) == 1 else 'are'} not a complete TRK or TCK file (no header at byte 0) {why}: "
        "cannot tell the layout. Say it: layout='sharded' (with the global header first, and header_bytes if the "
        "shards start with bytes to skip), or list only complete files (layout='files')"
    )


_COUNT = slice(988, 992)  # n_count in a TRK header


def _kinds(heads: list[bytes], paths: list[str]) -> list[TractogramHeader | str | CorruptTractogramError | None]:
    """What every object is by its first bytes (:func:`_kind`), each distinct TRK header parsed once.

    Shards written by one writer have headers that differ in ``n_count`` alone; parsing each one
    (nibabel's affine and orientation checks, about 1 ms) would cost more than the rest of the
    plan. A header equal to one already parsed in every byte but ``n_count`` is that header with
    its own count (one that could not be parsed is parsed anew, so that its error names it).
    """
    parsed: dict[bytes, TractogramHeader] = {}
    kinds: list[TractogramHeader | str | CorruptTractogramError | None] = []
    for head, path in zip(heads, paths):
        key = head[: _COUNT.start] + head[_COUNT.stop :] if len(head) == HEADER_SIZE else None
        known = parsed.get(key) if key is not None else None
        if known is not None:
            count = int(np.frombuffer(head[_COUNT], dtype=known.fields["_endianness"] + "i4")[0])
            if count >= 0:
                fields = {**known.fields, "nb_streamlines": np.int32(count)}
                kinds.append(replace(known, nb_streamlines=count or None, fields=fields))
                continue
        kind = _kind(head, path)
        if key is not None and _is_header(kind):
            parsed[key] = kind
        kinds.append(kind)
    return kinds


def _kind(head: bytes, name: str) -> TractogramHeader | str | CorruptTractogramError | None:
    """What an object is by its first bytes: a TRK header, ``"tck"``, a corrupt TRK header, or None (no header)."""
    if head.startswith(b"TRACK"):
        try:
            return parse_trk_header(head, name)
        except CorruptTractogramError as e:
            return e
    if head.startswith(TCK_MAGIC):
        return "tck"
    return None


def _is_header(kind: Any) -> bool:
    return isinstance(kind, TractogramHeader)


async def _cat_ranges(fs: Any, paths: list[str], ranges: list[tuple[int, int]], infos: list[dict]) -> list[bytes]:
    async def cat(path: str, start: int, end: int, info: dict) -> bytes:
        version = info.get("VersionId")
        kwargs = {"version_id": version} if version and isinstance(fs, (S3FileSystem, S3PrefetchFileSystem)) else {}
        return await fs._cat_file(path, start=start, end=end, **kwargs) if end > start else b""

    coros = [cat(p, a, b, i) for p, (a, b), i in zip(paths, ranges, infos)]
    return await _run_coros_in_chunks(coros, batch_size=64)


def read_ranges(fs: Any, paths: list[str], ranges: list[tuple[int, int]], infos: list[dict]) -> list[bytes]:
    """Bytes ``[start, end)`` of every object (the versions ``infos`` name): concurrent ranged GETs on async stores."""
    if getattr(fs, "async_impl", False):
        found = sync(fs.loop, _cat_ranges, fs, paths, ranges, infos)
        for piece in found:
            if isinstance(piece, BaseException):
                raise piece
        return found
    return [fs.cat_file(p, start=a, end=b) if b > a else b"" for p, (a, b) in zip(paths, ranges)]


def _heads(fs: Any, paths: list[str], sizes: list[int], infos: list[dict]) -> list[bytes]:
    """The first 1000 bytes (fewer if smaller) of every object."""
    return read_ranges(fs, paths, [(0, min(size, HEADER_SIZE)) for size in sizes], infos)


def sharded_partitions(
    paths: list[str], sizes: list[int], probe: bytes, plan: Plan, npartitions: int | None
) -> tuple[TractogramHeader, list[Partition]]:
    """The global header and the ``"bodies"`` partitions of ``paths`` (global header first)."""
    if detect_format(probe, paths[0]) != "trk":
        raise ValueError(f"{paths[0]}: a global header with shards (header_bytes, layout='sharded') is for TRK only")
    if sizes[0] != HEADER_SIZE:
        raise ValueError(
            f"{paths[0]}: with a global header (header_bytes, layout='sharded') the first object must be a lone "
            f"{HEADER_SIZE}-byte TRK header (it has {sizes[0]} bytes; every partition reads it)"
        )
    header = parse_trk_header(probe, paths[0])
    counts = dict(zip(paths[1:], plan.shard_counts))
    size_of = dict(zip(paths, sizes))
    groups = contiguous_groups(paths[1:], sizes[1:], npartitions)
    parts = [
        Partition(
            "bodies",
            (paths[0], *g),
            plan.header_bytes,
            whole=len(groups) == 1,
            nbytes=sum(size_of[p] for p in g),
            sizes=(sizes[0], *(size_of[p] for p in g)),
            shard_counts=tuple(counts[p] for p in g) if counts else (),
            shard_heads=plan.shard_heads,
        )
        for g in groups
    ]
    return header, parts


def file_partitions(paths: list[str], sizes: list[int], data: list[Any], npartitions: int | None) -> list[Partition]:
    """Contiguous groups of complete files, split where their named data changes (and warned about)."""
    distinct = list(dict.fromkeys(data))
    if len(distinct) > 1:
        example = {d: paths[data.index(d)] for d in distinct}
        told = "; ".join(f"{example[d]!r}: {_describe_data(d)}" for d in distinct[:4])
        warnings.warn(
            f"these {len(paths)} files disagree on named data ({told}): partitions are split where it changes, "
            "each chunk carries its own files' scalars/properties (None where they have none), the header "
            "describes the first file; points and lengths come from every file",
            MixedDataWarning,
            stacklevel=3,
        )
    size_of = dict(zip(paths, sizes))
    data_of = dict(zip(paths, data))
    parts = []
    for group in contiguous_groups(paths, sizes, npartitions):
        run: list[str] = []
        for path in group:
            if run and data_of[path] != data_of[run[-1]]:
                parts.append(Partition("files", tuple(run), nbytes=sum(size_of[p] for p in run)))
                run = []
            run.append(path)
        parts.append(Partition("files", tuple(run), nbytes=sum(size_of[p] for p in run)))
    return parts


def _describe_data(data: Any) -> str:
    scalars, properties = data
    said = [
        f"{kind} {', '.join(f'{name} ({columns})' for name, columns in fields)}"
        for kind, fields in (("scalars", scalars), ("properties", properties))
        if fields
    ]
    return "; ".join(said) or "no scalars or properties"


def contiguous_groups(paths: list[str], sizes: list[int], n: int | None) -> list[list[str]]:
    """``n`` contiguous, non-empty groups of paths (default: one per path), balanced by bytes."""
    n = max(1, min(n or len(paths), len(paths)))
    cumulative = np.cumsum(sizes)
    cuts = [0]
    for k in range(1, n):
        cut = int(np.searchsorted(cumulative, cumulative[-1] * k / n, side="right"))
        cuts.append(min(max(cut, cuts[-1] + 1), len(paths) - (n - k)))
    cuts.append(len(paths))
    return [paths[a:b] for a, b in zip(cuts, cuts[1:])]
def _check_header_bytes(header_bytes: int, paths: list[str], sizes: list[int]) -> None:
    """Every shard after the global header holds its ``header_bytes``, or ``ValueError``."""
    for path, size in zip(paths, sizes):
        if header_bytes > size:
            raise ValueError(f"header_bytes={header_bytes} is larger than shard {path!r} ({size} bytes)")
