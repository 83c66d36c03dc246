"""The daemon's machinery without ports: input processing, bar assembly, decoding and scheduling.

Threads (each a class with start()/stop()):
- the port's reader (``ports.Listener``) hands each message with its arrival time to ``Daemon.feed``,
  which only enqueues;
- ``InputThread``: follows the transport, assembles bars, encodes each closed bar into codes;
- ``DecodeWorker``: decodes bars in order with the ONNX stream, turning tokens into timed notes;
- ``Scheduler``: sends each note at its time, drops what is late, keeps the ledger.
"""
from __future__ import annotations

import collections
import gc
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from vqcpc.models.sampling import Sampler
from vqcpc.music.grid import HOLD, PITCH_OFFSET, REST, TOKENS_PER_BEAT

from .assembler import Bar, BarAssembler
from .clock import CLOCKS_PER_TICK, Transport
from .scheduler import NOTE_OFF, NOTE_ON, Scheduler

log = logging.getLogger(__name__)


def freeze_heap() -> None:
    """Before a real-time run: collect once, then move every live object out of the collector's
    reach (``gc.freeze``). A full collection scans every tracked object with the GIL held, stalling
    every thread: measured here, 11 ms in the daemon (30 k objects) and about 100 ms in a process
    with music21 and torch loaded (200 k), where a stall of 0.24 s in the demo's player sent a
    bar's MIDI clocks late and in a burst (a bar counted late). The modules, the model and the
    corpus are never garbage; what the stream allocates is still collected."""
    gc.collect()
    gc.freeze()


@dataclass
class DaemonConfig:
    beats_per_bar: int = 4
    clock: str = "midi"  # "midi": follow the DAW's clock; "internal": --bpm
    bpm: float = 120.0
    voicing: str = "pitch"  # or "channels"
    in_channels: tuple = (0, 1, 2, 3)
    out_channels: tuple = (0, 1, 2, 3)
    delay_bars: int = 1  # the variation of bar n plays during bar n + delay_bars
    latency_ms: float = 0.0  # added to every output time
    temperature: float = 1.0
    top_p: float = 0.95
    seed: int | None = 0
    cc_temperature: int = 70
    cc_freeze: int = 80
    cc_bypass: int = 81
    cc_panic: int = 82
    close_early_ticks: float = 0.5  # a bar closes half a 16th early: later onsets snap into the next bar
    log_sends: bool = False  # with a log: a "sent" event each bar, the due and send time of every message
    rules: bool = True  # the Sampler's voice-leading rules (textbook ranges, no parallels, no crossings)
    beat_search: int = 1  # K > 1: K candidates of every beat, one with the wanted code sent


STATS_WINDOW = 1000  # per-bar figures kept: the summary's median and p99 are over the last ones


def _window() -> collections.deque:
    return collections.deque(maxlen=STATS_WINDOW)


@dataclass
class Stats:
    """Counters and the recent per-bar figures: bounded however long the stream runs."""
    bars_in: int = 0
    bars_out: int = 0
    silent_bars: int = 0
    late_bars: int = 0
    recent_late: collections.deque = field(default_factory=lambda: collections.deque(maxlen=64))
    decode_ms: collections.deque = field(default_factory=_window)
    first_tick_ms: collections.deque = field(default_factory=_window)
    last_codes: list = field(default_factory=list)
    last_bar: int | None = None  # the song's number (from 0, as in --log-json) of the last bar closed
    beats_decoded: int = 0  # beats decoded (non-silent bars) ...
    beats_kept: int = 0  # ... whose decoded notes the model's encoder gives the wanted code
    ignored: int = 0  # messages the daemon does not use (sysex, active sensing, ...)


class Daemon:
    def __init__(self, engine, send, cfg: DaemonConfig, *, now=time.perf_counter, log_json=None):
        if cfg.beats_per_bar not in (3, 4):
            raise ValueError("meter must be 3/4 or 4/4")
        self.cfg, self.engine, self.now = cfg, engine, now
        self.tpb = cfg.beats_per_bar * 4
        self.transport = Transport(bpm=cfg.bpm, internal=cfg.clock == "internal", now=now)
        self.stats = Stats()
        self.events_file = log_json
        self.lock = threading.Lock()
        self.scheduler = Scheduler(self.transport, send, latency_s=cfg.latency_ms / 1000, now=now,
                                   on_late=self._late, on_lost=self._output_lost, channels=cfg.out_channels)
        self.ports_lost: dict[str, str] = {}  # "output" / "input" -> why, while it is lost
        self.notices: collections.deque[str] = collections.deque(maxlen=32)  # port news for the terminal
        self.assembler = BarAssembler(cfg.beats_per_bar, engine.ranges, voicing=cfg.voicing,
                                      in_channels=cfg.in_channels)
        self.decoder = DecodeWorker(self)
        self.input = InputThread(self)
        if cfg.log_sends and log_json is not None:
            self.scheduler.trace = []
        self.temperature = cfg.temperature
        self.freeze = False
        self.bypass = False

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self.scheduler.start()
        self.decoder.start()
        self.input.start()
        if self.cfg.clock == "internal":
            self.transport.start_internal(self.now() + 0.05)
            self.event("start", clock="internal", bpm=self.cfg.bpm)

    def stop(self, block: bool = True) -> None:
        """Stop every thread; every note that was sent gets its note_off."""
        self.input.stop(block)
        self.decoder.stop(block)
        self.scheduler.stop(block)
        self.log_sends()
        self.event("shutdown", stats=self.summary())

    def feed(self, msg: list[int], t: float | None = None) -> None:
        """From the port's reader: enqueue (timestamped now when ``t`` is not given), nothing else."""
        self.input.q.put((list(msg), self.now() if t is None else t))

    def pump(self) -> None:
        """Without the threads (a fake clock drives, e.g. tests and the memory benchmark): the
        queued input, the bars that closed by now, their decoding, and every event due by now."""
        self.input.pump()
        self.decoder.pump()
        self.scheduler.pump()

    # -- reporting --------------------------------------------------------------------------------
    def log_sends(self) -> None:
        """``log_sends``: a "sent" event with [due, sent, byte, ...] (perf_counter seconds) of every
        scheduled message sent since the last one."""
        if self.scheduler.trace is not None:
            sends = self.scheduler.take_trace()
            if sends:
                self.event("sent", sends=[[round(due, 6), round(t, 6), *msg] for due, t, msg in sends])

    def _late(self, bar: int) -> None:
        if bar >= 0 and bar not in self.stats.recent_late:  # late events come bar after bar
            self.stats.recent_late.append(bar)
            self.stats.late_bars += 1
            self.event("late", bar=bar)

    # -- port loss (the watchdog in link.py finds it and brings the ports back) --------------------
    def _output_lost(self, reason: str) -> None:
        """From the scheduler, under its lock: a send failed or the watchdog marked the output lost."""
        self._port_news("port_lost", "output", f"output lost ({reason}); "
                        f"{len(self.scheduler.ledger)} notes to close when it returns",
                        reason=reason, sounding=len(self.scheduler.ledger))

    def output_lost(self, reason: str) -> None:
        self.scheduler.mark_lost(reason)

    def output_back(self, name: str | None = None, send=None) -> None:
        """The output is back (``send``: its new send function): the ledger's note_offs and CC 123
        on every output channel go out first, then the music resumes."""
        n, channels = self.scheduler.restore(self.cfg.out_channels, send)
        self._port_news("port_back", "output", f"output back{f' ({name})' if name else ''}: {n} note_offs "
                        f"and CC 123 on channels {','.join(str(c + 1) for c in channels)} sent",
                        name=name, note_offs=n, cc123_channels=[c + 1 for c in channels])

    def input_lost(self, reason: str) -> None:
        if "input" not in self.ports_lost:
            self._port_news("port_lost", "input", f"input lost ({reason})", reason=reason)

    def input_back(self, name: str | None = None) -> None:
        if "input" in self.ports_lost:
            self._port_news("port_back", "input", f"input back{f' ({name})' if name else ''}", name=name)

    def _port_news(self, kind: str, port: str, text: str, **data) -> None:
        if kind == "port_lost":
            self.ports_lost[port] = data.get("reason", "")
        else:
            self.ports_lost.pop(port, None)
        self.notices.append(text)
        self.event(kind, port=port, **data)

    def event(self, kind: str, **data) -> None:
        if self.events_file is not None:
            with self.lock:
                self.events_file.write(json.dumps({"t": round(self.now(), 4), "event": kind, **data}) + "\n")
                self.events_file.flush()

    def summary(self) -> dict:
        d = np.asarray(self.stats.decode_ms) if self.stats.decode_ms else np.zeros(1)
        return {"bars_in": self.stats.bars_in, "bars_out": self.stats.bars_out, "silent_bars": self.stats.silent_bars,
                "late_bars": self.stats.late_bars, "decode_ms": {"median": round(float(np.median(d)), 2),
                                                                      "p99": round(float(np.percentile(d, 99)), 2)},
                "sounding_now": len(self.scheduler.ledger), "ignored_messages": self.stats.ignored,
                "code_consistency_own": round(self.stats.beats_kept / self.stats.beats_decoded, 4)
                if self.stats.beats_decoded else None}

    def status_line(self) -> str:
        s = self.stats
        last = s.decode_ms[-1] if s.decode_ms else 0.0
        bar = "   -" if s.last_bar is None else f"{s.last_bar:>4}"
        return (f"bar {bar} | codes {' '.join(str(c) for c in s.last_codes):<12} | decode {last:6.1f} ms"
                f" | late bars {s.late_bars} | {self.transport.bpm:5.1f} bpm"
                + (" | FREEZE" if self.freeze else "") + (" | BYPASS" if self.bypass else "")
                + "".join(f" | {port.upper()} LOST" for port in sorted(self.ports_lost)))


class InputThread:
    """Processes input in arrival order: transport, notes, controls; closes and encodes bars."""

    def __init__(self, d: Daemon):
        self.d = d
        self.q: queue.Queue = queue.Queue()
        self.bar = 0  # the bar being assembled
        self.last_codes: np.ndarray | None = None
        self.template = None  # a Grid: template mode plays variations of its bars, in a loop
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="vqcpc-input", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, block: bool = True) -> None:
        self._stop = True
        self.q.put(None)
        if block and self.thread.is_alive():
            self.thread.join(timeout=2.0)

    def _run(self) -> None:
        while not self._stop:
            try:
                item = self.q.get(timeout=0.005)
            except queue.Empty:
                item = False
            if item is None:
                break
            self._process(item)

    def pump(self) -> None:
        while True:
            try:
                item = self.q.get_nowait()
            except queue.Empty:
                break
            if item is None:
                break
            self._process(item)
        self._process(False)

    def _process(self, item) -> None:
        try:
            if item:
                self._handle(*item)
            self._maybe_close_bars()
        except Exception:  # nothing on the port may stop the daemon
            log.exception("input message %r ignored", item)

    def _position(self, t: float) -> float | None:
        return self.d.transport.position_at(t)

    def _handle(self, msg: list[int], t: float) -> None:
        d, tr = self.d, self.d.transport
        if not msg:
            return
        status = msg[0]
        if status == 0xF8:
            if not tr.internal:
                tr.on_clock(t)
        elif status == 0xFA and not tr.internal:
            tr.on_start(t)
            self._transport_change(0.0)
            self.bar = 0
            d.event("start")
        elif status == 0xFB and not tr.internal:
            tr.on_continue(t)
            self._transport_change(tr.clock_count / CLOCKS_PER_TICK)
            self.bar = int(tr.clock_count / CLOCKS_PER_TICK) // d.tpb
            d.event("continue")
        elif status == 0xFC and not tr.internal:
            tr.on_stop(t)
            self._transport_change(None)
            d.event("stop")
        elif status == 0xF2 and len(msg) >= 3 and not tr.internal:
            pos = (msg[1] & 0x7F) | ((msg[2] & 0x7F) << 7)
            tr.on_song_position(pos, t)
            self._transport_change(float(pos))
            self.bar = pos // d.tpb
            d.event("song_position", sixteenths=pos)
        elif 0x80 <= status < 0xF0 and len(msg) >= 3:
            self._channel_message(status & 0xF0, status & 0x0F, msg[1] & 0x7F, msg[2] & 0x7F, t)
        else:
            d.stats.ignored += 1

    def _channel_message(self, kind: int, ch: int, a: int, b: int, t: float) -> None:
        d, cfg = self.d, self.d.cfg
        pos = self._position(t)
        if kind == 0xB0:
            if a == cfg.cc_temperature:
                d.temperature = 0.1 + 1.9 * b / 127
            elif a == cfg.cc_freeze:
                d.freeze = b >= 64
            elif a == cfg.cc_bypass:
                d.bypass = b >= 64
                if not d.bypass:
                    d.scheduler.flush()
            elif a == cfg.cc_panic and b >= 64:
                d.scheduler.panic(set(cfg.out_channels))
                d.assembler.all_notes_off(None, pos)  # and the input starts clean: no held note shapes the codes
                d.event("panic")
            elif a == 64 and pos is not None:
                d.assembler.sustain(b >= 64, pos)
            elif a in (120, 123):  # All Sound Off / All Notes Off: a DAW's stop or panic
                d.assembler.all_notes_off(ch, pos)
            return
        if kind not in (NOTE_ON, NOTE_OFF):
            d.stats.ignored += 1
            return
        if d.bypass:  # echo the input: by channels, on its voice's output channel; by pitch, on the first
            voice = 0 if cfg.voicing != "channels" else (cfg.in_channels.index(ch) if ch in cfg.in_channels else None)
            if voice is not None:  # a channel that is no voice is not heard by the daemon: nor echoed
                out = [(NOTE_ON if kind == NOTE_ON and b > 0 else NOTE_OFF) | cfg.out_channels[voice], a,
                       b if kind == NOTE_ON else 0]
                d.scheduler.send_now(out)
        if kind == NOTE_ON and b > 0:
            d.assembler.note_on(a, b, ch, pos)  # pos None while stopped: starts with the transport
        elif pos is not None:
            d.assembler.note_off(a, ch, pos)
        else:  # released while stopped
            d.assembler.notes = [n for n in d.assembler.notes if not (n.pitch == a and n.channel == ch and n.onset is None)]

    def _template_bar(self, index: int) -> Bar:
        from vqcpc.models.generate import padded_to_bars

        tokens = padded_to_bars(self.template)
        tpb = self.d.tpb
        n = len(tokens) // tpb
        t = tokens[(index % n) * tpb:(index % n + 1) * tpb]
        return Bar(index, t, 80, bool((t == REST).all()))

    def _transport_change(self, position: float | None) -> None:
        """Start, stop, continue or jump: close every sounding output note and forget pending
        output; input notes still held start again at the new ``position``."""
        self.d.scheduler.flush()
        self.d.assembler.reset(position)
        self.d.decoder.reset()

    def _maybe_close_bars(self) -> None:
        d, tr = self.d, self.d.transport
        if not tr.running:
            return
        if tr.internal:
            pos = tr.position_at(d.now())
        else:
            pos = None if tr.last_clock_time is None else tr.clock_count / CLOCKS_PER_TICK
        if pos is None:
            return
        while pos >= (self.bar + 1) * d.tpb - d.cfg.close_early_ticks:
            self._close(self.bar)
            self.bar += 1

    def _close(self, index: int) -> None:
        d = self.d
        t0 = d.now()
        bar = d.assembler.close_bar(index)
        if self.template is not None:
            bar = self._template_bar(index)
        d.stats.bars_in += 1
        d.log_sends()
        if d.freeze and self.last_codes is not None:
            codes, silent = self.last_codes, False
        else:
            codes = d.engine.encode(bar.tokens.reshape(-1, TOKENS_PER_BEAT).astype(np.int64))
            silent = bar.silent
            if not silent:
                self.last_codes = codes
        d.stats.last_codes = [int(c) for c in codes]
        d.stats.last_bar = index
        d.event("bar_in", bar=index, codes=d.stats.last_codes, silent=bool(silent),
                folded=bar.report.folded, dropped=bar.report.dropped)
        if not d.bypass:
            d.decoder.submit(index, codes, silent, bar.velocity, d.transport.generation, t0)


class DecodeWorker:
    """Decodes bars in order on one ONNX stream; each token becomes timed note events at once."""

    def __init__(self, d: Daemon):
        self.d = d
        self.q: queue.Queue = queue.Queue()
        self.stream = None
        self.sampler: Sampler | None = None
        self.current: list[int | None] = [None] * 4  # pitch sounding per voice in the output
        self.last_out_bar: int | None = None
        self.search_s: float | None = None  # beat search: how long a searched beat takes (recent, cautious)
        self.generation = -1
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="vqcpc-decode", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, block: bool = True) -> None:
        self._stop = True
        self.q.put(None)
        if block and self.thread.is_alive():
            self.thread.join(timeout=5.0)

    def reset(self) -> None:
        """After a stop or jump the scheduler closed every note: nothing sounds in the output."""
        self.q.put(("reset",))

    def submit(self, index, codes, silent, velocity, generation, t_close) -> None:
        self.q.put(("bar", index, codes, silent, velocity, generation, t_close))

    def _run(self) -> None:
        while not self._stop:
            item = self.q.get()
            if item is None:
                break
            self._process(item)

    def pump(self) -> None:
        while True:
            try:
                item = self.q.get_nowait()
            except queue.Empty:
                return
            if item is None:
                return
            self._process(item)

    def _process(self, item) -> None:
        try:
            if item[0] == "reset":
                self.current = [None] * 4
                self.last_out_bar = None
            else:
                self._bar(*item[1:])
        except Exception:
            log.exception("decoding failed for %r", item[:2])

    def _ensure_stream(self) -> None:
        if self.stream is None:
            d = self.d
            k = max(1, d.cfg.beat_search)
            self.stream = d.engine.new_stream(d.cfg.beats_per_bar, k)
            self.sampler = Sampler(d.engine.voice_mask, k, temperature=d.temperature, top_p=d.cfg.top_p, seed=d.cfg.seed,
                                   rules=d.cfg.rules)

    def _bar(self, index, codes, silent, velocity, generation, t_close) -> None:
        d, cfg = self.d, self.d.cfg
        if generation != d.transport.generation:
            return  # the transport stopped or jumped since this bar closed
        self.generation = generation
        out_bar = index + cfg.delay_bars
        start = out_bar * d.tpb
        if self.last_out_bar is not None and out_bar != self.last_out_bar + 1:
            self._close_all((self.last_out_bar + 1) * d.tpb, out_bar)
        self.last_out_bar = out_bar
        if silent:  # no music out of silence: the output bar is silent too
            self._close_all(start, out_bar)
            d.stats.silent_bars += 1
            d.event("bar_out", bar=out_bar, silent=True)
            return
        self._ensure_stream()
        self.sampler.temperature = d.temperature
        self.generation = generation
        t0 = d.now()
        k = max(1, cfg.beat_search)
        codes = np.asarray(codes, np.int64)
        self.stream.push_codes(np.tile(codes[None], (k, 1)))
        bar_tokens = np.zeros(d.tpb * 4, np.int64)
        tok = None
        due = d.transport.time_of(start)
        for beat in range(cfg.beats_per_bar):
            # beat search sends a beat only once it is decoded: the bar's first beat is searched only
            # when there is time for it before its first 16th is due (else it streams, as with K = 1)
            search = k > 1 and (beat > 0 or (due is not None and self.search_s is not None and
                                              due + cfg.latency_ms / 1000 - d.now() > 1.5 * self.search_s))
            beat_tokens = np.zeros((TOKENS_PER_BEAT, k), np.int64)
            t_beat = d.now()
            for j in range(TOKENS_PER_BEAT):
                if d.transport.generation != generation:
                    return  # stopped or jumped mid-bar: the scheduler has closed everything
                i = beat * TOKENS_PER_BEAT + j
                tok = self.sampler.sample(self.stream.step(tok), i % 4)
                beat_tokens[j] = tok
                if not search:  # streamed: each token (of the first row) becomes note events at once
                    self._token(start + i // 4, i % 4, int(tok[0]), velocity, out_bar)
                    if i == 3:
                        d.stats.first_tick_ms.append((d.now() - t_close) * 1000)
            keep = 0
            if search:  # keep a candidate whose beat has the wanted code, then send it
                hit = np.nonzero(d.engine.encode(beat_tokens.T.copy()) == codes[beat])[0]
                keep = int(hit[0]) if hit.size else 0
                for j in range(TOKENS_PER_BEAT):
                    i = beat * TOKENS_PER_BEAT + j
                    self._token(start + i // 4, i % 4, int(beat_tokens[j, keep]), velocity, out_bar)
                if beat == 0:
                    d.stats.first_tick_ms.append((d.now() - t_close) * 1000)
                took = d.now() - t_beat
                self.search_s = took if self.search_s is None else max(took, 0.8 * self.search_s + 0.2 * took)
            if k > 1:  # every candidate goes on from the beat that was sent
                src = np.full(k, keep)
                self.stream.copy_rows(src)
                self.sampler.copy_rows(src)
                tok = tok[src]
            bar_tokens[beat * TOKENS_PER_BEAT:(beat + 1) * TOKENS_PER_BEAT] = beat_tokens[:, keep]
        kept = d.engine.encode(bar_tokens.reshape(-1, TOKENS_PER_BEAT)) == codes
        d.stats.beats_decoded += len(kept)
        d.stats.beats_kept += int(kept.sum())
        ms = (d.now() - t0) * 1000
        d.stats.decode_ms.append(ms)
        d.stats.bars_out += 1
        d.event("bar_out", bar=out_bar, decode_ms=round(ms, 2), first_tick_ms=round(d.stats.first_tick_ms[-1], 2))

    def _token(self, tick: int, voice: int, tok: int, velocity: int, bar: int) -> None:
        ch = self.d.cfg.out_channels[voice]
        sched = self.d.scheduler
        if tok == HOLD:
            return
        if self.current[voice] is not None:
            sched.add(tick, [NOTE_OFF | ch, self.current[voice], 0], bar, self.generation)
            self.current[voice] = None
        if tok >= PITCH_OFFSET:
            pitch = tok - PITCH_OFFSET
            sched.add(tick, [NOTE_ON | ch, pitch, max(1, min(127, velocity))], bar, self.generation)
            self.current[voice] = pitch

    def _close_all(self, tick: int, bar: int) -> None:
        for v in range(4):
            if self.current[v] is not None:
                self.d.scheduler.add(tick, [NOTE_OFF | self.d.cfg.out_channels[v], self.current[v], 0], bar,
                                     self.generation)
                self.current[v] = None


assert REST == 0
