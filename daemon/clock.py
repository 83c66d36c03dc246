"""Transport: the DAW's MIDI clock (24 per quarter, Start/Continue/Stop, Song Position Pointer) or an
internal tempo, as one object that maps wall time <-> song position in 16th ticks.

All times come from one injectable ``now()`` (``time.perf_counter`` by default), so tests drive the
clock with a fake one.
"""
from __future__ import annotations

import threading
import time

CLOCKS_PER_TICK = 6  # 24 MIDI clocks per quarter note = 6 per 16th


class Transport:
    """Song position in 16th ticks, from MIDI clock messages or an internal tempo.

    ``position_at(t)`` and ``time_of(tick)`` extrapolate from the last clock with the measured tempo,
    so a scheduler can wait for a future tick without being woken by every clock.
    """

    def __init__(self, *, bpm: float = 120.0, internal: bool = False, now=time.perf_counter):
        self.now = now
        self.lock = threading.Lock()
        self.internal = internal
        self.running = False
        self.sec_per_clock = 60.0 / bpm / 24
        self.clock_count = 0  # clocks since song position 0 at the last clock received
        self.last_clock_time: float | None = None
        self.pending_start = False  # after Start / Song Position: the next clock is the position itself
        self.generation = 0  # increments on every Start, Stop, Continue or jump

    # -- MIDI clock messages ----------------------------------------------------------------------
    def on_start(self, t: float) -> None:
        with self.lock:
            self.clock_count = 0
            self.pending_start = True
            self.running = True
            self.last_clock_time = None
            self.generation += 1

    def on_continue(self, t: float) -> None:
        """Resumes where it stopped: the next clock is the one after the last clock played, unless a
        Song Position (or a Start with no clock yet) said where the next clock falls."""
        with self.lock:
            self.running = True
            self.last_clock_time = None
            self.generation += 1

    def on_stop(self, t: float) -> None:
        with self.lock:
            self.running = False
            self.generation += 1

    def on_song_position(self, sixteenths: int, t: float) -> None:
        """Song Position Pointer: the position, in 16ths (MIDI beats), where playback resumes."""
        with self.lock:
            self.clock_count = sixteenths * CLOCKS_PER_TICK
            self.pending_start = True
            self.last_clock_time = None
            self.generation += 1

    def on_clock(self, t: float) -> int | None:
        """A timing clock; returns the new clock count (None when stopped)."""
        with self.lock:
            if not self.running:
                return None
            if self.pending_start:
                self.pending_start = False
            else:
                if self.last_clock_time is not None:
                    dt = t - self.last_clock_time
                    if 0.0005 < dt < 0.25:  # ignore jitter spikes and pauses (30..5000 bpm)
                        self.sec_per_clock += 0.1 * (dt - self.sec_per_clock)
                self.clock_count += 1
            self.last_clock_time = t
            return self.clock_count

    # -- internal tempo ---------------------------------------------------------------------------
    def start_internal(self, t: float, position: float = 0.0) -> None:
        with self.lock:
            self.internal = True
            self.running = True
            self.clock_count = int(position * CLOCKS_PER_TICK)
            self.last_clock_time = t
            self.generation += 1

    # -- conversions ------------------------------------------------------------------------------
    def position_at(self, t: float) -> float | None:
        """Song position in 16th ticks at wall time ``t`` (None before the first clock)."""
        with self.lock:
            if not self.running:
                return None
            if self.last_clock_time is None:  # between Start/Continue and its first clock
                return self.clock_count / CLOCKS_PER_TICK if self.pending_start else None
            clocks = self.clock_count + (t - self.last_clock_time) / self.sec_per_clock
            if not self.internal:  # never run more than a clock ahead of the DAW
                clocks = min(clocks, self.clock_count + 1)
            return clocks / CLOCKS_PER_TICK

    def time_of(self, tick: float) -> float | None:
        """Wall time at which song position ``tick`` (16ths) is due, from the current tempo."""
        with self.lock:
            if not self.running or self.last_clock_time is None:
                return None
            return self.last_clock_time + (tick * CLOCKS_PER_TICK - self.clock_count) * self.sec_per_clock

    @property
    def bpm(self) -> float:
        return 60.0 / (self.sec_per_clock * 24)

    @property
    def sec_per_tick(self) -> float:
        return self.sec_per_clock * CLOCKS_PER_TICK
