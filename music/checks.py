"""Musical checks on four-voice grids (DESIGN §7), numpy only.

Every check reads a grid's tokens, (ticks, 4) in S A T B order, and counts plainly defined events
so that the same rule measures a variation and Bach's own chorales:

- ``parallels``: parallel fifths and octaves (unisons and compound intervals included). At every
  tick where a note starts, each pair of voices is compared with the sonority of the previous such
  tick: both voices moved, in the same direction, and the interval between them is a perfect fifth
  or octave modulo 12 at both ticks, the same one. A rest in either voice breaks the comparison.
- ``crossings``: a voice sounding strictly below the next lower voice (S<A, A<T or T<B); counted
  once per crossing, at the tick where it begins.
- ``out_of_range``: notes started outside the textbook SATB ranges (``TEXTBOOK_RANGES``).
- ``onset_density``: notes started per beat (all voices together).
- ``pitch_class_distance``: total-variation distance between two duration-weighted pitch-class
  distributions (0 = equal, 1 = disjoint).
- ``longest_template_run``: the longest run of beats equal to the template's up to one
  transposition for the run (same onsets, same sounding pitches shifted).
- ``CopyIndex.longest_copy``: the longest run of beats whose sounding pitches equal a stretch of a
  reference chorale's (the training set) up to one transposition; beats where nothing starts match
  anything and do not extend a run.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .grid import HOLD, N_VOICES, PITCH_OFFSET, REST, TICKS_PER_BEAT

SILENT = -1
# textbook SATB ranges (MIDI): S C4-G5, A G3-D5, T C3-G4, B E2-C4
TEXTBOOK_RANGES = ((60, 79), (55, 74), (48, 67), (40, 60))
PERFECT = (0, 7)  # interval classes of octave/unison and fifth


def sounding(tokens: np.ndarray) -> np.ndarray:
    """(ticks, 4) MIDI pitch sounding in each voice at each tick (started or held), SILENT if none."""
    tokens = np.asarray(tokens).astype(np.int32)
    ticks = np.arange(len(tokens))[:, None]
    last = np.maximum.accumulate(np.where(tokens != HOLD, ticks, -1), axis=0)  # last REST or onset
    started = np.take_along_axis(tokens, np.maximum(last, 0), axis=0)
    return np.where((last >= 0) & (started >= PITCH_OFFSET), started - PITCH_OFFSET, SILENT).astype(np.int32)


def onsets(tokens: np.ndarray) -> np.ndarray:
    """(ticks, 4) bool: a note starts here."""
    return np.asarray(tokens) >= PITCH_OFFSET


def parallels(tokens: np.ndarray) -> int:
    """Parallel fifths/octaves between any two voices (see the module's definition)."""
    snd, ons = sounding(tokens), onsets(tokens)
    events = np.nonzero(ons.any(axis=1))[0]
    count = 0
    for prev, cur in zip(events, events[1:]):
        a, b = snd[prev], snd[cur]
        for i in range(N_VOICES):
            for j in range(i + 1, N_VOICES):
                if SILENT in (a[i], a[j], b[i], b[j]):
                    continue
                mi, mj = b[i] - a[i], b[j] - a[j]
                if mi == 0 or mj == 0 or (mi > 0) != (mj > 0):
                    continue
                before, after = abs(a[i] - a[j]) % 12, abs(b[i] - b[j]) % 12
                if before == after and before in PERFECT:
                    count += 1
    return count


def crossings(tokens: np.ndarray) -> int:
    """Voice crossings of adjacent voices, each counted at the tick where it begins."""
    snd = sounding(tokens)
    upper, lower = snd[:, :-1], snd[:, 1:]
    crossed = (upper != SILENT) & (lower != SILENT) & (upper < lower)  # (ticks, 3)
    began = crossed & ~np.vstack([np.zeros((1, crossed.shape[1]), bool), crossed[:-1]])
    return int(began.sum())


def out_of_range(tokens: np.ndarray, ranges=TEXTBOOK_RANGES) -> int:
    """Notes started outside each voice's (low, high) range, both ends inclusive."""
    tokens = np.asarray(tokens)
    count = 0
    for v, (lo, hi) in enumerate(ranges):
        col = tokens[:, v]
        p = col[col >= PITCH_OFFSET].astype(int) - PITCH_OFFSET
        count += int(((p < lo) | (p > hi)).sum())
    return count


def onset_density(tokens: np.ndarray, skip_beats: int = 0) -> float:
    """Notes started per beat, over the beats after ``skip_beats`` (a padded pickup)."""
    t = np.asarray(tokens)[skip_beats * TICKS_PER_BEAT:]
    beats = len(t) / TICKS_PER_BEAT
    return float(onsets(t).sum() / beats) if beats else 0.0


def pitch_class_histogram(tokens: np.ndarray) -> np.ndarray:
    """(12,) share of sounding voice-ticks in each pitch class (zeros if nothing sounds)."""
    snd = sounding(tokens)
    pcs = snd[snd != SILENT] % 12
    h = np.bincount(pcs, minlength=12).astype(float)
    return h / h.sum() if h.sum() else h


def pitch_class_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance of two grids' pitch-class distributions."""
    return float(0.5 * np.abs(pitch_class_histogram(a) - pitch_class_histogram(b)).sum())


def _beat_rows(tokens: np.ndarray):
    """Per beat: sounding pitches (beats, 16) and whether a note starts (beats,)."""
    t = np.asarray(tokens)
    beats = len(t) // TICKS_PER_BEAT
    t = t[: beats * TICKS_PER_BEAT]
    snd = sounding(t).reshape(beats, TICKS_PER_BEAT * N_VOICES)
    ons = onsets(t).reshape(beats, TICKS_PER_BEAT * N_VOICES)
    return snd, ons


def _longest_true_run(ok: np.ndarray) -> int:
    best = run = 0
    for x in ok:
        run = run + 1 if x else 0
        best = max(best, run)
    return best


def longest_template_run(variation: np.ndarray, template: np.ndarray, skip_beats: int = 0,
                         shifts=range(-11, 12)) -> int:
    """Longest run of beats (after ``skip_beats``) where the variation equals the template
    transposed by one interval for the whole run: the same onsets, the same sounding pitches."""
    sv, ov = _beat_rows(variation)
    st, ot = _beat_rows(template)
    n = min(len(sv), len(st))
    sv, ov, st, ot = sv[skip_beats:n], ov[skip_beats:n], st[skip_beats:n], ot[skip_beats:n]
    same_onsets = (ov == ot).all(axis=1)
    silent_v, silent_t = sv == SILENT, st == SILENT
    best = 0
    for s in shifts:
        equal = (silent_v == silent_t) & (silent_v | (sv == st + s))
        best = max(best, _longest_true_run(same_onsets & equal.all(axis=1)))
    return best


class CopyIndex:
    """Reference chorales' beats keyed by their sounding-pitch shape (transposition-free)."""

    def __init__(self, grids):
        self.lengths: list[int] = []
        self.index: dict[bytes, list[tuple[int, int, int]]] = defaultdict(list)
        for c, tokens in enumerate(grids):
            snd, _ = _beat_rows(tokens)
            self.lengths.append(len(snd))
            for j, row in enumerate(snd):
                key, low = _shape(row)
                if key is not None:
                    self.index[key].append((c, j, low))

    def longest_copy(self, tokens: np.ndarray, skip_beats: int = 0) -> int:
        """The longest run of beats of ``tokens`` (after ``skip_beats``) whose sounding pitches
        equal consecutive beats of one reference chorale, transposed by one interval throughout.
        A beat where no note starts matches anything and does not extend a run."""
        snd, ons = _beat_rows(tokens)
        live: dict[tuple[int, int, int], int] = {}  # (chorale, its beat, shift) -> run length
        best = 0
        for i in range(skip_beats, len(snd)):
            if not ons[i].any():  # carries every run one beat on, uncounted
                live = {(c, j + 1, s): n for (c, j, s), n in live.items() if j + 1 < self.lengths[c]}
                continue
            key, low = _shape(snd[i])
            nxt = {}
            for c, j, ref_low in self.index.get(key, ()) if key is not None else ():
                s = low - ref_low
                nxt[(c, j, s)] = live.get((c, j - 1, s), 0) + 1
            live = nxt
            if live:
                best = max(best, max(live.values()))
        return best


def _shape(row: np.ndarray):
    """A beat's sounding pitches relative to its lowest one (bytes key), and that lowest pitch."""
    sounding_ = row[row != SILENT]
    if sounding_.size == 0:
        return None, 0
    low = int(sounding_.min())
    rel = np.where(row == SILENT, -1, row - low).astype(np.int8)
    return rel.tobytes(), low
