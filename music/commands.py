"""`vqcpc data` and `vqcpc inspect`: the dataset and the grid, for people."""
from __future__ import annotations

import json

import click

from vqcpc.music.params import Finite

from .grid import HOLD, N_VOICES, REST, TICKS_PER_BEAT, VOICES, Grid, token_pitch

NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]


def pitch_name(p: int) -> str:
    return f"{NAMES[p % 12]}{p // 12 - 1}"


def grid_table(grid: Grid) -> str:
    """The four voices as a table per bar: a pitch where a note starts, '-' held, '.' rest."""
    lines = []
    tpb = grid.ticks_per_bar
    for b in range(grid.bars):
        lo, hi = b * tpb, min((b + 1) * tpb, grid.ticks)
        first_beat = lo // TICKS_PER_BEAT + 1
        lines.append(f"bar {b + 1} (beats {first_beat}-{hi // TICKS_PER_BEAT})"
                     + ("  [pickup padded]" if b == 0 and grid.pickup_ticks else ""))
        for v in range(N_VOICES):
            cells = []
            for t in range(lo, hi):
                tok = int(grid.tokens[t, v])
                cell = "." if tok == REST else "-" if tok == HOLD else pitch_name(token_pitch(tok))
                sep = "|" if t % TICKS_PER_BEAT == 0 else " "
                cells.append(f"{sep}{cell:<4}")
            lines.append(f"  {VOICES[v][0].upper()} " + "".join(cells))
    return "\n".join(lines)


def report_lines(grid: Grid) -> list[str]:
    r = grid.report
    out = [f"{grid.source}: {grid.bars} bars of {grid.beats_per_bar}/4, {grid.beats} beats"
           + (f", pickup of {(grid.ticks_per_bar - grid.pickup_ticks) / TICKS_PER_BEAT:g} beats" if grid.pickup_ticks else "")
           + (f", key {grid.key}" if grid.key else "")]
    counts = [f"{n} {what}" for n, what in ((r.snapped, "snapped to the 16th grid"), (r.dropped, "dropped"),
                                            (r.chords, "chords reduced to one note"), (r.folded, "folded into range"),
                                            (r.clipped, "data bytes clipped")) if n]
    if counts:
        out.append("changed: " + ", ".join(counts))
    out.extend(f"note: {n}" for n in r.notes)
    return out


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--refresh", is_flag=True, help="Re-parse the corpus instead of reading the cache.")
def data(as_json, refresh):
    """Summarise the chorale dataset: splits, beats, tokens, voice ranges, parsing changes."""
    from . import corpus

    if refresh:
        corpus.load_corpus(refresh=True)
    s = corpus.summary()
    if as_json:
        click.echo(json.dumps(s))
        return
    c = s["chorales"]
    click.echo(f"chorales: {s['total_chorales']} four-part (train {c['train']}, validation {c['validation']}, "
               f"test {c['test']}); tunes per split: {s['tunes']}")
    click.echo(f"beats: {s['beats']}  tokens: {s['tokens']}  meters: {s['meters']}  with a pickup: {s['with_pickup']}")
    click.echo(f"training transpositions (-6..+5 inside the ranges): {s['train_transpositions']}")
    for v, (lo, hi) in s["voice_ranges"].items():
        click.echo(f"  {v:<8} {pitch_name(lo)}..{pitch_name(hi)} ({lo}..{hi})")
    click.echo(f"parsing: {s['snapped']} notes snapped, {s['dropped']} dropped, {s['chords']} chords reduced")


@click.command()
@click.argument("template")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the grid back as .mid or .musicxml.")
@click.option("--parts", help="MusicXML: which parts are S,A,T,B (1-based), e.g. 1,2,3,4.")
@click.option("--pickup", type=Finite(min=0), help="MIDI: length of the pickup in beats.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def inspect(template, output, parts, pickup, force):
    """Show a file or chorale (e.g. bwv269) as four voices on the 16th grid, bar by bar."""
    from .io import check_output, load, save
    from .score import parse_parts_option

    grid = load(template, parts=parse_parts_option(parts), pickup=pickup)
    if output:
        check_output(output, force=force)
    for line in report_lines(grid):
        click.echo(line)
    click.echo(grid_table(grid))
    if output:
        path = save(grid, output, force=force)
        click.echo(f"wrote {path}")
