"""Piano rolls of grids with the code of each beat under them (matplotlib, no screen needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .grid import N_VOICES, TICKS_PER_BEAT, VOICES, Grid, notes_of_voice

COLORS = ("#d1495b", "#edae49", "#00798c", "#30638e")


def plot_grids(rows: list[tuple[str, Grid, list[int] | np.ndarray | None]], path: str | Path,
               max_beats: int | None = 64) -> Path:
    """One piano roll per (title, grid, codes) row, the codes written under their beats."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    beats = max(g.beats for _, g, _ in rows)
    if max_beats:
        beats = min(beats, max_beats)
    width = max(8.0, beats * 0.28)
    fig, axes = plt.subplots(len(rows), 1, figsize=(width, 2.6 * len(rows)), squeeze=False)
    for ax, (title, grid, codes) in zip(axes[:, 0], rows):
        end = beats * TICKS_PER_BEAT
        lo, hi = 127, 0
        for v in range(N_VOICES):
            for s, e, p in notes_of_voice(grid.tokens[:end, v]):
                ax.add_patch(plt.Rectangle((s, p - 0.4), e - s - 0.15, 0.8, color=COLORS[v], lw=0))
                lo, hi = min(lo, p), max(hi, p)
        if hi < lo:
            lo, hi = 60, 72
        for t in range(0, end + 1, TICKS_PER_BEAT):
            bar_line = t % grid.ticks_per_bar == 0
            ax.axvline(t, color="0.3" if bar_line else "0.85", lw=1.0 if bar_line else 0.5, zorder=0)
        if codes is not None:
            for b, c in enumerate(list(codes)[:beats]):
                ax.text(b * TICKS_PER_BEAT + TICKS_PER_BEAT / 2, lo - 3.2, str(int(c)), ha="center", va="center",
                        fontsize=7, family="monospace")
        ax.set_xlim(0, end)
        ax.set_ylim(lo - 5, hi + 2)
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_yticks([])
        ax.set_xticks(range(0, end + 1, grid.ticks_per_bar))
        ax.set_xticklabels([str(i + 1) for i in range(len(range(0, end + 1, grid.ticks_per_bar)))], fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLORS]
    axes[0, 0].legend(handles, VOICES, loc="upper right", fontsize=7, ncol=4)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
