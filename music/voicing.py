"""Notes -> grid columns: snapping to the 16th grid and assigning notes to S/A/T/B (DESIGN §2).

Two ways to voice notes:
- ``place_voice``: the notes of one known voice (a score part, a MIDI channel or track);
- ``PitchOrderVoicer``: notes of unknown voice, by pitch order per tick with continuity
  (files without four channels/tracks, and live input in the daemon).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .grid import HOLD, N_VOICES, REST, TICKS_PER_BEAT, Report, pitch_token

EPS = 1e-6
# Where an alto / tenor is expected when it has no previous pitch (A4-ish, D4-ish).
DEFAULT_INNER = {1: 64, 2: 57}


@dataclass
class Note:
    """A note in quarter notes from the start of the grid (pickup padding included)."""

    onset: float
    end: float
    pitch: int
    velocity: int = 80


def place_voice(notes: list[Note], n_ticks: int, *, lowest: bool, report: Report) -> np.ndarray:
    """One voice's column of tokens from its notes.

    Notes starting together form a chord: the highest is kept (the lowest in the bass,
    ``lowest=True``). Onsets and ends snap to the nearest tick; a note whose tick is taken
    moves to the nearest free tick inside its own duration, else it is dropped; a note never
    gets zero length; an earlier note ends where the next one starts. Every change is counted.
    """
    col = np.full(n_ticks, REST, dtype=np.int16)
    notes = sorted(notes, key=lambda n: (n.onset, n.pitch if lowest else -n.pitch))
    kept: list[Note] = []
    for n in notes:  # chords: the first of each onset group is the one kept
        if kept and abs(kept[-1].onset - n.onset) < EPS:
            if kept[-1].pitch != n.pitch:
                report.chords += 1
            continue
        kept.append(n)
    placed: list[tuple[int, int, int]] = []  # (onset tick, end tick, pitch)
    prev = -1
    for n in kept:
        on, end = n.onset * TICKS_PER_BEAT, n.end * TICKS_PER_BEAT
        last = min(n_ticks, max(math.ceil(end - EPS), math.floor(on + EPS) + 1))
        free = range(prev + 1, last)
        if not free:
            report.dropped += 1
            continue
        s = min(free, key=lambda t: (abs(t - on), t))
        e = max(round(end), s + 1)
        if abs(s - on) > EPS or abs(e - end) > EPS:
            report.snapped += 1
        placed.append((s, e, n.pitch))
        prev = s
    for i, (s, e, p) in enumerate(placed):
        if i + 1 < len(placed):
            e = min(e, placed[i + 1][0])
        e = min(e, n_ticks)
        col[s] = pitch_token(p)
        col[s + 1: e] = HOLD
    return col


class PitchOrderVoicer:
    """Voices notes by pitch order per tick: bass the lowest, soprano the highest, alto and
    tenor the remaining notes nearest their previous pitches; notes beyond four are dropped
    (and counted once each). Keeps the previous pitches between calls, for live bars."""

    def __init__(self) -> None:
        self.prev_pitch: list[int | None] = [None] * N_VOICES
        self.last_owner: list[int | None] = [None] * N_VOICES  # note index per voice at the last tick

    def voice(self, notes: list[tuple[int, int, int]], n_ticks: int, report: Report,
              held: dict[int, int] | None = None) -> np.ndarray:
        """notes: (onset_tick, end_tick, pitch), ticks in [0, n_ticks) (ends may pass it).

        ``held`` maps a note index to the voice it sounded in just before tick 0 (a note held
        across the bar line): it continues as HOLD in that voice. Returns (n_ticks, 4) tokens.
        """
        tokens = np.full((n_ticks, N_VOICES), REST, dtype=np.int16)
        owner: list[int | None] = [None] * N_VOICES  # note index sounding in each voice
        if held:
            for i, v in held.items():
                owner[v] = i
        dropped: set[int] = set()
        for t in range(n_ticks):
            sounding = [i for i, (s, e, _) in enumerate(notes) if s <= t < e and i not in dropped]
            assign = self._assign(sounding, notes, owner, dropped, report)
            for v in range(N_VOICES):
                i = assign[v]
                if i is None:
                    continue
                pitch = notes[i][2]
                tokens[t, v] = HOLD if owner[v] == i else pitch_token(pitch)
                self.prev_pitch[v] = pitch
            owner = assign
        self.last_owner = owner
        return tokens

    def _assign(self, sounding, notes, owner, dropped, report) -> list[int | None]:
        def order(i):  # by pitch; in a unison, a held note keeps its place (bass side first), a new one goes inside
            return notes[i][2], -owner.index(i) if i in owner else -1.5, i

        by_pitch = sorted(sounding, key=order)
        if len(by_pitch) > N_VOICES:
            lo, hi, inner = by_pitch[0], by_pitch[-1], by_pitch[1:-1]
            inner.sort(key=lambda i: (i not in owner, self._inner_distance(notes[i][2])))
            for i in inner[2:]:
                if i not in dropped:
                    dropped.add(i)
                    report.dropped += 1
            by_pitch = sorted([lo, hi, *inner[:2]], key=order)
        n = len(by_pitch)
        out: list[int | None] = [None] * N_VOICES
        if n == 0:
            return out
        if n == 1:
            i = by_pitch[0]
            if i in owner:
                out[owner.index(i)] = i
            else:
                known = [v for v in range(N_VOICES) if self.prev_pitch[v] is not None]
                v = min(known, key=lambda v: (abs(self.prev_pitch[v] - notes[i][2]), v)) if known else 0
                out[v] = i
            return out
        out[0], out[3] = by_pitch[-1], by_pitch[0]
        if n == 4:
            out[1], out[2] = by_pitch[2], by_pitch[1]
        elif n == 3:
            mid = by_pitch[1]
            if owner[1] == mid or owner[2] == mid:
                v = 1 if owner[1] == mid else 2
            else:
                p = notes[mid][2]
                v = min((1, 2), key=lambda v: (abs(self._expected(v) - p), v))
            out[v] = mid
        return out

    def _expected(self, v: int) -> int:
        p = self.prev_pitch[v]
        return DEFAULT_INNER[v] if p is None else p

    def _inner_distance(self, pitch: int) -> int:
        return min(abs(self._expected(1) - pitch), abs(self._expected(2) - pitch))


def snap_notes(notes: list[Note], n_ticks: int, report: Report) -> list[tuple[int, int, int]]:
    """Notes in quarters -> (onset_tick, end_tick, pitch), never zero length; moves counted."""
    out = []
    for n in notes:
        on, end = n.onset * TICKS_PER_BEAT, n.end * TICKS_PER_BEAT
        s = min(round(on), n_ticks - 1)
        e = max(round(end), s + 1)
        if abs(s - on) > EPS or abs(e - end) > EPS:
            report.snapped += 1
        out.append((s, e, n.pitch))
    return out


def voice_by_pitch_order(notes: list[Note], n_ticks: int, report: Report) -> np.ndarray:
    """All notes of a file with no per-voice channels/tracks -> (n_ticks, 4) tokens."""
    return PitchOrderVoicer().voice(snap_notes(notes, n_ticks, report), n_ticks, report)
