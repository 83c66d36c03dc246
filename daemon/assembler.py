"""Live input -> bars of four-voice tokens: notes timestamped on arrival, placed on the 16th grid of
the current bar, the sustain pedal honoured, voiced by channel or by pitch order (DESIGN §6)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vqcpc.music.grid import HOLD, N_VOICES, PITCH_OFFSET, REST, Report, fold_into_range, pitch_token
from vqcpc.music.voicing import PitchOrderVoicer


@dataclass(eq=False)
class LiveNote:
    pitch: int
    onset: float | None  # song position in 16ths (None: held through a stop)
    velocity: int
    channel: int
    end: float | None = None
    pedal_held: bool = False  # released while the pedal was down: ends when the pedal lifts
    voice: int | None = None  # the voice it sounded in at the end of the last bar


@dataclass
class Bar:
    index: int  # bar number in the song
    tokens: np.ndarray  # (ticks_per_bar, 4) token ids
    velocity: int  # mean velocity of the bar's onsets (the output follows it)
    silent: bool  # nothing sounded in the bar
    report: Report = field(default_factory=Report)


class BarAssembler:
    def __init__(self, beats_per_bar: int, ranges, *, voicing: str = "pitch", in_channels=(0, 1, 2, 3)):
        self.tpb = beats_per_bar * 4
        self.lo, self.hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
        self.voicing, self.in_channels = voicing, list(in_channels)
        self.notes: list[LiveNote] = []
        self.pedal = False
        self.voicer = PitchOrderVoicer()
        self.stats = Report()

    def reset(self, position: float | None) -> None:
        """Stop or jump: forget finished notes; notes still held on the input start again at
        ``position`` (the new song position; None while stopped, anchored by the next start)."""
        self.notes = [n for n in self.notes if n.end is None]
        for n in self.notes:
            n.onset, n.voice = position, None
        self.voicer = PitchOrderVoicer()

    # -- input events -----------------------------------------------------------------------------
    MAX_PER_KEY = 4  # notes of one channel and pitch sounding at once (four voices in unison)
    MAX_SOUNDING = 32  # input notes sounding at once, the pedal's included

    def note_on(self, pitch: int, velocity: int, channel: int, position: float | None) -> None:
        """A note starts. Notes whose note_off never comes (a cable pulled, a DAW that dropped it)
        must not pile up: beyond ``MAX_PER_KEY`` on one key or ``MAX_SOUNDING`` in all, the oldest
        sounding note ends here."""
        key = [n for n in self.notes if n.end is None and n.pitch == pitch and n.channel == channel]
        if len(key) >= self.MAX_PER_KEY:
            self._end(key[0], position)
        sounding = [n for n in self.notes if n.end is None]
        if len(sounding) >= self.MAX_SOUNDING:
            self._end(sounding[0], position)
        self.notes.append(LiveNote(pitch, position, velocity, channel))

    def all_notes_off(self, channel: int | None, position: float | None) -> int:
        """CC 123 (All Notes Off) or CC 120 (All Sound Off) on the input: every note of ``channel``
        (None: of every channel) still sounding ends, the pedal's too. Returns how many."""
        ended = [n for n in self.notes if n.end is None and channel in (None, n.channel)]
        for n in ended:
            self._end(n, position)
        return len(ended)

    def _end(self, n: LiveNote, position: float | None) -> None:
        n.pedal_held = False
        if position is None or n.onset is None:  # stopped: it never sounded in a bar, or will not again
            self.notes.remove(n)
        else:
            n.end = max(position, n.onset)

    def note_off(self, pitch: int, channel: int, position: float) -> None:
        for n in self.notes:  # first in, first out; a note_off with no note_on changes nothing
            if n.pitch == pitch and n.channel == channel and n.end is None and not n.pedal_held:
                if self.pedal:
                    n.pedal_held = True
                else:
                    n.end = max(position, n.onset)
                return

    def sustain(self, down: bool, position: float) -> None:
        self.pedal = down
        if not down:
            for n in self.notes:
                if n.pedal_held and n.end is None:
                    n.end = max(position, n.onset)
                    n.pedal_held = False

    # -- bar end ----------------------------------------------------------------------------------
    def close_bar(self, index: int) -> Bar:
        """Bar ``index`` as tokens. Notes still sounding at its end carry into the next bar (HOLD)."""
        start = index * self.tpb
        report = Report()
        placed: list[tuple[int, int, int]] = []
        sources: list[LiveNote] = []
        carry: list[LiveNote] = []
        for n in self.notes:
            if n.onset is None:  # held through a stop: waits for the transport
                carry.append(n)
                continue
            on = round(n.onset) - start
            end = self.tpb + 1 if n.end is None else max(round(n.end) - start, on + 1)
            if on >= self.tpb:
                carry.append(n)  # snapped to the next bar line or later
                continue
            if end <= 0:
                continue  # ended before this bar
            pitch = n.pitch
            if not self.lo <= pitch <= self.hi:
                pitch = fold_into_range(pitch, self.lo, self.hi)
                report.folded += 1
            placed.append((max(on, 0), min(end, self.tpb), pitch))
            sources.append(n)
            if end > self.tpb:
                carry.append(n)
        if self.voicing == "channels":
            tokens = self._by_channel(placed, sources, start, report)
        else:
            held = {i: n.voice for i, n in enumerate(sources) if round(n.onset) < start and n.voice is not None}
            tokens = self.voicer.voice(placed, self.tpb, report, held=held)
            for n in sources:
                n.voice = None
            for v, i in enumerate(self.voicer.last_owner):
                if i is not None:
                    sources[i].voice = v
        self.notes = carry
        self.stats.add(report)
        vels = [n.velocity for n in sources if round(n.onset) >= start]
        return Bar(index, tokens, int(np.mean(vels)) if vels else 80, not placed, report)

    def _by_channel(self, placed, sources, start, report) -> np.ndarray:
        """Voice = position of the note's channel in ``in_channels``; other channels are dropped."""
        tokens = np.full((self.tpb, N_VOICES), REST, np.int16)
        carried = [round(n.onset) < start for n in sources]
        for i in sorted(range(len(placed)), key=lambda i: (placed[i][0], not carried[i], -placed[i][2])):
            (s, e, p), n = placed[i], sources[i]
            if n.channel not in self.in_channels:
                report.dropped += 1
                continue
            v = self.in_channels.index(n.channel)
            if carried[i]:
                tokens[s:e, v] = HOLD
            elif tokens[s, v] >= PITCH_OFFSET:
                report.chords += 1  # two onsets on one tick of one voice: the first (highest) stays
                continue
            else:
                tokens[s, v] = pitch_token(p)
                tokens[s + 1: e, v] = HOLD
        return tokens
