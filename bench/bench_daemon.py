"""Daemon benchmark (DESIGN §8): scheduling jitter measured at a separate JACK client, and memory over
a long stream driven by a fake clock. Both on the shipped default model, in one run.

    python bench/bench_daemon.py [--model uniform] [--bars 32] [--bpm 120] [--mem-bars 1000] [--json bench/results.json]

jitter: `vqcpc-daemon --clock internal --template CHORALE --log-json LOG --log-sends` on JACK (a
`jackd -d dummy` under its own name is started when no server runs), its output connected with
--connect-out to a recorder client in this process that stamps every message with
time.perf_counter() on arrival. The daemon's "sent" events give each message's scheduled time and the
time its scheduler sent it (perf_counter is CLOCK_MONOTONIC, shared by both processes); messages are
paired in order. Reported: |arrival - scheduled| and |sent - scheduled|, median and p99, in ms.

memory: the daemon's core (no ports, no threads; daemon.sim) decodes a chorale played in a loop,
driven by a fake clock as fast as it decodes; VmRSS after bars 10, 100, 500 and 1,000, and the
growth between them.

Results go under "daemon" in the JSON file; its other keys (bench_decode.py's) are kept.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHORALE = "bwv38.6"  # a 4/4 chorale, as in bench_decode.py


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def stats_ms(values: list[float]) -> dict:
    a = np.abs(np.asarray(values)) * 1000
    return {"median": round(float(np.median(a)), 3), "p99": round(float(np.percentile(a, 99)), 3),
            "max": round(float(a.max()), 3), "n": len(a)}


def jitter(model_dir: Path, bars: int, bpm: float) -> dict:
    import rtmidi

    from vqcpc.daemon import ports
    from vqcpc.daemon.demo import midi_system
    from vqcpc.music.io import load, save

    grid = load(CHORALE, fold=True)
    with tempfile.TemporaryDirectory() as tmp, midi_system() as system:
        template = save(grid, Path(tmp) / "template.mid", bpm=bpm)
        log = Path(tmp) / "log.jsonl"
        tag = f"{os.getpid()}"
        arrivals: list[tuple[float, list[int]]] = []
        rec = rtmidi.MidiIn(ports.api_for("jack"), name=f"vqcpc-bench-rec-{tag}")
        rec.open_virtual_port("rec")
        listener = ports.Listener(rec, lambda msg, t: arrivals.append((t, msg)), drop=ports.NOT_MUSIC)
        cmd = [sys.executable, "-m", "vqcpc.daemon", "--model", str(model_dir), "--api", "jack", "--clock", "internal",
               "--bpm", f"{bpm:g}", "--meter", f"{grid.beats_per_bar}/4", "--template", str(template),
               "--in-port", f"vqcpc in {tag}", "--out-port", f"vqcpc out {tag}",
               "--connect-out", f"vqcpc-bench-rec-{tag}:rec", "--log-json", str(log), "--log-sends", "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            t_end = time.time() + 60 + bars * grid.beats_per_bar * 60 / bpm * 2
            while time.time() < t_end and proc.poll() is None:
                text = log.read_text() if log.exists() else ""
                if text.count('"event": "bar_in"') >= bars + 2:
                    break
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
        time.sleep(0.2)
        listener.stop()
        rec.close_port()
        rec.delete()
        if proc.returncode not in (0, -signal.SIGTERM):
            raise SystemExit(f"the daemon failed ({proc.returncode}): {err.strip().splitlines()[-3:]}")
        events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    sends = [(s[0], s[1], s[2:]) for e in events if e["event"] == "sent" for s in e["sends"]]
    # pair in order: JACK keeps the order; the shutdown's note_offs and CC 123s (not scheduled) come last
    arrive, sent, j = [], [], 0
    for due, t_sent, msg in sends:
        while j < len(arrivals) and arrivals[j][1] != msg:
            j += 1
        if j == len(arrivals):
            break
        arrive.append(arrivals[j][0] - due)
        sent.append(t_sent - due)
        j += 1
    shutdown = next(e for e in events if e["event"] == "shutdown")["stats"]
    return {"midi_system": system, "bpm": bpm, "bars": bars, "messages_scheduled": len(sends),
            "messages_paired": len(arrive), "late_bars": shutdown["late_bars"],
            "decode_ms": shutdown["decode_ms"],
            "arrival_minus_scheduled_ms": stats_ms(arrive),
            "arrival_minus_scheduled_signed_median_ms": round(float(np.median(arrive)) * 1000, 3),
            # the spread about that median: the part a constant --latency-ms cannot take away
            "arrival_about_its_median_ms": stats_ms(list(np.asarray(arrive) - np.median(arrive))),
            "sent_minus_scheduled_ms": stats_ms(sent)}


def memory(model_dir: Path, bars: int, bpm: float) -> dict:
    from vqcpc.daemon.core import DaemonConfig
    from vqcpc.daemon.sim import bar_events, drive, fake_daemon, looped
    from vqcpc.export.runtime import Engine
    from vqcpc.music.grid import TICKS_PER_BEAT
    from vqcpc.music.io import load

    engine = Engine(model_dir, threads=1)
    grid = load(CHORALE, fold=True)
    tpb = grid.beats_per_bar * TICKS_PER_BEAT
    period = math.ceil(len(grid.tokens) / tpb) * tpb * 60 / bpm / TICKS_PER_BEAT  # whole bars a round
    d, clock, sink = fake_daemon(engine, DaemonConfig(beats_per_bar=grid.beats_per_bar, bpm=bpm))
    marks = sorted({m for m in (1, 10, 100, 500, 1000, bars) if m <= bars})
    rss: dict[str, float] = {}
    t0 = time.perf_counter()

    def on_bar(n: int) -> None:
        if n in marks:
            gc.collect()
            rss[str(n)] = round(rss_mb(), 2)
            print(f"  bar {n:>5}: RSS {rss[str(n)]:.1f} MB, {time.perf_counter() - t0:.0f} s, "
                  f"heap {len(d.scheduler.heap)}, ledger {len(d.scheduler.ledger)}", flush=True)

    drive(d, clock, looped(bar_events(grid, bpm), period), bars, on_bar=on_bar)
    wall = time.perf_counter() - t0
    out = {"bars": bars, "rss_mb": rss, "wall_s": round(wall, 1), "bars_per_s": round(bars / wall, 2),
           "messages_sent": sink.messages, "bars_out": d.stats.bars_out,
           "at_end": {"ledger": len(d.scheduler.ledger), "sounding_at_port": sink.sounding(),
                      "heap": len(d.scheduler.heap), "decode_ms_kept": len(d.stats.decode_ms)}}
    if "10" in rss and str(bars) in rss:
        out["growth_mb_10_to_end"] = round(rss[str(bars)] - rss["10"], 2)
    if "100" in rss and str(bars) in rss:
        out["growth_mb_100_to_end"] = round(rss[str(bars)] - rss["100"], 2)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="uniform")
    ap.add_argument("--bars", type=int, default=32, help="bars of the jitter run (real time)")
    ap.add_argument("--bpm", type=float, default=120.0)
    ap.add_argument("--mem-bars", type=int, default=1000, help="bars of the fake-clock memory run")
    ap.add_argument("--skip", choices=["jitter", "memory"], action="append", default=[])
    ap.add_argument("--json", type=Path, default=Path("bench/results.json"))
    args = ap.parse_args()

    from vqcpc.models.registry import resolve_model

    model_dir = resolve_model(args.model)
    out = {"model": model_dir.name}
    if "jitter" not in args.skip:
        print(f"jitter: {args.bars} bars at {args.bpm:g} bpm through the daemon on JACK ...", flush=True)
        j = jitter(model_dir, args.bars, args.bpm)
        out["jitter"] = j
        a, s = j["arrival_minus_scheduled_ms"], j["sent_minus_scheduled_ms"]
        print(f"  {j['messages_paired']}/{j['messages_scheduled']} messages paired, late bars {j['late_bars']}")
        print(f"  |arrival - scheduled| at the recorder: median {a['median']:.2f} ms, p99 {a['p99']:.2f} ms, "
              f"max {a['max']:.2f} ms (signed median {j['arrival_minus_scheduled_signed_median_ms']:.2f} ms)")
        m = j["arrival_about_its_median_ms"]
        print(f"  |arrival - its median| (jitter):       median {m['median']:.2f} ms, p99 {m['p99']:.2f} ms")
        print(f"  |sent - scheduled| in the daemon:      median {s['median']:.3f} ms, p99 {s['p99']:.3f} ms, "
              f"max {s['max']:.3f} ms")
    if "memory" not in args.skip:
        print(f"memory: {args.mem_bars} bars on a fake clock ...", flush=True)
        m = memory(model_dir, args.mem_bars, args.bpm)
        out["memory"] = m
        print(f"  RSS {m['rss_mb']} MB; growth 10 -> {args.mem_bars}: {m.get('growth_mb_10_to_end')} MB, "
              f"100 -> {args.mem_bars}: {m.get('growth_mb_100_to_end')} MB; {m['bars_per_s']} bars/s; at the end {m['at_end']}")
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    results["daemon"] = {**results.get("daemon", {}), **out}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.json} (key 'daemon')")


if __name__ == "__main__":
    main()
