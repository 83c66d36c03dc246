"""The four-voice grid: 4 voices x 16th-note ticks, and its flat token order (DESIGN §2).

A grid cell holds a token id: ``REST``, ``HOLD`` (the note of the previous tick goes on) or
``pitch_token(p)`` (a note of MIDI pitch ``p`` starts on this tick). The flat order is
tick-major, voice-minor: S A T B of tick 0, S A T B of tick 1, ...
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

VOICES = ("soprano", "alto", "tenor", "bass")
N_VOICES = 4
TICKS_PER_BEAT = 4  # a 16th-note grid; one beat (a quarter note) is one code
TOKENS_PER_BEAT = TICKS_PER_BEAT * N_VOICES  # 16
METERS = (4, 3)  # beats (quarter notes) per bar that the models are trained on

REST = 0
HOLD = 1
PITCH_OFFSET = 2
VOCAB_SIZE = PITCH_OFFSET + 128


def pitch_token(pitch: int) -> int:
    return PITCH_OFFSET + int(pitch)


def token_pitch(token: int) -> int | None:
    """The MIDI pitch a token starts, or None for REST and HOLD."""
    return int(token) - PITCH_OFFSET if token >= PITCH_OFFSET else None


def token_name(token: int) -> str:
    if token == REST:
        return "REST"
    if token == HOLD:
        return "HOLD"
    return str(token - PITCH_OFFSET)


def vocabulary() -> list[str]:
    """Token id -> name: ["REST", "HOLD", "0", ..., "127"]."""
    return [token_name(t) for t in range(VOCAB_SIZE)]


@dataclass
class Report:
    """What reading a score changed, counted: nothing is changed silently."""

    snapped: int = 0  # notes whose onset or end moved to the 16th grid
    dropped: int = 0  # notes dropped: grace notes, notes beyond four voices, no free tick
    chords: int = 0  # chords inside one part reduced to one note
    folded: int = 0  # pitches folded by octaves into the voice's range
    clipped: int = 0  # MIDI data bytes > 127 clipped
    notes: list[str] = field(default_factory=list)  # human-readable remarks (assumed pickup, ...)

    def add(self, other: "Report") -> None:
        for f in ("snapped", "dropped", "chords", "folded", "clipped"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.notes.extend(other.notes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Grid:
    """Four voices on a 16th grid, aligned so that tick 0 is a bar's downbeat.

    ``pickup_ticks`` REST ticks are padded at the start when the music begins with an
    anacrusis (the pickup is the end of a padded first bar). ``len(tokens)`` is a whole
    number of beats.
    """

    tokens: np.ndarray  # (ticks, 4) int16 token ids
    beats_per_bar: int = 4
    pickup_ticks: int = 0  # REST ticks padded before the first sounding beat
    key: str | None = None  # e.g. "G major", for spelling when written as MusicXML
    source: str = ""
    report: Report = field(default_factory=Report)

    def __post_init__(self) -> None:
        self.tokens = np.asarray(self.tokens, dtype=np.int16)
        assert self.tokens.ndim == 2 and self.tokens.shape[1] == N_VOICES, self.tokens.shape

    @property
    def ticks(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def ticks_per_bar(self) -> int:
        return self.beats_per_bar * TICKS_PER_BEAT

    @property
    def beats(self) -> int:
        return self.ticks // TICKS_PER_BEAT

    @property
    def bars(self) -> int:
        return -(-self.ticks // self.ticks_per_bar)

    def flat(self) -> np.ndarray:
        """Tokens in flat order: (ticks * 4,), tick-major, voice-minor."""
        return self.tokens.reshape(-1)

    def beat_tokens(self) -> np.ndarray:
        """(beats, 16): the tokens of each beat in flat order."""
        return self.tokens[: self.beats * TICKS_PER_BEAT].reshape(self.beats, TOKENS_PER_BEAT)

    def transposed(self, shift: int) -> "Grid":
        t = self.tokens.astype(np.int32)
        is_pitch = t >= PITCH_OFFSET
        t = np.where(is_pitch, t + shift, t)
        if (t[is_pitch] < PITCH_OFFSET).any() or (t[is_pitch] >= VOCAB_SIZE).any():
            raise ValueError(f"transposition by {shift} leaves the MIDI range")
        return dataclasses.replace(self, tokens=t.astype(np.int16), key=None)

    def pitch_span(self) -> list[tuple[int, int] | None]:
        """Per voice (lowest, highest) MIDI pitch started, or None for a silent voice."""
        out = []
        for v in range(N_VOICES):
            col = self.tokens[:, v]
            p = col[col >= PITCH_OFFSET].astype(int) - PITCH_OFFSET
            out.append((int(p.min()), int(p.max())) if p.size else None)
        return out


def validate_tokens(tokens: np.ndarray) -> None:
    """Raise ValueError if a HOLD does not continue a note (it follows a REST or opens the grid)."""
    tokens = np.asarray(tokens)
    for v in range(tokens.shape[1]):
        sounding = False
        for t, tok in enumerate(tokens[:, v]):
            if tok == HOLD and not sounding:
                raise ValueError(f"HOLD without a note in voice {VOICES[v]} at tick {t}")
            sounding = tok != REST


def notes_of_voice(column: np.ndarray) -> list[tuple[int, int, int]]:
    """(onset_tick, end_tick, pitch) of every note in one voice's column of tokens."""
    notes = []
    start = pitch = None
    for t, tok in enumerate(column):
        tok = int(tok)
        if tok == HOLD and start is not None:
            continue
        if start is not None:
            notes.append((start, t, pitch))
            start = pitch = None
        if tok >= PITCH_OFFSET:
            start, pitch = t, tok - PITCH_OFFSET
    if start is not None:
        notes.append((start, len(column), pitch))
    return notes


# --- voice ranges --------------------------------------------------------------------------

def load_ranges() -> list[tuple[int, int]]:
    """Per-voice (min, max) MIDI pitch over the untransposed training chorales (committed)."""
    data = json.loads(resources.files("vqcpc.music").joinpath("ranges.json").read_text())
    return [tuple(data[v]) for v in VOICES]


def fold_into_range(pitch: int, lo: int, hi: int) -> int:
    """Move a pitch by octaves until it lies in [lo, hi] (hi - lo must span an octave)."""
    while pitch < lo:
        pitch += 12
    while pitch > hi:
        pitch -= 12
    return pitch


def fold_grid(grid: Grid, ranges: list[tuple[int, int]]) -> Grid:
    """Fold every pitch outside its voice's range by octaves into it; count them in the report."""
    t = grid.tokens.copy()
    folded = 0
    for v, (lo, hi) in enumerate(ranges):
        col = t[:, v]
        for i in np.nonzero(col >= PITCH_OFFSET)[0]:
            p = int(col[i]) - PITCH_OFFSET
            q = fold_into_range(p, lo, hi)
            if q != p:
                col[i] = pitch_token(q)
                folded += 1
    report = dataclasses.replace(grid.report, notes=list(grid.report.notes))
    report.folded += folded
    return dataclasses.replace(grid, tokens=t, report=report)


def legal_shifts(grid: Grid, ranges: list[tuple[int, int]], shifts=range(-6, 6)) -> list[int]:
    """The transpositions in -6..+5 that keep all four voices inside their ranges (DESIGN §2)."""
    span = grid.pitch_span()
    out = []
    for s in shifts:
        if all(sp is None or (lo <= sp[0] + s and sp[1] + s <= hi) for sp, (lo, hi) in zip(span, ranges)):
            out.append(s)
    return out


def voice_token_mask(ranges: list[tuple[int, int]]) -> np.ndarray:
    """(4, VOCAB_SIZE) bool: the tokens each voice may produce (REST, HOLD, its own range)."""
    mask = np.zeros((N_VOICES, VOCAB_SIZE), dtype=bool)
    mask[:, [REST, HOLD]] = True
    for v, (lo, hi) in enumerate(ranges):
        mask[v, pitch_token(lo): pitch_token(hi) + 1] = True
    return mask
