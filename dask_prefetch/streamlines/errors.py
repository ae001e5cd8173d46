"""The one exception of the parsers."""

from __future__ import annotations


class CorruptTractogramError(ValueError):
    """A tractogram's bytes do not follow its format.

    The message names the file (or shard) and the byte offset where parsing failed.
    """

    def __init__(self, name: str, offset: int, problem: str) -> None:
        super().__init__(f"{name}: at byte {offset}: {problem}")
        self.name = name
        self.offset = offset
        self.problem = problem
