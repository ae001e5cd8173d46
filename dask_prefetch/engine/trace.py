"""An opt-in tracer of prefetching, and the timeline plot of what it saw.

::

    from dask_prefetch.engine.trace import Tracer

    with Tracer() as trace:                     # files opened in this block are traced
        with fs.open(paths, header_bytes=1000) as f:
            nibabel.streamlines.TrkFile.load(f)
    trace.plot("read.png")                      # needs matplotlib (pip install dask-prefetch[plot])

Each block's life is recorded: *requested* (tier space reserved, GETs started), *arrived* (every
byte local), then *consumed* (the reader moved past it: evicted once read), *evicted* (given up
before being read: skipped by a seek, or beyond a shared budget's fair share) or *closed*. Reader stalls are recorded
with their start and end. When no tracer is active, the engine's cost is one ``is None`` test per
event.
"""

from __future__ import annotations

import contextvars
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .layout import Layout

_current: contextvars.ContextVar[Tracer | None] = contextvars.ContextVar("dask_prefetch_tracer", default=None)


@dataclass
class BlockLife:
    """One block of one traced file (times in seconds since the tracer started)."""

    file: int
    block: int
    tier: int | None = None
    requested: float | None = None
    arrived: float | None = None
    ended: float | None = None
    how: str | None = None  # "consumed" (read, then evicted), "evicted" (before being read) or "closed"


class Tracer:
    """Record what the prefetch engines of files opened while it is active do, over time."""

    def __init__(self) -> None:
        self.events: list[tuple[float, int, str, int, Any]] = []  # (t, file, kind, block, detail)
        self.files: list[str] = []
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._token: contextvars.Token | None = None

    def __enter__(self) -> Tracer:
        self._token = _current.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None

    def new_file(self, name: str) -> int:
        """Register a traced file; returns its number in :attr:`files`."""
        with self._lock:
            self.files.append(name)
            return len(self.files) - 1

    def add(self, file: int, kind: str, block: int, detail: Any = None, at: float | None = None) -> None:
        """Record an event now (or ``at``, a ``time.monotonic()``); a stall's detail is its start."""
        t = (time.monotonic() if at is None else at) - self._t0
        if kind == "stall":
            detail = detail - self._t0
        with self._lock:
            self.events.append((t, file, kind, block, detail))

    def blocks(self) -> list[BlockLife]:
        """Every block's life, in the order blocks were requested."""
        lives: dict[tuple[int, int], BlockLife] = {}
        order: list[BlockLife] = []
        with self._lock:
            events = sorted(self.events)
        for t, file, kind, block, detail in events:
            if kind == "requested":
                life = BlockLife(file, block, tier=detail, requested=t)
                lives[(file, block)] = life  # a block fetched again starts a new life
                order.append(life)
            elif (file, block) in lives:
                life = lives[(file, block)]
                if kind == "arrived":
                    life.arrived = t
                elif kind in ("consumed", "evicted", "closed") and life.ended is None:
                    life.ended, life.how = t, kind
        return order

    def stalls(self) -> list[tuple[float, float, int, int]]:
        """``(start, end, file, block)`` of every wait of a reader for bytes."""
        with self._lock:
            return [(detail, t, file, block) for t, file, kind, block, detail in self.events if kind == "stall"]

    def plot(self, path: str | None = None, title: str | None = None, layout: Layout | None = None) -> Any:
        """A timeline: a row per block, downloading (light) then held per tier (dark), stalls in red.

        Parameters
        ----------
        path
            Where to save it (PNG, ...); None: only return the figure.
        title
            The title's first line; the second always says what the picture is: one traced read in
            this process (not a cluster job, whose tasks each read their own partition).
        layout
            The traced file's :class:`~dask_prefetch.engine.layout.Layout` (``f.layout``): rows are then
            grouped by shard, with a line and the shard's name at each boundary. Boundaries between
            traced files are marked in any case.

        Returns
        -------
        matplotlib.figure.Figure
        """
        try:
            import matplotlib

            if path is not None:
                matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError("Tracer.plot needs matplotlib: pip install 'dask-prefetch[plot]'") from e
        lives = self.blocks()
        end = max([t for t, *_ in self.events], default=0.0)
        fig, ax = plt.subplots(figsize=(12, max(3.0, 0.18 * len(lives) + 1.5)))
        colors = plt.get_cmap("tab10")
        for row, life in enumerate(lives):
            start = life.requested or 0.0
            arrived = life.arrived if life.arrived is not None else (life.ended or end)
            ax.barh(row, arrived - start, left=start, height=0.7, color=colors(life.tier or 0), alpha=0.3)
            if life.arrived is not None:
                held = (life.ended if life.ended is not None else end) - life.arrived
                ax.barh(row, held, left=life.arrived, height=0.7, color=colors(life.tier or 0), alpha=0.9)
            if life.how == "evicted":
                ax.plot(life.ended, row, "kx")
        for row, name in self._boundaries(lives, layout):
            ax.axhline(row - 0.5, color="0.4", linewidth=0.8, linestyle="--", gid="shard-boundary")
            ax.annotate(name, (1.0, row - 0.5), xycoords=("axes fraction", "data"), xytext=(4, 0),
                        textcoords="offset points", ha="left", va="center", fontsize="x-small", color="0.3")  # fmt: skip
        rows = {(life.file, life.block): row for row, life in enumerate(lives)}
        for start, stop, file, block in self.stalls():
            row = rows.get((file, block))
            if row is not None:
                ax.plot([start, stop], [row, row], color="red", linewidth=3)
        for tier in sorted({life.tier or 0 for life in lives}):
            ax.barh([], [], color=colors(tier), label=f"held in tier {tier} (light: downloading)")
        ax.plot([], [], color="red", linewidth=3, label="reader waiting")
        ax.plot([], [], "kx", label="evicted before being read")
        ax.set_xlabel("seconds")
        ax.set_ylabel("block (in request order)")
        ax.invert_yaxis()
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize="small")  # the right: shard names
        what = self.files[0] if len(self.files) == 1 else f"{len(self.files)} files"
        ax.set_title(f"{title or what}\none traced read in a single process (not a cluster job)", fontsize="medium")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=100)
            plt.close(fig)
        return fig


    def _boundaries(self, lives: list[BlockLife], layout: Layout | None) -> list[tuple[int, str]]:
        """``(first row, name)`` where a new file, or a new shard of file 0 (with ``layout``), starts."""
        marks: list[tuple[int, str]] = []
        previous: tuple[int, str] | None = None
        for row, life in enumerate(lives):
            shard = self.files[life.file] if life.file < len(self.files) else str(life.file)
            if layout is not None and life.file == 0 and life.block < len(layout.blocks):
                shard = layout.blocks[life.block].shard.path
            if previous is not None and (life.file, shard) != previous:
                marks.append((row, shard.rsplit("/", 1)[-1]))
            previous = (life.file, shard)
        return marks


def current_tracer() -> Tracer | None:
    """The tracer active in this context, or None."""
    return _current.get()
