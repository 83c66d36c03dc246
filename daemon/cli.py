"""`vqcpc-daemon`: the live generator on virtual MIDI ports."""
from __future__ import annotations

import json
import signal
import sys
import threading

import click

from vqcpc.music.params import Finite
from vqcpc.music.errors import InputError


def _channels(text: str, what: str) -> tuple:
    try:
        ch = tuple(int(x) - 1 for x in text.split(","))
    except ValueError:
        raise InputError(f"{what} {text!r}: expected four MIDI channels 1-16, e.g. 1,2,3,4") from None
    if len(ch) != 4 or not all(0 <= c < 16 for c in ch):
        raise InputError(f"{what} {text!r}: expected four MIDI channels 1-16, e.g. 1,2,3,4")
    if len(set(ch)) != 4:  # in: a voice never heard; out: a unison's first note_off would end both notes
        raise InputError(f"{what} {text!r}: expected four different MIDI channels, one a voice, e.g. 1,2,3,4")
    return ch


def _meter(text: str) -> int:
    if text not in ("4/4", "3/4"):
        raise InputError(f"--meter {text}: the models know 4/4 and 3/4")
    return int(text[0])


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog="""
Examples:\n
  vqcpc-daemon                       # ports "vqcpc in" / "vqcpc out", follows the DAW's MIDI clock\n
  vqcpc-daemon --clock internal --bpm 96 --meter 3/4\n
  vqcpc-daemon --template chorale.musicxml --clock internal\n
The variation of input bar n plays during bar n+1 (the codes of a bar are known only at its end).""")
@click.option("--model", default="uniform", show_default=True, help="Shipped model name or a model directory.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True)
@click.option("--api", type=click.Choice(["auto", "alsa", "jack", "coremidi", "windows"]), default="auto", show_default=True)
@click.option("--in-port", default="vqcpc in", show_default=True)
@click.option("--out-port", default="vqcpc out", show_default=True)
@click.option("--connect-in", help="Also connect this existing output port (e.g. the DAW's) to our input.")
@click.option("--connect-out", help="Also connect our output to this existing input port (e.g. a synth).")
@click.option("--list-ports", is_flag=True, help="List the MIDI ports and exit.")
@click.option("--clock", type=click.Choice(["auto", "midi", "internal"]), default="auto", show_default=True,
              help="midi: follow MIDI clock; internal: --bpm; auto: midi, or internal with --template.")
@click.option("--bpm", type=Finite(20, 400), default=120.0, show_default=True)
@click.option("--meter", help="4/4 or 3/4 [default: the template's, else 4/4].")
@click.option("--voicing", type=click.Choice(["pitch", "channels"]), default="pitch", show_default=True)
@click.option("--in-channels", default="1,2,3,4", show_default=True, help="Input channels of S,A,T,B (--voicing channels).")
@click.option("--out-channels", default="1,2,3,4", show_default=True, help="Output channels of S,A,T,B.")
@click.option("--delay-bars", type=click.IntRange(1, 8), default=1, show_default=True)
@click.option("--latency-ms", type=Finite(0, 2000), default=0.0, show_default=True, help="Added to every output time.")
@click.option("--temperature", type=Finite(0, 5), default=1.0, show_default=True)
@click.option("--top-p", type=Finite(0.01, 1), default=0.95, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--beat-search", type=click.IntRange(1, 8), default=1, show_default=True,
              help="K > 1: decode K candidates of every beat and send one whose code is the wanted one "
                   "(a beat is sent once decoded; K times the work).")
@click.option("--no-rules", is_flag=True, help="Sample from the model alone, without the voice-leading rules.")
@click.option("--template", type=click.Path(exists=True, dir_okay=False), help="Play variations of this file, bar after bar.")
@click.option("--parts", help="With a MusicXML --template: which parts are S,A,T,B (1-based), e.g. 1,2,3,4.")
@click.option("--log-json", type=click.File("a"), help="Append one JSON event a line to this file.")
@click.option("--log-sends", is_flag=True, help="With --log-json: a 'sent' event each bar with the due and the "
              "send time (perf_counter seconds) of every message sent (for the jitter benchmark).")
@click.option("--cc-temperature", type=click.IntRange(0, 127), default=70, show_default=True)
@click.option("--cc-freeze", type=click.IntRange(0, 127), default=80, show_default=True)
@click.option("--cc-bypass", type=click.IntRange(0, 127), default=81, show_default=True)
@click.option("--cc-panic", type=click.IntRange(0, 127), default=82, show_default=True)
@click.option("--quiet", is_flag=True, help="No status line (port loss and return are still reported).")
def daemon_cmd(model, device, api, in_port, out_port, connect_in, connect_out, list_ports, clock, bpm, meter, voicing,
               in_channels, out_channels, delay_bars, latency_ms, temperature, top_p, seed, beat_search, no_rules,
               template, parts, log_json, log_sends, cc_temperature, cc_freeze, cc_bypass, cc_panic, quiet):
    """Stream Bach-style variations of what comes in on a MIDI port, bar after bar."""
    from vqcpc.export.runtime import Engine
    from vqcpc.models.registry import resolve_model

    from . import ports
    from .core import Daemon, DaemonConfig, freeze_heap
    from .link import PortLink

    api_id = ports.api_for(api)
    if list_ports:
        click.echo(json.dumps(ports.list_ports(api_id), indent=1))
        return
    if clock == "auto":
        clock = "internal" if template else "midi"
    grid = None
    if parts and not template:
        raise InputError("--parts applies to a MusicXML --template")
    if template:
        from vqcpc.music.io import load

        from vqcpc.music.score import parse_parts_option

        grid = load(template, parts=parse_parts_option(parts), fold=True)
        mine = f"{grid.beats_per_bar}/4"
        if meter is None:
            meter = mine
        if mine not in ("4/4", "3/4"):
            raise InputError(f"{template}: meter {mine}; the models know 4/4 and 3/4")
        if meter != mine:
            raise InputError(f"--meter {meter}, but {template} is in {mine}: its bars would be cut across")
    meter = meter or "4/4"
    cfg = DaemonConfig(beats_per_bar=_meter(meter), clock=clock, bpm=bpm, voicing=voicing,
                       in_channels=_channels(in_channels, "--in-channels"), out_channels=_channels(out_channels, "--out-channels"),
                       delay_bars=delay_bars, latency_ms=latency_ms, temperature=temperature, top_p=top_p, seed=seed,
                       cc_temperature=cc_temperature, cc_freeze=cc_freeze, cc_bypass=cc_bypass, cc_panic=cc_panic,
                       log_sends=log_sends, beat_search=beat_search, rules=not no_rules)
    engine = Engine(resolve_model(model), device=device, threads=1)
    sys.setswitchinterval(0.0005)  # the scheduler thread gets the GIL back quickly
    if not ports.midi_system_available(api_id):
        raise ports.MidiSystemError(ports.NO_MIDI_HINT)
    link = PortLink(api_id, in_name=in_port, out_name=out_port, connect_in=connect_in, connect_out=connect_out)
    try:
        link.open_output()
        d = Daemon(engine, link.send, cfg, log_json=log_json)
        if grid is not None:
            d.input.template = grid
        link.open_input(d.feed)
    except BaseException:
        link.close()
        raise
    link.attach(d)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    freeze_heap()
    d.start()
    link.start()  # the watchdog: reopens and reconnects lost ports
    d.event("ready", model=engine.name, in_port=in_port, out_port=out_port, clock=clock, meter=meter)
    if not quiet:
        click.echo(f"vqcpc-daemon: model {engine.name}, in {in_port!r}, out {out_port!r}, clock {clock}"
                   f"{f' {bpm:g} bpm' if clock == 'internal' else ''}, {meter}; Ctrl-C to stop", err=True)
    shown = None
    try:
        while not stop.wait(0.1):
            while d.notices:  # port loss and return: shown even with --quiet
                click.echo(f"{'' if quiet else chr(10)}vqcpc-daemon: {d.notices.popleft()}", err=True)
                shown = None
            if quiet:
                continue
            state = (d.stats.bars_in, tuple(sorted(d.ports_lost)))
            if state != shown:
                shown = state
                end = "\r" if sys.stderr.isatty() else "\n"
                click.echo(d.status_line(), err=True, nl=False)
                click.echo(end, err=True, nl=False)
    finally:
        link.on_message = None
        d.stop()  # every note_off out while the watchdog still vouches for the server (bursts wait for it)
        link.stop()
        link.drain()  # the last note_offs delivered before the port goes away
        link.close()
        if not quiet:
            click.echo(f"\nstopped: {json.dumps(d.summary())}", err=True)


def main():
    from vqcpc.entry import run

    run(daemon_cmd)
