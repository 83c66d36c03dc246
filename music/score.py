"""music21 scores <-> grids: MusicXML files and the Bach chorales shipped with music21."""
from __future__ import annotations

import logging
import re
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import InputError
from .grid import N_VOICES, TICKS_PER_BEAT, VOICES, Grid, Report, notes_of_voice
from .voicing import Note, place_voice

log = logging.getLogger(__name__)

PARTS_HINT = "say which parts are soprano, alto, tenor, bass with --parts S,A,T,B (1-based, e.g. --parts 1,2,3,4)"


def parse_parts_option(text: str | None) -> list[int] | None:
    """'1,2,3,4' -> [0, 1, 2, 3] (0-based part indices for S, A, T, B)."""
    if text is None:
        return None
    try:
        idx = [int(x) - 1 for x in text.replace(" ", "").split(",")]
    except ValueError:
        raise InputError(f"--parts {text!r}: expected four part numbers such as 1,2,3,4") from None
    if len(idx) != N_VOICES or len(set(idx)) != N_VOICES or min(idx) < 0:
        raise InputError(f"--parts {text!r}: expected four different part numbers such as 1,2,3,4")
    return idx


def grid_from_score(score, *, parts: list[int] | None = None, source: str = "") -> Grid:
    """A music21 Score with four parts (or four chosen by ``parts``) -> Grid."""
    from music21 import key as m21key
    from music21 import meter

    all_parts = list(score.parts)
    names = [p.partName or f"part {i + 1}" for i, p in enumerate(all_parts)]
    if parts is None:
        if len(all_parts) != N_VOICES:
            listing = ", ".join(f"{i + 1}={n}" for i, n in enumerate(names))
            raise InputError(f"{source}: {len(all_parts)} parts found ({listing}), four voices "
                             f"are needed; {PARTS_HINT}")
        parts = list(range(N_VOICES))
    if max(parts) >= len(all_parts):
        raise InputError(f"{source}: --parts names part {max(parts) + 1} but the score has "
                         f"{len(all_parts)} parts ({', '.join(names)})")
    chosen = [all_parts[i] for i in parts]
    sigs = list(score.recurse().getElementsByClass(meter.TimeSignature))
    ts = sigs[0] if sigs else meter.TimeSignature("4/4")
    bar_q = Fraction(ts.barDuration.quarterLength)
    if bar_q.denominator != 1:
        raise InputError(f"{source}: meter {ts.ratioString} is not a whole number of quarter notes")
    report = Report()
    if len({s.ratioString for s in sigs}) > 1:
        report.notes.append(f"meter changes inside the score; all bars read as {ts.ratioString}")
    pad_q = Fraction(0)
    measures = list(chosen[0].getElementsByClass("Measure"))
    if measures:
        m0 = measures[0]
        dur = Fraction(m0.duration.quarterLength)
        if m0.paddingLeft:
            pad_q = Fraction(m0.paddingLeft)
        elif 0 < dur < bar_q and len(measures) > 1:
            pad_q = bar_q - dur
    voice_notes: list[list[Note]] = []
    end_q = Fraction(0)
    for v, part in enumerate(chosen):
        flat = part.flatten()
        end_q = max(end_q, Fraction(flat.highestTime))
        voice_notes.append(_part_notes(flat, float(pad_q), lowest=(v == N_VOICES - 1), report=report))
    n_ticks = _whole_beats(float((pad_q + end_q) * TICKS_PER_BEAT))
    tokens = np.stack([place_voice(notes, n_ticks, lowest=(v == N_VOICES - 1), report=report)
                       for v, notes in enumerate(voice_notes)], axis=1)
    ks = list(score.recurse().getElementsByClass(m21key.KeySignature))
    if ks:
        k = ks[0] if isinstance(ks[0], m21key.Key) else ks[0].asKey("major")
        key_name = f"{k.tonic.name} {k.mode}"
    else:
        key_name = None
    return Grid(tokens, beats_per_bar=int(bar_q), pickup_ticks=int(pad_q * TICKS_PER_BEAT),
                key=key_name, source=source, report=report)


def _whole_beats(ticks: float) -> int:
    ticks = int(np.ceil(ticks - 1e-6))
    return max(TICKS_PER_BEAT, -(-ticks // TICKS_PER_BEAT) * TICKS_PER_BEAT)


def _part_notes(flat, pad_q: float, *, lowest: bool, report: Report) -> list[Note]:
    """Notes of one flattened part, ties merged, grace notes dropped, chords reduced."""
    notes: list[Note] = []
    for el in flat.notes:
        if el.duration.isGrace:
            report.dropped += 1
            continue
        pitches = [p.midi for p in el.pitches]
        if not pitches:
            continue
        if len(pitches) > 1:
            report.chords += 1
        pitch = min(pitches) if lowest else max(pitches)
        on = float(el.offset) + pad_q
        end = on + float(el.duration.quarterLength)
        tie = el.tie.type if el.tie is not None else None
        prev = notes[-1] if notes else None
        if tie in ("stop", "continue") and prev and prev.pitch == pitch and abs(prev.end - on) < 1e-6:
            prev.end = end
            continue
        notes.append(Note(on, end, pitch))
    return notes


# --- grid -> music21 ---------------------------------------------------------------------------

def _spelling(key_name: str | None):
    """Pitch class -> spelled note name, from the key's scale (and its sharps/flats)."""
    from music21 import key as m21key
    from music21 import pitch as m21pitch

    k = m21key.Key(*key_name.split()) if key_name else m21key.Key("C")
    names = {p.pitchClass: p.name for p in k.getScale().getPitches("C4", "B4")}
    flats = k.sharps < 0
    for pc in range(12):
        if pc not in names:
            p = m21pitch.Pitch(midi=60 + pc)
            if flats and p.accidental is not None and p.accidental.name == "sharp":
                p = p.getEnharmonic()
            names[pc] = p.name
    return k, names


def score_from_grid(grid: Grid, title: str | None = None):
    """Grid -> music21 Score: four parts, measures with the pickup as a partial first bar."""
    from music21 import clef, key, meter, metadata, note, pitch, stream, tie

    k, names = _spelling(grid.key)
    score = stream.Score()
    score.metadata = metadata.Metadata(title=title or grid.source or "vqcpc")
    tpb = grid.ticks_per_bar
    clefs = [clef.TrebleClef, clef.TrebleClef, clef.Treble8vbClef, clef.BassClef]
    for v in range(N_VOICES):
        part = stream.Part(id=VOICES[v])
        part.partName = VOICES[v].capitalize()
        notes = notes_of_voice(grid.tokens[:, v])
        for b in range(grid.bars):
            start = max(b * tpb, grid.pickup_ticks if b == 0 else 0)
            stop = min((b + 1) * tpb, grid.ticks)
            m = stream.Measure(number=b if grid.pickup_ticks else b + 1)
            if b == 0:
                m.insert(0, clefs[v]())
                m.insert(0, meter.TimeSignature(f"{grid.beats_per_bar}/4"))
                m.insert(0, key.Key(k.tonic.name, k.mode))
                if start > 0:
                    m.paddingLeft = start / TICKS_PER_BEAT
            t = start
            for (s, e, p) in notes:
                if e <= start or s >= stop:
                    continue
                s2, e2 = max(s, start), min(e, stop)
                if s2 > t:
                    m.append(note.Rest(quarterLength=(s2 - t) / TICKS_PER_BEAT))
                n = note.Note(quarterLength=(e2 - s2) / TICKS_PER_BEAT)
                n.pitch = pitch.Pitch(names[p % 12] + str(p // 12 - 1))
                if n.pitch.midi != p:  # B#/Cb spellings cross the octave number
                    n.pitch = pitch.Pitch(midi=p)
                if s < start and e > stop:
                    n.tie = tie.Tie("continue")
                elif s < start:
                    n.tie = tie.Tie("stop")
                elif e > stop:
                    n.tie = tie.Tie("start")
                m.append(n)
                t = e2
            if t < stop:
                m.append(note.Rest(quarterLength=(stop - t) / TICKS_PER_BEAT))
            if (b + 1) * tpb > grid.ticks:  # a short last bar: not to be filled up with hidden rests
                m.paddingRight = ((b + 1) * tpb - grid.ticks) / TICKS_PER_BEAT
            part.append(m)
        score.insert(0, part)
    return score


def write_musicxml(grid: Grid, path: str | Path) -> Path:
    score = score_from_grid(grid)
    score.makeNotation(inPlace=True)
    return Path(score.write("musicxml", fp=str(path)))


def read_musicxml(path: str | Path, *, parts: list[int] | None = None) -> Grid:
    from music21 import converter

    path = Path(path)
    try:
        score = converter.parse(str(path), format="musicxml")
    except Exception as err:  # music21 raises many kinds; every one means "unreadable file"
        raise InputError(f"{path}: not a readable MusicXML file ({type(err).__name__}: {err})") from err
    if not hasattr(score, "parts") or len(score.parts) == 0:
        raise InputError(f"{path}: no parts found in the score")
    return grid_from_score(score, parts=parts, source=path.name)


# --- the Bach chorales of music21 ------------------------------------------------------------

_BWV = re.compile(r"^(?:bach/)?bwv\s*([0-9]+(?:\.[0-9]+)?(?:-[0-9a-z]+)?)(?:\.mxl)?$", re.IGNORECASE)


def chorale_name(text: str) -> str | None:
    """'bwv269', 'BWV 26.6', 'bach/bwv269' -> 'bwv269' / 'bwv26.6'; None if not a chorale name."""
    m = _BWV.match(text.strip())
    return f"bwv{m.group(1)}" if m else None


def load_chorale(name: str, *, parts: list[int] | None = None) -> Grid:
    """A chorale of the music21 corpus by BWV name, e.g. 'bwv269'."""
    from music21 import corpus

    bwv = chorale_name(name)
    if bwv is None:
        raise InputError(f"{name}: not a chorale name (expected e.g. bwv269)")
    try:
        score = corpus.parse(f"bach/{bwv}")
    except Exception as err:  # music21 raises CorpusException or others for unknown works
        raise InputError(f"{bwv}: no such chorale in the music21 corpus") from err
    return grid_from_score(score, parts=parts, source=bwv)
