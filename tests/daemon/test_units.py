"""Scheduler, transport and bar assembly with a fake clock and a fake port (no sleeps)."""
import threading
import time
from pathlib import Path

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
    # a plain Continue resumes after the last clock played; Song Position then Continue, at that position
    tr.on_continue(now.t + 3)
    tr.on_clock(now.t + 3.0)
    assert tr.clock_count == 32 * 6 + 1
    tr.on_stop(now.t + 4)
    tr.on_song_position(40, now.t + 4)
    tr.on_continue(now.t + 4)
    tr.on_clock(now.t + 4.5)
    assert tr.clock_count == 40 * 6
    # Start, Stop before any clock, Continue: the first clock is still position 0
    tr.on_start(now.t + 5)
    tr.on_stop(now.t + 5)
    tr.on_continue(now.t + 5)
    tr.on_clock(now.t + 5.5)
    assert tr.clock_count == 0


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


def test_input_notes_without_note_off_do_not_pile_up():
    a = _assembler()
    for i in range(1000):  # note_ons whose note_offs never come
        a.note_on(40 + i % 40, 90, i % 16, i / 100)
    assert len([n for n in a.notes if n.end is None]) == a.MAX_SOUNDING
    for _ in range(10):  # one key struck again and again
        a.note_on(60, 90, 0, 12.0)
    assert len([n for n in a.notes if n.end is None and n.pitch == 60 and n.channel == 0]) == a.MAX_PER_KEY


def test_input_all_notes_off_ends_that_channels_notes_and_the_pedals():
    a = _assembler()
    a.sustain(True, 0.0)
    a.note_on(60, 90, 0, 0.0)
    a.note_on(64, 90, 0, 0.0)
    a.note_off(64, 0, 1.0)  # held by the pedal
    a.note_on(67, 90, 1, 0.0)
    assert a.all_notes_off(0, 4.0) == 2
    t = a.close_bar(0).tokens
    v67 = int(np.nonzero(t[0] == pitch_token(67))[0][0])
    assert (t[3] != REST).sum() == 3  # all three sound until the CC
    assert (t[5] != REST).sum() == 1 and t[5, v67] == HOLD  # after it only channel 1's note
    assert sorted(n.pitch for n in a.notes if n.end is None) == [67]


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


def test_daemon_bad_option_is_one_line_and_exit_2(tmp_path):
    r = _daemon_cli("--meter", "5/4")
    assert r.returncode == 2 and r.stderr.strip() == "error: --meter 5/4: the models know 4/4 and 3/4"
    for opt, value in (("--bpm", "nan"), ("--temperature", "nan"), ("--latency-ms", "inf"), ("--latency-ms", "-600"),
                       ("--top-p", "nan"), ("--seed", "-5")):
        r = _daemon_cli(opt, value)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and opt in r.stderr, (opt, r.stderr)
    # a template sets the meter; a --meter that cuts its bars across is refused
    from vqcpc.music.io import load, save

    three = save(load("bwv269"), tmp_path / "three.mid")  # 3/4
    r = _daemon_cli("--template", str(three), "--meter", "4/4")
    assert r.returncode == 2 and r.stderr.strip() == f"error: --meter 4/4, but {three} is in 3/4: its bars would be cut across"


def test_daemon_refuses_shared_channels_and_takes_a_scores_parts(tmp_path):
    for opt in ("--in-channels", "--out-channels"):
        r = _daemon_cli("--voicing", "channels", opt, "1,1,2,3")
        assert r.returncode == 2 and r.stderr.strip() == \
            f"error: {opt} '1,1,2,3': expected four different MIDI channels, one a voice, e.g. 1,2,3,4"
    r = _daemon_cli("--parts", "1,2,3,4")
    assert r.returncode == 2 and r.stderr.strip() == "error: --parts applies to a MusicXML --template"
    # the shared case of a three-part score: the hint names --parts, and the daemon takes it
    case = Path(__file__).parents[1] / "data" / "cases" / "three_parts.musicxml"
    r = _daemon_cli("--template", str(case))
    assert r.returncode == 2 and "--parts" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _daemon_cli("--template", str(case), "--parts", "1,2,3,9")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: ") and "part 9" in r.stderr


def test_demo_bwv_takes_corpus_names_with_dots():
    from vqcpc.daemon.demo import chorale_arg

    assert [chorale_arg(b) for b in ("269", "bwv269", "bwv38.6", "38.6", "BWV 26.6")] == \
        ["bwv269", "bwv269", "bwv38.6", "bwv38.6", "bwv26.6"]


def test_demo_bwv_is_a_corpus_chorale_not_a_file(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "vqcpc", "demo", "--bwv", str(tmp_path / "song.mid")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == (f"error: --bwv {tmp_path / 'song.mid'}: takes a chorale of the music21 "
                                                       "corpus (e.g. 269 or bwv269), not a file; vqcpc-daemon --template "
                                                       "FILE plays variations of a file")


def test_daemon_without_midi_system_says_what_to_start():
    r = _daemon_cli("--api", "jack", env={"JACK_DEFAULT_SERVER": "vqcpc-no-such-server", "JACK_NO_START_SERVER": "1"})
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no MIDI system found: start a JACK server") and "Traceback" not in r.stderr


# -- port loss (DESIGN §6: on port loss, the ledger's note_offs and CC 123 go out when it returns) --

class FlakyPort:
    """A fake output whose send raises while ``down``."""

    def __init__(self):
        self.sent, self.down = [], False

    def __call__(self, msg):
        if self.down:
            raise SystemError("MIDI port gone")
        self.sent.append(list(msg))


def test_failed_send_marks_the_output_lost_and_its_return_closes_the_ledger():
    now = FakeClock()
    tr = Transport(bpm=120, internal=True, now=now)
    tr.start_internal(now.t)
    port, lost = FlakyPort(), []
    s = Scheduler(tr, port, now=now, on_lost=lost.append)
    s.send_now([0x90, 60, 90])
    s.send_now([0x91, 48, 90])
    port.down = True
    s.send_now([0x90, 64, 90])  # raises inside: the output is lost, nothing escapes
    assert s.lost and lost == [s.lost] and "MIDI port gone" in s.lost
    port.down = False  # the port works again, but nothing goes out until restore()
    s.send_now([0x92, 55, 90])  # while lost: not sent, not in the ledger
    s.send_now([0x80, 60, 0])  # while lost: not sent, 60 stays in the ledger
    s.flush()  # a Stop while lost: the ledger is kept for the port's return
    s.panic()
    assert port.sent == [[0x90, 60, 90], [0x91, 48, 90]]
    assert sorted(s.ledger.sounding) == [(0, 60), (0, 64), (1, 48)] and s.lost_messages == 2
    n, channels = s.restore(channels=(0, 1, 2, 3))
    assert s.lost is None and n == 3 and channels == [0, 1, 2, 3]
    assert port.sent[2:] == [[0x80, 60, 0], [0x80, 64, 0], [0x81, 48, 0],
                             [0xB0, 123, 0], [0xB1, 123, 0], [0xB2, 123, 0], [0xB3, 123, 0]]
    assert len(s.ledger) == 0
    s.send_now([0x90, 62, 90])  # sending resumes
    assert port.sent[-1] == [0x90, 62, 90]


def test_scheduled_events_fall_due_unsent_while_lost_and_the_clock_goes_on():
    now, tr, s, sent = _scheduler()
    s.add(2, [0x90, 60, 90], bar=0)
    s.pump()
    now.t = tr.time_of(2)
    s.pump()
    assert sent == [[0x90, 60, 90]]
    s.mark_lost("test")
    s.add(4, [0x80, 60, 0], bar=0)
    s.add(4, [0x90, 67, 90], bar=0)
    now.t = tr.time_of(5)
    s.pump()
    assert not s.heap and len(sent) == 1 and list(s.ledger.sounding) == [(0, 60)]
    s.restore(channels=(0,))
    assert sent[1:] == [[0x80, 60, 0], [0xB0, 123, 0]]


def test_a_failed_restore_keeps_what_it_could_not_send():
    now = FakeClock()
    tr = Transport(bpm=120, internal=True, now=now)
    port = FlakyPort()
    s = Scheduler(tr, port, now=now)
    s.send_now([0x90, 60, 90])
    s.send_now([0x90, 62, 90])
    s.mark_lost("gone")
    port.down = True
    assert s.restore(channels=(0,)) == (0, [])  # the port failed again at once
    assert s.lost and len(s.ledger) == 2
    port.down = False
    assert s.restore(channels=(0,)) == (2, [0])


def test_jack_guard_stops_sending_without_a_sign_of_life():
    now, tr, s, sent = _scheduler()
    s.max_unconfirmed = 3
    s.CONFIRM_WAIT_S = 0.2
    for p in (60, 62, 64):
        s.send_now([0x90, p, 90])
    s.confirm()
    t0 = time.monotonic()
    for p in (65, 67, 69, 71):
        s.send_now([0x90, p, 90])
    assert len(sent) == 6 and s.lost == "no sign of life from the MIDI system"
    assert time.monotonic() - t0 >= 0.2  # it waited for a word before giving the output up


def test_jack_guard_waits_out_a_burst_on_a_live_server():
    """A burst longer than the guard (a panic, a ledger closed at exit) waits for the watchdog's
    next word instead of taking the output for lost: every message goes out, in order."""
    now, tr, s, sent = _scheduler()
    s.max_unconfirmed = 10
    stop = threading.Event()

    def watchdog():  # confirms every 20 ms, as the real one does on each round the server ran
        while not stop.wait(0.02):
            s.confirm()

    w = threading.Thread(target=watchdog)
    w.start()
    try:
        for p in range(40):
            s.send_now([0x90, 30 + p, 90])
        s.panic(channels=range(4))
    finally:
        stop.set()
        w.join()
    assert s.lost is None
    assert sent[:40] == [[0x90, 30 + p, 90] for p in range(40)]
    assert sorted(m[1] for m in sent[40:80]) == list(range(30, 70)) and all(m[0] == 0x80 for m in sent[40:80])
    assert sent[80:] == [[0xB0 | ch, 123, 0] for ch in range(4)]


class FakeEngine:
    """Random logits, codes from the bar's tokens: the daemon's data flow without a model."""

    name = "fake"

    def __init__(self):
        from vqcpc.music.grid import voice_token_mask

        self.ranges = load_ranges()
        self.voice_mask = voice_token_mask(self.ranges)

    def encode(self, beats):
        return (np.asarray(beats).sum(axis=1) % 16).astype(np.int64)

    def new_stream(self, beats_per_bar, batch=1):
        return FakeStream(self.voice_mask.shape[1])


class FakeStream:
    def __init__(self, vocab):
        self.rng, self.vocab = np.random.default_rng(0), vocab

    def push_codes(self, codes):
        pass

    def step(self, tok=None):
        return self.rng.normal(size=(1, self.vocab)).astype(np.float32)


class FakeMidi:
    """A MIDI system of named ports; ``opener`` stands in for ports.open_port."""

    def __init__(self, names):
        self.names, self.opened, self.fail = list(names), [], False

    def opener(self, kind, api, name, client, connect):
        from vqcpc.daemon import ports

        if connect and ports.find_port(self.names, connect) is None:
            raise ports.MidiSystemError(f"no MIDI port named {connect!r}")
        port = FakeRtPort(self, kind)
        self.opened.append(port)
        return port


class FakeRtPort:
    def __init__(self, system, kind):
        self.system, self.kind, self.sent, self.closed, self.inbox = system, kind, [], False, []

    def get_ports(self):
        return list(self.system.names)

    def send_message(self, msg):
        if self.system.fail:
            raise SystemError("error sending MIDI message to port")
        self.sent.append(list(msg))

    def get_message(self):  # rtmidi's queue: (message, delta) or None
        return self.inbox.pop(0) if self.inbox else None

    def close_port(self):
        self.closed = True

    def delete(self):
        pass


def test_port_link_reconnects_by_name_and_sends_the_ledger_offs_and_cc123_first():
    import io
    import json

    import rtmidi

    from vqcpc.daemon.core import Daemon, DaemonConfig
    from vqcpc.daemon.link import PortLink

    midi = FakeMidi(["synth:in", "daw:out"])
    link = PortLink(rtmidi.API_LINUX_ALSA, in_name="vq in", out_name="vq out", connect_in="daw",
                    connect_out="synth", opener=midi.opener)
    link.open_output()
    log = io.StringIO()
    d = Daemon(FakeEngine(), link.send, DaemonConfig(clock="internal"), now=FakeClock(), log_json=log)
    link.open_input(d.feed)
    link.attach(d)
    out0, in0 = midi.opened
    d.scheduler.send_now([0x90, 60, 90])
    d.scheduler.send_now([0x91, 52, 90])
    link.check()
    assert not d.ports_lost and len(midi.opened) == 2
    midi.names.remove("synth:in")  # the synth goes away
    link.check()
    assert "output" in d.ports_lost and "OUTPUT LOST" in d.status_line()
    d.scheduler.send_now([0x90, 67, 90])  # lost: dropped
    link.check()  # still away: nothing reopened
    assert len(midi.opened) == 2 and out0.sent == [[0x90, 60, 90], [0x91, 52, 90]]
    midi.names.append("synth:in")  # it is back
    link.check()
    out1 = midi.opened[-1]
    assert out0.closed and out1.sent == [[0x80, 60, 0], [0x81, 52, 0], [0xB0, 123, 0], [0xB1, 123, 0],
                                         [0xB2, 123, 0], [0xB3, 123, 0]]
    assert not d.ports_lost
    # a send that raises: lost at once, reopened by the next round
    d.scheduler.send_now([0x92, 48, 90])
    midi.fail = True
    d.scheduler.send_now([0x92, 50, 90])
    midi.fail = False
    link.check()
    out2 = midi.opened[-1]
    assert out2 is not out1 and out2.sent[:2] == [[0x82, 48, 0], [0x82, 50, 0]] and len(out2.sent) == 6
    # the input: the DAW's port goes away and returns; messages reach the daemon through the new port
    midi.names.remove("daw:out")
    link.check()
    assert "input" in d.ports_lost
    midi.names.append("daw:out")
    link.check()
    in1 = midi.opened[-1]
    assert in1.kind == "input" and in0.closed and not d.ports_lost
    in0.inbox.append(([0x90, 48, 80], 0.0))  # the old port is no longer read
    in1.inbox.append(([0xFE], 0.0))  # active sensing: dropped by the reader
    in1.inbox.append(([0x90, 60, 80], 0.01))
    assert d.input.q.get(timeout=2.0)[0] == [0x90, 60, 80]
    time.sleep(0.05)
    assert d.input.q.empty() and in0.inbox
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    kinds = [(e["event"], e["port"]) for e in events if e["event"].startswith("port_")]
    assert kinds == [("port_lost", "output"), ("port_back", "output"), ("port_lost", "output"),
                     ("port_back", "output"), ("port_lost", "input"), ("port_back", "input")]
    back = next(e for e in events if e["event"] == "port_back")
    assert back["note_offs"] == 2 and back["cc123_channels"] == [1, 2, 3, 4]
    link.close()
    assert all(p.closed for p in midi.opened)


def test_thousand_bars_on_a_fake_clock_leave_the_ledger_empty_and_memory_bounded():
    from vqcpc.daemon.core import STATS_WINDOW, DaemonConfig
    from vqcpc.daemon.sim import drive, fake_daemon

    d, clock, sink = fake_daemon(FakeEngine(), DaemonConfig(bpm=120))
    sec_beat = 0.5
    chords = [(48, 55, 64, 72), (50, 57, 65, 74), (43, 59, 62, 67)]
    events = []  # a chord a beat, every beat, for the whole stream
    for beat in range(1000 * 4):
        for p in chords[beat % 3]:
            events.append((beat * sec_beat, [0x90, p, 80]))
        for p in chords[beat % 3]:
            events.append((beat * sec_beat + 0.4, [0x80, p, 0]))
    sizes = []
    drive(d, clock, iter(events), 1000, on_bar=lambda n: sizes.append(
        (len(d.scheduler.heap), len(d.scheduler.ledger), len(d.scheduler.dropped), len(d.assembler.notes))))
    assert d.stats.bars_out >= 990 and sink.messages > 10_000
    assert len(d.scheduler.ledger) == 0 and sink.sounding() == 0 and not d.scheduler.heap
    assert len(d.stats.decode_ms) == STATS_WINDOW and len(d.stats.first_tick_ms) == STATS_WINDOW
    assert len(d.stats.recent_late) <= 64
    heap, ledger, dropped, notes = (max(s[i] for s in sizes) for i in range(4))
    assert heap <= 4 * 16 * 2 * 2 and ledger <= 8 and dropped <= 16 and notes <= 8


def test_log_sends_records_the_due_and_send_time_of_every_scheduled_message():
    import io
    import json

    from vqcpc.daemon.core import DaemonConfig
    from vqcpc.daemon.sim import fake_daemon

    log = io.StringIO()
    d, clock, sink = fake_daemon(FakeEngine(), DaemonConfig(bpm=120, log_sends=True), log_json=log)
    tr = d.transport
    d.scheduler.add(4, [0x90, 60, 90])
    d.scheduler.add(8, [0x80, 60, 0])
    clock.t = tr.time_of(4) + 0.001  # the scheduler woke a millisecond late
    d.scheduler.pump()
    clock.t = tr.time_of(8)
    d.scheduler.pump()
    d.scheduler.send_now([0x90, 62, 90])  # outside the schedule: not traced
    d.log_sends()
    sent = [json.loads(line) for line in log.getvalue().splitlines()][-1]
    assert sent["event"] == "sent"
    (due1, t1, *m1), (due2, t2, *m2) = sent["sends"]
    assert m1 == [0x90, 60, 90] and m2 == [0x80, 60, 0]
    assert abs(due1 - tr.time_of(4)) < 1e-6 and abs(t1 - due1 - 0.001) < 1e-6 and t2 == due2
    d.log_sends()  # nothing new: no event
    assert len(log.getvalue().splitlines()) == 1


def _drive_chorale(cfg, bars=12):
    from vqcpc.daemon.sim import bar_events, drive, fake_daemon
    from vqcpc.export.runtime import Engine
    from vqcpc.models.registry import resolve_model
    from vqcpc.music.io import load

    grid = load("bwv269")  # 3/4, with a one-beat pickup: the bars played start at the grid's first bar
    d, clock, sink = fake_daemon(Engine(resolve_model("uniform")), cfg)
    drive(d, clock, bar_events(grid, cfg.bpm), bars)
    return d, sink


def test_beat_search_keeps_more_codes_live_and_closes_every_note():
    """The shipped model driven by a fake clock through 12 bars of bwv269: with 4 candidates a beat
    the output keeps far more of the heard codes, and nothing is left sounding either way."""
    from vqcpc.daemon.core import DaemonConfig

    plain, sink1 = _drive_chorale(DaemonConfig(beats_per_bar=3, bpm=120))
    searched, sink4 = _drive_chorale(DaemonConfig(beats_per_bar=3, bpm=120, beat_search=4))
    a, b = plain.summary()["code_consistency_own"], searched.summary()["code_consistency_own"]
    assert plain.stats.bars_out >= 10 and searched.stats.bars_out == plain.stats.bars_out
    assert b > a + 0.15 and b > 0.8, (a, b)
    assert sink1.sounding() == 0 and sink4.sounding() == 0 and plain.stats.late_bars == searched.stats.late_bars == 0


def test_listener_times_messages_by_the_midi_systems_deltas_not_by_when_it_polled():
    from vqcpc.daemon.ports import Listener

    class Port:  # rtmidi's queue, read only through stamp() here
        def get_message(self):
            return None

    got = []
    listener = Listener(Port(), lambda msg, t: got.append(t), interval=0.001)
    listener.stop()
    # three messages 10 ms apart, found by polls 1 ms, 30 ms (the poller was held up) and 1 ms late
    assert listener.stamp(0.0, 100.001) == 100.001
    assert abs(listener.stamp(0.010, 100.040) - 100.011) < 1e-5
    assert abs(listener.stamp(0.010, 100.0205) - 100.0205) < 1e-9  # a smaller lag: the clock is re-anchored
    # later messages keep the better anchor
    assert abs(listener.stamp(0.5, 100.5225) - 100.5205) < 1e-4
    # deltas lost (rtmidi swallowed 0.5 s of events into an unterminated sysex): anchored anew, not 0.5 s early
    assert abs(listener.stamp(0.010, 101.0306) - 101.0306) < 1e-9
    assert abs(listener.stamp(0.010, 101.0416) - 101.0406) < 1e-4


def test_clocks_and_notes_swallowed_into_a_broken_sysex_come_out_again():
    from vqcpc.daemon.ports import _unswallow

    assert _unswallow([0xF0, 1, 2, 0xF7]) == [[0xF0, 1, 2, 0xF7]]  # a whole sysex: unchanged
    assert _unswallow([0x90, 60, 100]) == [[0x90, 60, 100]]
    # a sysex cut in two, with 3 clocks between its halves (rtmidi hands it over as one message)
    assert _unswallow([0xF0, 1, 2, 0xF8, 0xF8, 0xF8, 4, 0xF7]) == [[0xF8]] * 3 + [[0xF0, 1, 2, 4, 0xF7]]
    # an unterminated sysex: the note and clocks after it are messages of their own again
    assert _unswallow([0xF0, 1, 0xF8, 0x90, 60, 100, 0xF8, 0x80, 60, 0, 0xF7]) == \
        [[0xF8], [0x90, 60, 100], [0xF8], [0x80, 60, 0]]


def test_bypass_echoes_each_input_channel_on_its_voices_output_channel():
    from vqcpc.daemon.core import Daemon, DaemonConfig

    sent = []
    cfg = DaemonConfig(clock="internal", voicing="channels", in_channels=(4, 5, 6, 7), out_channels=(8, 9, 10, 11))
    d = Daemon(FakeEngine(), sent.append, cfg, now=FakeClock())
    d.transport.start_internal(d.now())
    d.feed([0xB4, 81, 127])  # bypass on
    for ch, p in ((4, 72), (5, 67), (6, 60), (7, 48), (12, 50)):  # channel 13 is no voice
        d.feed([0x90 | ch, p, 100])
    d.feed([0x87, 48, 0])
    d.pump()
    assert sent == [[0x98, 72, 100], [0x99, 67, 100], [0x9A, 60, 100], [0x9B, 48, 100], [0x8B, 48, 0]]


def test_shutdown_sends_cc123_on_the_output_channels_only():
    now = FakeClock()
    tr = Transport(bpm=120, internal=True, now=now)
    sent = []
    s = Scheduler(tr, sent.append, now=now, channels=(2, 5))
    s.send_now([0x92, 60, 90])
    s.stop()
    assert sent[1:] == [[0x82, 60, 0], [0xB2, 123, 0], [0xB5, 123, 0]]


def _cc_run(events, bars=7, on_bar=None):
    """The daemon core on a fake clock (4/4 at 120 bpm: a bar is 2 s) fed ``events``; returns the
    daemon, the bars (from the start) in which note_ons went out, and every message sent."""
    from vqcpc.daemon.core import Daemon, DaemonConfig
    from vqcpc.daemon.sim import FakeClock, Sink, drive

    clock, sink, sent = FakeClock(), Sink(), []
    start = clock.t

    def send(msg):
        sink(msg)
        sent.append((clock.t, list(msg)))

    d = Daemon(FakeEngine(), send, DaemonConfig(clock="internal", bpm=120), now=clock)
    d.transport.start_internal(clock.t)
    drive(d, clock, sorted(events, key=lambda e: e[0]), bars, on_bar=on_bar and (lambda n: on_bar(d, n)))
    on_bars = sorted({int((t - start) // 2.0) for t, m in sent if m[0] & 0xF0 == 0x90 and m[2] > 0})
    assert sink.sounding() == 0  # whatever the controls did, every note was closed
    return d, on_bars, sent


CHORD = [(0.0, [0x90, p, 90]) for p in (48, 55, 64, 72)] + [(1.9, [0x80, p, 0]) for p in (48, 55, 64, 72)]


def test_cc_freeze_keeps_varying_the_last_codes_through_silence():
    _, plain, _ = _cc_run(CHORD)
    assert plain == [1]  # bar 0 heard, its variation in bar 1; silence in: silence out
    d, frozen, _ = _cc_run(CHORD + [(2.0, [0xB0, 80, 127]), (8.0, [0xB0, 80, 0])])
    assert frozen == [1, 2, 3, 4]  # bars 1-3 came in silent but frozen: varied on bar 0's codes
    assert not d.freeze


def test_cc_temperature_maps_0_127_to_0_1_2_0_and_reaches_the_sampler():
    d, _, _ = _cc_run(CHORD + [(0.5, [0xB0, 70, 127])], bars=3)
    assert d.temperature == 2.0 and d.decoder.sampler.temperature == 2.0
    d, _, _ = _cc_run(CHORD + [(0.5, [0xB0, 70, 0])], bars=3)
    assert abs(d.temperature - 0.1) < 1e-12 and abs(d.decoder.sampler.temperature - 0.1) < 1e-12


def test_cc_panic_and_input_all_notes_off_forget_the_held_input():
    # a chord whose note_offs never come (within the run), on two input channels
    held = [(0.0, [0x90, 48, 90]), (0.0, [0x91, 55, 90]), (0.0, [0x91, 64, 90])]
    seen = {}

    def sounding(d, n):  # after each bar (from 1), before the run's end releases what is held
        seen.setdefault(n, sorted((x.channel, x.pitch) for x in d.assembler.notes if x.end is None))

    _cc_run(held + [(1.0, [0xB1, 123, 0])], bars=2, on_bar=sounding)  # All Notes Off on channel 2 only
    assert seen[1] == [(0, 48)]
    seen.clear()
    _cc_run(held + [(1.0, [0xB0, 82, 127])], bars=2, on_bar=sounding)  # the panic CC: every channel
    assert seen[1] == []
    seen.clear()
    _cc_run(held, bars=2, on_bar=sounding)  # neither: all three still held
    assert seen[1] == [(0, 48), (1, 55), (1, 64)]


def test_cc_panic_closes_every_sounding_note_at_once():
    # a chord held over three bars: the variation of bar 0 sounds in bar 1 when the panic comes
    held = [(0.0, [0x90, p, 90]) for p in (48, 55, 64, 72)] + [(5.9, [0x80, p, 0]) for p in (48, 55, 64, 72)]
    d, _, sent = _cc_run(held + [(3.0, [0xB0, 82, 127])], bars=3)
    first = next(i for i, (_, m) in enumerate(sent) if m[:2] == [0xB0, 123])
    t_panic = sent[first][0]
    assert 103.0 <= t_panic <= 103.0 + 0.13  # handled within a 16th (the fake clock's step)
    assert [m for _, m in sent[first:first + 4]] == [[0xB0 | ch, 123, 0] for ch in range(4)]
    open_: dict = {}  # every note_on sent before the panic was closed by the time it ends
    for _, m in sent[:first]:
        key = (m[0] & 0x0F, m[1])
        if m[0] & 0xF0 == 0x90 and m[2] > 0:
            open_[key] = open_.get(key, 0) + 1
        elif m[0] & 0xF0 == 0x80:
            open_[key] = open_.get(key, 0) - 1
    assert sum(open_.values()) == 0 and len(open_) >= 4
    assert any(m[0] & 0xF0 == 0x80 and t == t_panic for t, m in sent[:first])  # the panic closed something
