"""Standard MIDI files <-> grids (mido). DESIGN §2 lists the rules kept here."""
from __future__ import annotations

import threading
from collections import defaultdict, deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from .errors import InputError
from .grid import N_VOICES, TICKS_PER_BEAT, Grid, Report, notes_of_voice
from .voicing import Note, place_voice, voice_by_pitch_order

OUT_TICKS_PER_BEAT = 480
DEFAULT_BPM = 90
_clip_lock = threading.Lock()


@dataclass
class _RawNote:
    track: int
    channel: int
    onset: int  # file ticks
    end: int
    pitch: int
    velocity: int


@contextmanager
def _record_clipped(found: list[int]):
    """Let mido clip data bytes > 127 while recording each value it clips (to name them)."""
    from mido.midifiles import midifiles as mf

    original = mf.read_message

    def recording(infile, status_byte, peek_data, delta, clip=False):
        spec = mf.SPEC_BY_STATUS.get(status_byte)
        if spec is None:
            return original(infile, status_byte, peek_data, delta, clip)
        size = spec["length"] - 1 - len(peek_data)
        data = list(peek_data) + mf.read_bytes(infile, size)
        found.extend(b for b in data if b > 127)
        data = [min(b, 127) for b in data]
        return mido.Message.from_bytes([status_byte] + data, time=delta)

    with _clip_lock:
        mf.read_message = recording
        try:
            yield
        finally:
            mf.read_message = original


def _open(path: Path, report: Report) -> mido.MidiFile:
    clipped: list[int] = []
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    if head != b"MThd":
        raise InputError(f"{path}: not a MIDI file ({'empty' if not head else 'it does not start with MThd'})")
    try:
        with _record_clipped(clipped):
            mid = mido.MidiFile(str(path), clip=True)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except EOFError:
        raise InputError(f"{path}: truncated MIDI file (it ends inside a track)") from None
    except (OSError, ValueError, KeyError, IndexError) as err:
        raise InputError(f"{path}: not a readable MIDI file ({err})") from err
    if clipped:
        report.clipped += len(clipped)
        values = ", ".join(f"0x{b:02X}" for b in sorted(set(clipped)))
        report.notes.append(f"{len(clipped)} data byte(s) over 127 ({values}) clipped to 127")
    if mid.ticks_per_beat <= 0:
        div = mid.ticks_per_beat & 0xFFFF
        fps, tpf = 256 - (div >> 8), div & 0xFF
        raise InputError(f"{path}: SMPTE time division ({fps} frames/s, {tpf} ticks/frame) has no "
                         f"beats to put on a grid; export the file with ticks per quarter note (PPQ)")
    if mid.type == 2:
        raise InputError(f"{path}: a type 2 MIDI file (tracks that play one after another); export it as type 0 or 1")
    return mid


def _collect(mid: mido.MidiFile, report: Report):
    """Notes paired first-in-first-out per (track, channel, pitch); time signatures; length."""
    notes: list[_RawNote] = []
    sigs: list[tuple[int, int, int]] = []
    length = 0
    for ti, track in enumerate(mid.tracks):
        now = 0
        has_notes = False
        open_: dict[tuple[int, int], deque] = defaultdict(deque)
        for msg in track:
            now += msg.time
            if msg.type == "time_signature":
                sigs.append((now, msg.numerator, msg.denominator))
            elif msg.type == "note_on" and msg.velocity > 0:
                has_notes = True
                open_[(msg.channel, msg.note)].append((now, msg.velocity))
            elif msg.type in ("note_off", "note_on"):
                q = open_.get((msg.channel, msg.note))
                if q:
                    start, vel = q.popleft()
                    notes.append(_RawNote(ti, msg.channel, start, now, msg.note, vel))
        if has_notes:  # the piece ends where its note tracks end (not a conductor track's meta events)
            length = max(length, now)
        for (ch, pitch), q in open_.items():
            for start, vel in q:
                notes.append(_RawNote(ti, ch, start, max(now, start + 1), pitch, vel))
                report.notes.append(f"note {pitch} on channel {ch + 1} never released; ended at track end")
    sigs = sorted(set(sigs))  # a type 1 file may repeat its signatures in every track
    return notes, sigs, length


def read_midi(path: str | Path, *, pickup: float | None = None) -> Grid:
    """A type 0/1 MIDI file -> Grid. ``pickup``: length of the anacrusis in beats, if known."""
    path = Path(path)
    report = Report()
    mid = _open(path, report)
    raw, sigs, length = _collect(mid, report)
    if not raw:
        raise InputError(f"{path}: no notes in the file")
    tpb = mid.ticks_per_beat
    num, den = (sigs[0][1], sigs[0][2]) if sigs else (4, 4)
    anacrusis_q = 0.0
    first_bar_known = False  # a time-signature change closes the first bar: it says whether there is a pickup
    later = sigs[1:]
    if len(sigs) > 1 and sigs[0][0] == 0 and abs(sigs[1][0] / tpb - sigs[0][1] * 4 / sigs[0][2]) < 1e-6:
        # a first bar in a signature of its own length, closed by the piece's meter: a pickup when shorter
        first_bar = sigs[1][0] / tpb
        num, den = sigs[1][1], sigs[1][2]
        first_bar_known, later = True, sigs[2:]
        if first_bar < num * 4 / den:
            anacrusis_q = first_bar
            report.notes.append(f"pickup of {first_bar:g} beats taken from the time-signature change")
    change = next(((t, n, d) for t, n, d in later if (n, d) != (num, den)), None)
    if change:
        report.notes.append(f"the meter changes to {change[1]}/{change[2]} at beat {change[0] / tpb:g}; "
                            f"the whole file is read in {num}/{den}")
    bar_q = num * 4 / den
    if abs(bar_q - round(bar_q)) > 1e-6:
        raise InputError(f"{path}: meter {num}/{den} is not a whole number of quarter notes")
    bar_q = int(round(bar_q))
    if den != 4:
        report.notes.append(f"meter {num}/{den} read as {bar_q}/4: beats here are quarter notes"
                            + (" (its dotted-quarter beats are not kept)" if den == 8 and num % 3 == 0 else ""))
    last_end_q = max(n.end for n in raw) / tpb
    if pickup is not None:
        if not 0 <= pickup < bar_q:
            raise InputError(f"{path}: --pickup {pickup:g}: a pickup lasts from 0 to under one bar ({bar_q} beats)")
        anacrusis_q = float(pickup)
        report.notes.append(f"pickup of {anacrusis_q:g} beats from --pickup")
    elif not anacrusis_q and not first_bar_known and change is None and min(n.onset for n in raw) == 0:
        # a guess from where the last note ends; not when the meter changes (the end says nothing of
        # the first meter) nor when the music does not start at once (its bar lines are already placed)
        rem = round(last_end_q * TICKS_PER_BEAT) / TICKS_PER_BEAT % bar_q
        if rem:
            anacrusis_q = rem
            report.notes.append(f"assumed a pickup of {rem:g} beats (the last note ends {rem:g} beats "
                                f"into a bar); use --pickup BEATS to say otherwise")
    pad_q = (bar_q - anacrusis_q) % bar_q
    end_q = max(last_end_q, min(length / tpb, last_end_q + bar_q))
    n_ticks = int(np.ceil((pad_q + end_q) * TICKS_PER_BEAT - 1e-6))
    n_ticks = max(TICKS_PER_BEAT, -(-n_ticks // TICKS_PER_BEAT) * TICKS_PER_BEAT)

    def note(n: _RawNote) -> Note:
        return Note(n.onset / tpb + pad_q, n.end / tpb + pad_q, n.pitch, n.velocity)

    channels = sorted({n.channel for n in raw})
    if 9 in channels:
        report.notes.append("channel 10 (General MIDI drums) read as pitches like any other")
    tracks = sorted({n.track for n in raw})
    if len(channels) == N_VOICES or len(tracks) == N_VOICES:
        keyf = (lambda n: channels.index(n.channel)) if len(channels) == N_VOICES else (lambda n: tracks.index(n.track))
        per_voice: list[list[Note]] = [[] for _ in range(N_VOICES)]
        for n in raw:
            per_voice[keyf(n)].append(note(n))
        if len(channels) != N_VOICES:
            report.notes.append("voices taken from the four tracks, in file order")
        tokens = np.stack([place_voice(per_voice[v], n_ticks, lowest=(v == N_VOICES - 1), report=report)
                           for v in range(N_VOICES)], axis=1)
    else:
        report.notes.append(f"{len(channels)} channel(s), {len(tracks)} track(s) with notes: "
                            f"voices assigned by pitch order")
        tokens = voice_by_pitch_order([note(n) for n in raw], n_ticks, report)
    return Grid(tokens, beats_per_bar=bar_q, pickup_ticks=int(round(pad_q * TICKS_PER_BEAT)),
                source=path.name, report=report)


def _anacrusis_signature(ticks: int) -> tuple[int, int]:
    """A time signature whose one bar lasts ``ticks`` sixteenths (the written pickup bar)."""
    if ticks % 4 == 0:
        return ticks // 4, 4
    if ticks % 2 == 0:
        return ticks // 2, 8
    return ticks, 16


def midi_from_grid(grid: Grid, *, bpm: float = DEFAULT_BPM, velocity: int | np.ndarray = 80,
                   channels=(0, 1, 2, 3)) -> mido.MidiFile:
    """Grid -> type 1 MIDI file: a conductor track, then one track per voice on its channel.

    The padded pickup is not written: the file starts at the anacrusis, whose partial bar is
    written as a time signature of its own length followed by the meter. Without a pickup the
    meter is written again at bar 2, so that a reader does not guess a pickup from the end."""
    step = OUT_TICKS_PER_BEAT // TICKS_PER_BEAT
    mid = mido.MidiFile(type=1, ticks_per_beat=OUT_TICKS_PER_BEAT)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    start = grid.pickup_ticks
    anacrusis = (grid.ticks_per_bar - start) if start else 0
    if anacrusis:
        n, d = _anacrusis_signature(anacrusis)
        conductor.append(mido.MetaMessage("time_signature", numerator=n, denominator=d, time=0))
        conductor.append(mido.MetaMessage("time_signature", numerator=grid.beats_per_bar,
                                          denominator=4, time=anacrusis * step))
    else:  # the meter again at bar 2 says that the first bar is full: no pickup to guess on reading
        for t in (0, grid.ticks_per_bar * step):
            conductor.append(mido.MetaMessage("time_signature", numerator=grid.beats_per_bar, denominator=4, time=t))
    mid.tracks.append(conductor)
    end = (grid.ticks - start) * step
    for v in range(N_VOICES):
        track = mido.MidiTrack()
        events = []
        for s, e, p in notes_of_voice(grid.tokens[:, v]):
            vel = int(velocity if np.isscalar(velocity) else velocity[s, v])
            events.append(((s - start) * step, 1, mido.Message("note_on", channel=channels[v], note=p, velocity=vel)))
            events.append(((e - start) * step, 0, mido.Message("note_off", channel=channels[v], note=p, velocity=0)))
        events.sort(key=lambda x: (x[0], x[1]))
        now = 0
        for t, _, msg in events:
            track.append(msg.copy(time=t - now))
            now = t
        track.append(mido.MetaMessage("end_of_track", time=max(0, end - now)))
        mid.tracks.append(track)
    return mid


def write_midi(grid: Grid, path: str | Path, **kw) -> Path:
    path = Path(path)
    midi_from_grid(grid, **kw).save(str(path))
    return path
