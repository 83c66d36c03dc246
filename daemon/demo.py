"""`vqcpc demo`: a real chorale in, variations out, through the real daemon on real MIDI ports.

Starts a JACK server (dummy driver) when there is no MIDI system, starts `vqcpc-daemon` as its own
process on the default model, plays a test chorale of the music21 corpus into its input with MIDI
clock in real time, records its output, and reports what came back.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from vqcpc.music.errors import InputError, VqcpcError
from vqcpc.music.grid import N_VOICES, TICKS_PER_BEAT, Grid, Report, notes_of_voice

from . import ports
from .core import freeze_heap

DEFAULT_BWV = "bwv269"  # a test chorale: no model trained on it


@contextmanager
def midi_system(name: str | None = None):
    """Yields a description of the MIDI system in use; starts `jackd -d dummy` (and stops it
    after) when there is neither an ALSA sequencer nor a running JACK server."""
    api = ports.api_for("auto")
    import rtmidi

    if api != rtmidi.API_UNIX_JACK or ports.jack_server_running():
        yield "existing"
        return
    if shutil.which("jackd") is None:
        raise ports.MidiSystemError("no MIDI system and no jackd to start one: install jackd2 "
                                    "(apt-get install --no-install-recommends jackd2) or start your JACK/ALSA setup")
    server = name or f"vqcpc-demo-{os.getpid()}"
    env_before = os.environ.get("JACK_DEFAULT_SERVER")
    log = tempfile.TemporaryFile()
    try:
        proc = ports.start_dummy_jackd(server, log)
    except ports.MidiSystemError as err:
        log.seek(0)
        raise ports.MidiSystemError(f"{err}: {log.read().decode(errors='replace').strip()[-300:]}") from err
    os.environ["JACK_DEFAULT_SERVER"] = server
    try:
        yield f"jackd -n {server} (dummy driver, started for this run)"
    finally:
        ports.stop_jackd(proc)
        if env_before is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = env_before


def input_events(grid: Grid, bpm: float, channels=(0, 1, 2, 3), velocity: int = 80):
    """(seconds from the first clock, MIDI bytes) of a grid played with MIDI clock at ``bpm``:
    clock every 1/24 quarter, notes on channels S, A, T, B; note_offs before note_ons."""
    sec_tick = 60.0 / bpm / TICKS_PER_BEAT
    events = []
    for v in range(N_VOICES):
        for s, e, p in notes_of_voice(grid.tokens[:, v]):
            events.append((e * sec_tick, 0, [0x80 | channels[v], p, 0]))
            events.append((s * sec_tick, 1, [0x90 | channels[v], p, velocity]))
    return events


def recorded_grid(rec: list[tuple[float, list[int]]], t0: float, bpm: float, n_ticks: int, bpb: int,
                  channels=(0, 1, 2, 3)) -> tuple[Grid, int]:
    """The recorded output as a grid (arrival times -> nearest 16th) and the notes left sounding."""
    from vqcpc.music.voicing import Note, place_voice

    sec_tick = 60.0 / bpm / TICKS_PER_BEAT
    open_: dict[tuple[int, int], list[float]] = {}
    per_voice: list[list] = [[] for _ in range(N_VOICES)]
    for t, msg in rec:
        kind, ch = msg[0] & 0xF0, msg[0] & 0x0F
        if kind not in (0x80, 0x90) or ch not in channels:
            continue
        tick = (t - t0) / sec_tick
        key = (ch, msg[1])
        if kind == 0x90 and msg[2] > 0:
            open_.setdefault(key, []).append(tick)
        elif open_.get(key):
            start = open_[key].pop(0)
            per_voice[channels.index(ch)].append(Note(start / 4, tick / 4, msg[1]))
    stuck = sum(len(v) for v in open_.values())
    report = Report()
    tokens = np.stack([place_voice(per_voice[v], n_ticks, lowest=v == 3, report=report) for v in range(N_VOICES)], 1)
    return Grid(tokens, beats_per_bar=bpb, source="recorded output", report=report), stuck


def chorale_arg(bwv: str) -> str:
    """--bwv: '269', 'bwv38.6', 'BWV 26.6' -> the corpus name; a file path or anything else is refused."""
    from vqcpc.music.score import chorale_name

    name = chorale_name(bwv) or chorale_name(f"bwv{bwv}")
    if name is None:
        raise InputError(f"--bwv {bwv}: takes a chorale of the music21 corpus (e.g. 269 or bwv269), not a file; "
                         "vqcpc-daemon --template FILE plays variations of a file")
    return name


def run_demo(bwv: str, bpm: float, out_dir: Path, model: str, force: bool, beat_search: int = 1) -> dict:
    from vqcpc.export.runtime import Engine
    from vqcpc.models.generate import padded_to_bars, template_codes
    from vqcpc.models.registry import resolve_model
    from vqcpc.music.corpus import load_split
    from vqcpc.music.io import load, save
    from vqcpc.music.plot import plot_grids

    names = ["input.mid", "variation.mid", "variation.musicxml", "demo.png", "daemon-log.jsonl"]
    clash = [out_dir / n for n in names if (out_dir / n).exists()]
    if clash and not force:
        raise InputError(f"{clash[0]}: already exists (use --force to overwrite)")
    grid = load(bwv, fold=True)
    if grid.beats_per_bar not in (3, 4):
        raise InputError(f"{bwv}: meter {grid.beats_per_bar}/4; the models know 3/4 and 4/4")
    model_dir = resolve_model(model)
    engine = Engine(model_dir, threads=1)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}"
    in_name, out_name = f"vqcpc in {tag}", f"vqcpc out {tag}"
    log_path = out_dir / "daemon-log.jsonl"
    log_path.unlink(missing_ok=True)
    bars = grid.bars
    with midi_system() as system:
        api = ports.api_for("auto")
        cmd = [sys.executable, "-m", "vqcpc.daemon", "--model", str(model_dir), "--meter", f"{grid.beats_per_bar}/4",
               "--in-port", in_name, "--out-port", out_name, "--clock", "midi", "--log-json", str(log_path), "--quiet",
               "--beat-search", str(beat_search)]
        daemon = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for_port(api, in_name, daemon)
            rec: list = []
            recorder = ports.open_input(api, "recorder", client=f"vqcpc-demo-rec-{tag}", connect=out_name)
            listener = ports.Listener(recorder, lambda msg, t: rec.append((t, msg)), drop=ports.NOT_MUSIC)
            player = ports.open_output(api, "player", client=f"vqcpc-demo-{tag}", connect=in_name)
            freeze_heap()
            time.sleep(0.3)
            t0 = _play(player, grid, bpm, extra_bars=2)
            time.sleep(0.3)
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                _, err = daemon.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
                _, err = daemon.communicate()
        time.sleep(0.2)
        listener.stop()
        for port in (recorder, player):
            port.close_port()
            port.delete()  # leave the JACK server before it stops
    if daemon.returncode not in (0, -signal.SIGTERM):
        raise VqcpcError(f"the daemon failed (exit {daemon.returncode}): {err.strip().splitlines()[-1:]}")
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    decode_ms = [e["decode_ms"] for e in events if e["event"] == "bar_out" and "decode_ms" in e]
    late = sorted({e["bar"] for e in events if e["event"] == "late"})
    tpb = grid.ticks_per_bar
    total_ticks = (bars + 2) * tpb
    # the MIDI system's own delay (clock in, notes out: one or two JACK periods each way) is measured
    # as the median lag of the recorded onsets behind their 16ths and reported, then aligned away, as
    # a DAW's latency compensation would
    sec_tick = 60.0 / bpm / TICKS_PER_BEAT
    raw = np.array([(t - t0) / sec_tick for t, m in rec if (m[0] & 0xF0) == 0x90 and len(m) > 2 and m[2] > 0])
    lag = float(np.median((raw - np.round(raw) + 0.5) % 1.0 - 0.5)) if len(raw) else 0.0
    t0 += lag * sec_tick
    var, stuck = recorded_grid(rec, t0, bpm, total_ticks, grid.beats_per_bar)
    shifted = Grid(var.tokens[tpb: tpb + bars * tpb], beats_per_bar=grid.beats_per_bar,
                   pickup_ticks=grid.pickup_ticks, key=grid.key, source=f"variation of {grid.source}")
    in_codes = template_codes(engine, grid)
    out_codes = template_codes(engine, shifted)
    skip = grid.pickup_ticks // TICKS_PER_BEAT
    sounding = [b for b in range(len(in_codes)) if b >= skip and (padded_to_bars(grid)[b * 4:(b + 1) * 4] >= 2).any()]
    heard = np.full(len(in_codes), -1)  # the codes the daemon encoded from what reached its port
    for e in events:
        if e["event"] == "bar_in" and not e["silent"] and e["bar"] * grid.beats_per_bar < len(heard):
            heard[e["bar"] * grid.beats_per_bar:(e["bar"] + 1) * grid.beats_per_bar] = e["codes"]
    consistency = float(np.mean([heard[b] == out_codes[b] for b in sounding])) if sounding else float("nan")
    vs_file = float(np.mean([in_codes[b] == out_codes[b] for b in sounding])) if sounding else float("nan")
    heard_vs_file = float(np.mean([in_codes[b] == heard[b] for b in sounding])) if sounding else float("nan")
    others = [n for n in load_split()["test"] if n != grid.source]
    chance = []
    for name in others:
        other = load(name, fold=True)
        if other.beats_per_bar == grid.beats_per_bar:
            oc = np.resize(template_codes(engine, other), len(in_codes))
            chance.append(float(np.mean([oc[b] == in_codes[b] for b in sounding])))
    save(grid, out_dir / "input.mid", force=True, bpm=bpm)
    played = Grid(var.tokens[: (bars + 1) * tpb], beats_per_bar=grid.beats_per_bar, key=grid.key,
                  source="variation (as played, one bar late)")
    save(played, out_dir / "variation.mid", force=True, bpm=bpm)
    save(shifted, out_dir / "variation.musicxml", force=True)
    plot_grids([(f"input {grid.source} at {bpm:g} bpm", grid, in_codes),
                (f"daemon output, shifted back one bar: code consistency {consistency:.2f}", shifted, out_codes)],
               out_dir / "demo.png")
    onset_ticks = raw - lag
    out_bars = sorted({int(round(x)) // tpb for x in onset_ticks})
    in_bars = sorted({int(b) for b in np.nonzero((padded_to_bars(grid).reshape(-1, tpb * N_VOICES) != 0).any(1))[0]})
    d = np.asarray(decode_ms) if decode_ms else np.zeros(1)
    return {"chorale": grid.source, "bpm": bpm, "model": engine.name, "beat_search": beat_search, "midi_system": system, "bars": bars,
            "bars_decoded": len(decode_ms), "late_bars": len(late), "late_bar_numbers": late, "stuck_notes": stuck,
            "decode_ms": {"median": round(float(np.median(d)), 2), "p99": round(float(np.percentile(d, 99)), 2)},
            "code_consistency": round(consistency, 4), "chance_consistency": round(float(np.median(chance)), 4),
            "code_consistency_vs_file": round(vs_file, 4), "heard_codes_equal_file_codes": round(heard_vs_file, 4),
            "notes_out": int(len(onset_ticks)),
            "input_bars_sounding": in_bars, "output_bars_with_onsets": out_bars,
            "midi_latency_ms": round(lag * sec_tick * 1000, 2),
            "grid_offset_max": round(float(np.abs(onset_ticks - np.round(onset_ticks)).max()), 3) if len(onset_ticks) else None,
            "grid_offset_p95": round(float(np.percentile(np.abs(onset_ticks - np.round(onset_ticks)), 95)), 3) if len(onset_ticks) else None,
            "files": {n: str(out_dir / n) for n in names}}


def _wait_for_port(api, name, proc, timeout=30.0):
    import rtmidi

    probe = rtmidi.MidiOut(api, name="vqcpc-demo-probe")
    try:
        t_end = time.time() + timeout
        while time.time() < t_end:
            if proc.poll() is not None:
                err = proc.stderr.read() if proc.stderr else ""
                raise VqcpcError(f"the daemon exited at start: {err.strip().splitlines()[-1:] or proc.returncode}")
            if any(name in p for p in probe.get_ports()):
                return
            time.sleep(0.1)
        raise VqcpcError(f"the daemon's port {name!r} did not appear within {timeout:g} s")
    finally:
        probe.delete()


def _play(port, grid: Grid, bpm: float, extra_bars: int) -> float:
    """Start, clock and notes in real time; returns the wall time of song position 0."""
    sec_clock = 60.0 / bpm / 24
    n_clocks = (grid.bars + extra_bars) * grid.ticks_per_bar * 6
    notes = sorted(input_events(grid, bpm), key=lambda e: (e[0], e[1]))
    port.send_message([0xFA])
    t0 = time.perf_counter() + 0.05
    i = 0
    for c in range(n_clocks + 1):
        due = t0 + c * sec_clock
        while i < len(notes) and notes[i][0] + t0 <= due:
            _sleep_until(t0 + notes[i][0])
            port.send_message(notes[i][2])
            i += 1
        _sleep_until(due)
        port.send_message([0xF8])
    port.send_message([0xFC])
    return t0


def _sleep_until(t: float) -> None:
    while True:
        left = t - time.perf_counter()
        if left <= 0:
            return
        time.sleep(min(left, 0.002) if left < 0.004 else left - 0.002)


def demo_command():
    import click

    from vqcpc.music.params import Finite

    @click.command("demo")
    @click.option("--bwv", default=DEFAULT_BWV, show_default=True, help="A chorale of the music21 corpus (a test chorale by default).")
    @click.option("--bpm", type=Finite(20, 400), default=120.0, show_default=True)
    @click.option("-o", "--out", "out", type=click.Path(file_okay=False), default="demo-out", show_default=True)
    @click.option("--model", default="uniform", show_default=True)
    @click.option("--beat-search", type=click.IntRange(1, 8), default=1, show_default=True,
                  help="The daemon's --beat-search: K candidates of every beat, one with the wanted code sent.")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    @click.option("--force", is_flag=True, help="Overwrite earlier demo files in OUT.")
    def demo(bwv, bpm, out, model, beat_search, as_json, force):
        """Play a chorale into the daemon over real MIDI ports with MIDI clock and record the variation."""
        r = run_demo(chorale_arg(bwv), bpm, Path(out), model, force, beat_search)
        if as_json:
            click.echo(json.dumps(r))
            return
        click.echo(f"{r['chorale']} at {r['bpm']:g} bpm through the daemon ({r['model']}, {r['midi_system']}):")
        click.echo(f"  bars {r['bars']}, decoded {r['bars_decoded']}, late bars {r['late_bars']}, stuck notes {r['stuck_notes']}")
        click.echo(f"  decode per bar: median {r['decode_ms']['median']} ms, p99 {r['decode_ms']['p99']} ms")
        click.echo(f"  code consistency {r['code_consistency']:.2f} (chance {r['chance_consistency']:.2f})")
        click.echo(f"  files: {', '.join(r['files'].values())}")

    return demo
