"""The daemon's core without ports or wall time: a fake clock drives it (no threads), as fast as the
decoder goes. For tests and the memory benchmark (DESIGN §8)."""
from __future__ import annotations

from .core import Daemon, DaemonConfig


class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Sink:
    """A fake output port: counts what it is sent and which notes it holds on (bounded memory)."""

    def __init__(self):
        self.messages = 0
        self.on: dict[tuple[int, int], int] = {}

    def __call__(self, msg: list[int]) -> None:
        self.messages += 1
        kind, key = msg[0] & 0xF0, (msg[0] & 0x0F, msg[1] if len(msg) > 1 else 0)
        if kind == 0x90 and msg[2] > 0:
            self.on[key] = self.on.get(key, 0) + 1
        elif kind == 0x80 or kind == 0x90:
            if self.on.get(key, 0) <= 1:
                self.on.pop(key, None)
            else:
                self.on[key] -= 1
        elif kind == 0xB0 and msg[1] == 123:
            for k in [k for k in self.on if k[0] == key[0]]:
                del self.on[k]

    def sounding(self) -> int:
        return sum(self.on.values())


def fake_daemon(engine, cfg: DaemonConfig | None = None, log_json=None) -> tuple[Daemon, FakeClock, Sink]:
    """A daemon on the internal clock at ``cfg.bpm``, started at the fake clock's time, never
    started as threads: ``drive`` runs it."""
    cfg = cfg or DaemonConfig()
    cfg.clock = "internal"
    clock, sink = FakeClock(), Sink()
    d = Daemon(engine, sink, cfg, now=clock, log_json=log_json)
    d.transport.start_internal(clock.t)
    return d, clock, sink


def bar_events(grid, bpm: float) -> list[tuple[float, list[int]]]:
    """(seconds from the grid's start, MIDI bytes) of a grid played at ``bpm``, in time order."""
    from .demo import input_events

    return [(t, msg) for t, _, msg in sorted(input_events(grid, bpm), key=lambda e: (e[0], e[1]))]


def drive(d: Daemon, clock: FakeClock, events, bars: int, *, on_bar=None, silent_bars: int = 2) -> None:
    """Play ``events`` ((seconds, bytes) from the daemon's start, in order) into ``d`` for ``bars``
    bars, then ``silent_bars`` bars of silence (every output note ends), a 16th at a time;
    ``on_bar(n)`` after each bar."""
    tpb = d.tpb
    start = clock.t
    sec = d.transport.sec_per_tick
    it = iter(events)
    pending = next(it, None)
    held: dict[tuple[int, int], int] = {}
    total = bars + silent_bars + d.cfg.delay_bars
    for tick in range(1, total * tpb + 1):
        t = start + tick * sec
        if tick <= bars * tpb:
            while pending is not None and start + pending[0] < t:
                clock.t = start + pending[0]
                msg = pending[1]
                key = (msg[0] & 0x0F, msg[1])
                if msg[0] & 0xF0 == 0x90 and msg[2] > 0:
                    held[key] = held.get(key, 0) + 1
                elif held.get(key):
                    held[key] -= 1
                d.feed(msg, clock.t)
                pending = next(it, None)
        if tick == bars * tpb:  # the music ends: release what is still held
            for (ch, p), n in held.items():
                for _ in range(n):
                    d.feed([0x80 | ch, p, 0], t - sec / 2)
            held.clear()
        clock.t = t
        d.pump()
        if on_bar is not None and tick % tpb == 0:
            on_bar(tick // tpb)


def looped(events: list[tuple[float, list[int]]], period: float):
    """``events`` (all within ``period`` seconds) over and over, every ``period`` seconds."""
    k = 0
    while True:
        for t, msg in events:
            yield k * period + t, msg
        k += 1
