"""The one exception of the parsers."""

from __future__ import annotations

from typing import Sequence


class CorruptTractogramError(ValueError):
    """A tractogram's bytes do not follow its format.

    The message names the file (or shard) and the byte offset where parsing failed.
    """

    def __init__(self, name: str, offset: int, problem: str) -> None:
        super().__init__(f"{name}: at byte {offset}: {problem}")
        self.name = name
        self.offset = offset
        self.problem = problem


def in_shard(
    error: CorruptTractogramError, paths: Sequence[str], sizes: Sequence[int], skip: int
) -> CorruptTractogramError:
    """``error``, raised at an offset of a stream of ``paths`` read end to end (``skip`` bytes of each
    after the first left out), told as the shard and the offset in it where parsing failed.

    An error that already names another object than the stream's first is about that object itself
    (a shard's own header, say) and is returned as it is.
    """
    if error.name != paths[0]:
        return error
    start = 0
    for i, (path, size) in enumerate(zip(paths, sizes)):
        head = skip if i else 0
        if error.offset < start + size - head or i == len(paths) - 1:
            return CorruptTractogramError(path, error.offset - start + head, error.problem)
        start += size - head
    return error
