"""Scheduler, transport and bar assembly with a fake clock and a fake port (no sleeps)."""
import numpy as np

from vqcpc.daemon.assembler import BarAssembler
from vqcpc.daemon.clock import Transport
from vqcpc.daemon.scheduler import Ledger, Scheduler
from vqcpc.music.grid import HOLD, REST, load_ranges, pitch_token


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_transport_follows_midi_clock_and_song_position():
    now = FakeClock()
    tr = Transport(bpm=120, now=now)
    tr.on_start(now.t)
    for i in range(24):  # one quarter at 100 bpm
        tr.on_clock(now.t + i * 0.025)
    assert tr.clock_count == 23
    assert abs(tr.bpm - 100) < 15  # the tempo estimate moves toward the clock's
    assert tr.position_at(now.t + 23 * 0.025) == 23 / 6
    tr.on_song_position(32, now.t + 1)
    tr.on_clock(now.t + 1.0)
    assert tr.clock_count == 32 * 6 and tr.position_at(now.t + 1.0) == 32
    g = tr.generation
    tr.on_stop(now.t + 2)
    assert not tr.running and tr.generation == g + 1 and tr.position_at(now.t + 2) is None


def _scheduler():
    now = FakeClock()
    tr = Transport(bpm=120, internal=True, now=now)
    tr.start_internal(now.t)
    sent = []
    s = Scheduler(tr, sent.append, now=now)
    return now, tr, s, sent


def test_scheduler_sends_on_time_and_drops_late_notes_with_their_note_off():
    now, tr, s, sent = _scheduler()
    s.add(4, [0x90, 60, 90], bar=1)
    s.add(8, [0x80, 60, 0], bar=1)
    now.t = tr.time_of(10)  # decoded after its send time
    s.add(9, [0x91, 62, 90], bar=2)
    s.add(12, [0x81, 62, 0], bar=2)
    # the heap holds the on-time events; the scheduler thread is not running: drive it by hand
    while s.heap:
        import heapq

        ev = heapq.heappop(s.heap)
        s._due(ev, late=False)
    assert sent == [[0x90, 60, 90], [0x80, 60, 0]]  # the late note and its note_off never went out
    assert s.late_notes == 1 and len(s.ledger) == 0


def test_flush_closes_every_sounding_note():
    now, tr, s, sent = _scheduler()
    s.send_now([0x90, 60, 90])
    s.send_now([0x92, 48, 90])
    s.add(100, [0x90, 64, 90])
    s.flush()
    assert sorted(map(tuple, sent[2:])) == [(0x80, 60, 0), (0x82, 48, 0)] and not s.heap
    s.send_now([0x80, 60, 0])  # nothing sounds: no stray note_off
    assert len(sent) == 4


def test_ledger_counts_repeated_notes():
    led = Ledger()
    led.on(0, 60)
    led.on(0, 60)
    assert led.off(0, 60) and len(led) == 1 and led.closing_messages() == [[0x80, 60, 0]]


def _assembler():
    return BarAssembler(4, load_ranges())


def test_held_note_continues_as_hold_in_the_next_bar():
    a = _assembler()
    a.note_on(60, 90, 0, 0.0)
    a.note_on(72, 90, 0, 0.0)
    a.note_off(72, 0, 8.0)
    bar0 = a.close_bar(0)
    assert not bar0.silent
    a.note_off(60, 0, 20.0)
    bar1 = a.close_bar(1)
    col = [v for v in range(4) if bar0.tokens[0, v] == pitch_token(60)][0]
    assert bar1.tokens[0, col] == HOLD and bar1.tokens[4, col] == REST
    assert a.close_bar(2).silent


def test_sustain_pedal_keeps_released_notes():
    a = _assembler()
    a.sustain(True, 0.0)
    a.note_on(64, 90, 0, 0.0)
    a.note_off(64, 0, 2.0)
    a.sustain(False, 10.0)
    t = a.close_bar(0).tokens
    v = int(np.nonzero(t[0] == pitch_token(64))[0][0])
    assert (t[1:10, v] == HOLD).all() and t[10, v] == REST


def test_bad_input_is_survived_and_counted():
    a = _assembler()
    a.note_off(61, 0, 0.5)  # note_off with no note_on
    for p in (60, 64, 67, 72, 48, 55):  # six at once
        a.note_on(p, 90, 0, 1.0)
    a.note_on(20, 90, 0, 8.0)  # far out of range: folded
    a.note_on(110, 90, 0, 8.0)
    bar = a.close_bar(0)
    assert bar.report.dropped >= 2 and bar.report.folded == 2
    assert ((bar.tokens >= pitch_token(0)).sum(axis=1) <= 4).all()
    lo, hi = min(r[0] for r in load_ranges()), max(r[1] for r in load_ranges())
    p = bar.tokens[bar.tokens >= pitch_token(0)] - pitch_token(0)
    assert p.min() >= lo and p.max() <= hi


def test_channel_voicing():
    a = BarAssembler(4, load_ranges(), voicing="channels", in_channels=(0, 1, 2, 3))
    a.note_on(60, 90, 3, 0.0)  # bass channel, above the soprano
    a.note_on(55, 90, 0, 0.0)
    a.note_on(70, 90, 9, 0.0)  # not one of the four channels
    bar = a.close_bar(0)
    assert bar.tokens[0, 3] == pitch_token(60) and bar.tokens[0, 0] == pitch_token(55)
    assert bar.report.dropped == 1


def _daemon_cli(*args, env=None):
    import os
    import subprocess
    import sys

    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "vqcpc.daemon", *args], capture_output=True, text=True, env=e,
                          timeout=60)


def test_daemon_bad_option_is_one_line_and_exit_2():
    r = _daemon_cli("--meter", "5/4")
    assert r.returncode == 2 and r.stderr.strip() == "error: --meter 5/4: the models know 4/4 and 3/4"


def test_daemon_without_midi_system_says_what_to_start():
    r = _daemon_cli("--api", "jack", env={"JACK_DEFAULT_SERVER": "vqcpc-no-such-server", "JACK_NO_START_SERVER": "1"})
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no MIDI system found: start a JACK server") and "Traceback" not in r.stderr
