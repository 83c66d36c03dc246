"""End to end on a real JACK server: the daemon process, real ports, MIDI clock, real chorales."""
import json
import signal
import time
from pathlib import Path

import pytest

from .conftest import Player, Recorder

CASES = Path(__file__).parent.parent / "data" / "cases"


def _bytes(ev: dict) -> list[int]:
    kind = ev["msg"]
    if kind == "clock":
        return [0xF8]
    if kind == "start":
        return [0xFA]
    if kind == "stop":
        return [0xFC]
    if kind == "active_sensing":
        return [0xFE]
    if kind == "sysex":
        return [0xF0] + [0x7D] + [i % 128 for i in range(ev["data_len"] - 2)] + [0xF7]
    if kind == "songpos":
        return [0xF2, ev["pos"] & 0x7F, ev["pos"] >> 7]
    if kind == "note_on":
        return [0x90 | ev["channel"], ev["note"], ev["velocity"]]
    if kind == "note_off":
        return [0x80 | ev["channel"], ev["note"], ev["velocity"]]
    raise ValueError(kind)


def _clock_run(player, bpm, bars, chord=None, t0=None, beats_per_bar=4):
    """Start, then MIDI clock for ``bars`` bars, a chord held from the downbeat."""
    sec = 60 / bpm / 24
    player.send([0xFA])
    t0 = time.perf_counter() + 0.02
    for c in range(bars * beats_per_bar * 24):
        while time.perf_counter() < t0 + c * sec:
            time.sleep(0.0005)
        if c == 0 and chord:
            for p in chord:
                player.send([0x90, p, 90])
        player.send([0xF8])
    return t0


def test_chorale_in_variation_out_one_bar_later(jack_server, tiny_model, tmp_path):
    from vqcpc.daemon.demo import run_demo

    r = run_demo("bwv269", 240.0, tmp_path, str(tiny_model[0]), force=False)
    assert r["midi_system"] == "existing"
    assert r["stuck_notes"] == 0
    assert r["late_bars"] == 0, r["late_bar_numbers"]
    assert r["bars_decoded"] >= r["bars"] - 1 and r["notes_out"] > 50
    ins, outs = set(r["input_bars_sounding"]), set(r["output_bars_with_onsets"])
    assert 0 not in outs  # nothing comes out before the first input bar has closed
    assert outs <= {b + 1 for b in ins}  # the variation of bar n plays during bar n + 1, and only then
    assert len(outs) >= 0.8 * len(ins)
    # onsets on the 16th grid of the recorded stream (JACK delivers per 5.3 ms period; a 16th is
    # 62.5 ms at 240 bpm): each nearest its own 16th, and nearly all well inside it
    assert r["grid_offset_max"] < 0.45 and r["grid_offset_p95"] < 0.3
    for f in ("input.mid", "variation.mid", "variation.musicxml", "demo.png"):
        assert (tmp_path / f).stat().st_size > 0
    from vqcpc.music.io import load

    assert load(tmp_path / "variation.mid").beats_per_bar == 3


def test_live_quirks_replay_survives_and_closes_every_note(daemon):
    proc, in_name, out_name = daemon("--clock", "midi")
    rec, player = Recorder(out_name), Player(in_name)
    events = [json.loads(line) for line in (CASES / "live_quirks.jsonl").read_text().splitlines() if line.strip()]
    t0 = time.perf_counter()
    for ev in events:
        while time.perf_counter() < t0 + ev["t"]:
            time.sleep(0.0005)
        player.send(_bytes(ev))
    time.sleep(0.3)
    assert proc.poll() is None, proc.stderr.read()
    assert rec.note_ons(), "the daemon sent no note in the quirky stream"
    assert rec.unclosed() == []  # after Stop every note it sent has its note_off
    # still working: a new run produces music again
    n = len(rec.note_ons())
    _clock_run(player, 240, 3, chord=[60, 64, 67, 72])
    player.send([0xFC])
    time.sleep(0.3)
    assert len(rec.note_ons()) > n and rec.unclosed() == []
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    rec.close()
    player.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_with_notes_sounding_sends_their_note_offs(daemon, sig):
    proc, in_name, out_name = daemon("--clock", "internal", "--bpm", "240")
    rec, player = Recorder(out_name), Player(in_name)
    for p in (48, 55, 64, 72):  # a chord held on: every output bar gets a variation
        player.send([0x90, p, 100])
    t_end = time.perf_counter() + 8
    while time.perf_counter() < t_end and len(rec.note_ons()) < 6:
        time.sleep(0.05)
    assert rec.unclosed(), "no note sounding when the signal came"
    proc.send_signal(sig)
    assert proc.wait(10) == 0
    time.sleep(0.2)
    assert rec.unclosed() == []
    rec.close()
    player.close()


def test_bursts_of_a_thousand_messages_keep_the_port_and_close_every_note(daemon, tmp_path):
    """Bypass echoes 1,000 note_ons whose note_offs never come, then panics by CC: each burst is far
    more than the scheduler may send without the watchdog's word that JACK still runs. The output
    must not be taken for lost (that reopened the port and cut the recorder off), and at SIGTERM all
    1,000 echoed notes get their note_off."""
    log = tmp_path / "log.jsonl"
    proc, in_name, out_name = daemon("--clock", "internal", "--bpm", "200", "--cc-bypass", "81",
                                     "--cc-panic", "82", "--log-json", str(log))
    rec, player = Recorder(out_name), Player(in_name)
    player.send([0xB0, 81, 127])
    for i in range(1000):  # 1,000 note_ons over 16 channels, 100 pitches
        player.send([0x90 | (i % 16), 24 + i % 100, 90])
        if i % 50 == 49:
            time.sleep(0.005)
    for _ in range(100):  # a panic button held down, 100 times 16 x CC 123 ... in one burst
        player.send([0xB0, 82, 127])
    for i in range(1000):
        player.send([0x90 | (i % 16), 24 + i % 100, 90])
    t_end = time.perf_counter() + 10
    while time.perf_counter() < t_end and len(rec.note_ons()) < 2000:
        time.sleep(0.05)
    assert len(rec.note_ons()) == 2000  # bypass echoes on the first output channel: 100 keys, 10 deep
    assert len(rec.unclosed()) == 100
    assert len([m for _, m in rec.events if m[0] & 0xF0 == 0xB0 and m[1] == 123]) >= 400  # every panic's CC 123
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    time.sleep(0.3)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e for e in events if e["event"] == "port_lost"] == []
    assert rec.unclosed() == []
    rec.close()
    player.close()


def test_an_unterminated_sysex_does_not_leave_the_daemon_deaf(daemon, tmp_path):
    """rtmidi's JACK input swallows everything after a sysex with no F7 until an F7 comes; the
    daemon's sysex-end client ends it, and the notes played after it are heard."""
    log = tmp_path / "log.jsonl"
    proc, in_name, out_name = daemon("--clock", "internal", "--bpm", "240", "--log-json", str(log))
    rec, player = Recorder(out_name), Player(in_name)
    player.send([0xF0, 0x7E, 0x01])  # a sysex cut off: no F7, ever
    time.sleep(0.05)
    for p in (48, 55, 64, 72):  # then a chord, held
        player.send([0x90, p, 100])
    t_end = time.perf_counter() + 8
    heard = []
    while time.perf_counter() < t_end and not heard:
        time.sleep(0.1)
        heard = [e for e in (json.loads(line) for line in log.read_text().splitlines())
                 if e["event"] == "bar_in" and not e["silent"]]
    assert heard, "every bar after the broken sysex was silent: the daemon went deaf"
    while time.perf_counter() < t_end and not rec.note_ons():
        time.sleep(0.05)
    assert rec.note_ons(), "the heard chord got no variation"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    time.sleep(0.2)
    assert rec.unclosed() == []
    rec.close()
    player.close()


def test_stop_mid_bar_closes_notes_and_keeps_running(daemon):
    proc, in_name, out_name = daemon("--clock", "midi")
    rec, player = Recorder(out_name), Player(in_name)
    _clock_run(player, 240, 2, chord=[50, 57, 65, 74])
    # clock on into the variation until something sounds (at most two more bars), then Stop mid-bar
    sec = 60 / 240 / 24
    for c in range(192):
        time.sleep(sec)
        player.send([0xF8])
        if c > 12 and rec.unclosed() and c % 96 not in range(90, 96):
            break
    assert rec.unclosed(), f"nothing sounding at the Stop ({len(rec.note_ons())} notes came out)"
    player.send([0xFC])
    time.sleep(0.3)
    assert rec.unclosed() == [] and proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    rec.close()
    player.close()


def test_template_mode_takes_the_templates_meter(daemon, tmp_path):
    from vqcpc.music.io import load, save

    template = save(load("bwv269"), tmp_path / "bwv269.mid")  # 3/4, and no --meter given
    log = tmp_path / "log.jsonl"
    proc, in_name, out_name = daemon("--template", str(template), "--bpm", "240", "--log-json", str(log))
    rec = Recorder(out_name)
    t_end = time.perf_counter() + 10
    while time.perf_counter() < t_end and log.read_text().count('"bar_out"') < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert next(e for e in events if e["event"] == "ready")["meter"] == "3/4"
    bars = [e for e in events if e["event"] == "bar_in"]
    assert len(bars) >= 3 and all(len(e["codes"]) == 3 for e in bars)
    time.sleep(0.2)
    assert rec.unclosed() == []  # (the tiny model may well play rests only: its notes are not asserted)
    rec.close()
