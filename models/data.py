"""Training data for the encoder and decoder: transposed chorales as beats, and CPC windows."""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vqcpc.music.errors import InputError
from vqcpc.music.grid import Grid, fold_grid, legal_shifts, load_ranges

USER_SUFFIXES = {".mid", ".midi", ".xml", ".musicxml", ".mxl"}


@dataclass
class Sequences:
    """Many grids (chorale x transposition) as one array of beats, sequence by sequence."""

    beats: np.ndarray  # (N, 16) int64 token ids, every sequence's beats back to back
    starts: np.ndarray  # (S,) index of each sequence's first beat
    lengths: np.ndarray  # (S,) beats per sequence
    names: list[str]
    shifts: list[int]
    grids: list[Grid]

    def __len__(self) -> int:
        return len(self.names)

    def sequence(self, s: int) -> np.ndarray:
        return self.beats[self.starts[s]: self.starts[s] + self.lengths[s]]


def build_sequences(named_grids: list[tuple[str, Grid]], *, augment: bool) -> Sequences:
    """Every legal transposition (-6..+5 inside the ranges) when ``augment``, else the grids as
    they are, with pitches outside the ranges folded by octaves (DESIGN §2)."""
    ranges = load_ranges()
    beats, starts, lengths, names, shifts, grids = [], [], [], [], [], []
    at = 0
    for name, grid in named_grids:
        grid = fold_grid(grid, ranges)
        for s in (legal_shifts(grid, ranges) if augment else [0]):
            g = grid.transposed(s) if s else grid
            b = g.beat_tokens().astype(np.int64)
            beats.append(b)
            starts.append(at)
            lengths.append(len(b))
            names.append(name)
            shifts.append(s)
            grids.append(g)
            at += len(b)
    if not beats:
        raise InputError("no training data: no chorale or file produced a sequence")
    return Sequences(np.concatenate(beats), np.array(starts), np.array(lengths), names, shifts, grids)


def corpus_grids(split: str) -> list[tuple[str, Grid]]:
    from vqcpc.music.corpus import corpus_split

    return [(c.name, c.grid) for c in corpus_split(split)]


def user_grids(folder: str | Path) -> dict[str, list[tuple[str, Grid]]]:
    """A folder of the user's four-voice files, split by a hash of each file name (90/10/0):
    every file either trains or validates, the same way every run."""
    from vqcpc.music.io import load

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in USER_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no .mid or .musicxml files found")
    out = {"train": [], "validation": [], "test": []}
    for p in files:
        split = "validation" if zlib.crc32(p.name.encode()) % 10 == 0 else "train"
        out[split].append((p.stem, load(p)))
    if not out["validation"]:
        out["validation"].append(out["train"].pop())
    if not out["train"]:
        raise InputError(f"{folder}: at least two files are needed (one trains, one validates)")
    return out


def data_fingerprint(named: dict[str, list[tuple[str, Grid]]]) -> str:
    h = hashlib.sha256()
    for split in sorted(named):
        for name, g in named[split]:
            h.update(f"{split}:{name}:".encode())
            h.update(g.tokens.tobytes())
    return h.hexdigest()[:16]


class WindowSampler:
    """CPC windows of C + F consecutive beats, and their negatives:
    ``uniform``: beats from the whole set; ``sameseq``: other beats of the same sequence
    (same chorale, same transposition), never one of the window's own future beats."""

    def __init__(self, seqs: Sequences, context: int, future: int, negatives: str, n_neg: int):
        if negatives not in ("uniform", "sameseq"):
            raise InputError(f"unknown negative sampling {negatives!r}; expected uniform or sameseq")
        self.seqs, self.C, self.F, self.kind, self.M = seqs, context, future, negatives, n_neg
        L = context + future
        ok = np.nonzero(seqs.lengths >= L + 1)[0]
        if ok.size == 0:
            raise InputError(f"every sequence is shorter than {L + 1} beats; nothing to train on")
        self.win_seq = np.concatenate([np.full(seqs.lengths[s] - L + 1, s) for s in ok])
        self.win_start = np.concatenate([seqs.starts[s] + np.arange(seqs.lengths[s] - L + 1) for s in ok])

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """-> windows (B, C + F, 16), negatives (B, M, 16) token ids."""
        pick = rng.integers(0, self.win_start.size, batch)
        return self.windows(pick, rng)

    def windows(self, pick: np.ndarray, rng: np.random.Generator):
        L = self.C + self.F
        start = self.win_start[pick]
        idx = start[:, None] + np.arange(L)  # (B, L)
        if self.kind == "uniform":
            neg = rng.integers(0, self.seqs.beats.shape[0], (pick.size, self.M))
        else:
            s = self.win_seq[pick]
            first = self.seqs.starts[s]
            n = self.seqs.lengths[s] - self.F  # beats of the sequence outside the future
            r = (rng.random((pick.size, self.M)) * n[:, None]).astype(np.int64)
            fut = (start - first + self.C)[:, None]
            r = np.where(r >= fut, r + self.F, r)
            neg = first[:, None] + r
        return self.seqs.beats[idx], self.seqs.beats[neg]
