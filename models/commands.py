"""`vqcpc train encoder|decoder` and `vqcpc codes`."""
from __future__ import annotations

import json
import logging
import shlex
import sys

import click

from vqcpc.music.errors import InputError


def _command_line() -> str:
    return "vqcpc " + " ".join(shlex.quote(a) for a in sys.argv[1:])


@click.group()
def train():
    """Train the VQ-CPC encoder, then the decoder on its codes (needs the `train` extra: torch)."""


@train.command("encoder")
@click.option("--negatives", type=click.Choice(["uniform", "sameseq"]), default="uniform", show_default=True,
              help="uniform: negatives from the whole training set; sameseq: from the same chorale and transposition.")
@click.option("--codes", type=click.Choice(["8", "16", "32"]), default="16", show_default=True, help="Codebook size.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Model directory to write.")
@click.option("--data", type=click.Path(exists=True, file_okay=False), help="A folder of your own four-voice MIDI/MusicXML files instead of the Bach chorales.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--steps-per-epoch", type=int, default=250, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--threads", type=int, default=0, help="torch threads (0: all cores).")
@click.option("--resume", is_flag=True, help="Continue a killed run from its last epoch.")
@click.option("--force", is_flag=True, help="Retrain over an existing encoder in OUT.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_encoder_cmd(negatives, codes, out, data, device, seed, epochs, steps_per_epoch, batch_size, threads,
                      resume, force, quiet):
    """Train a VQ-CPC encoder into a model directory; the best epoch by validation CPC accuracy is kept."""
    from .config import EncoderConfig, EncoderTrainConfig
    from .train_encoder import train_encoder

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = EncoderConfig(negatives=negatives, codes=int(codes))
    tcfg = EncoderTrainConfig(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                              seed=seed, threads=threads, data=data)
    meta = train_encoder(out, cfg, tcfg, device=device, resume=resume, force=force,
                         command=_command_line(), progress=not quiet)
    m = meta["metrics"]
    click.echo(f"encoder written to {out}: validation CPC accuracy {m['validation']['cpc_accuracy']:.3f} "
               f"(chance {m['chance']:.4f}), codes used {m['validation']['codes_used']}, "
               f"perplexity {m['validation']['perplexity']:.1f}")


@click.command()
@click.argument("template")
@click.option("--model", "model", default="uniform", show_default=True, help="Shipped model name or a model directory.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write a piano roll with the codes as PNG.")
@click.option("--parts", help="MusicXML: which parts are S,A,T,B (1-based).")
@click.option("--pickup", type=float, help="MIDI: length of the pickup in beats.")
@click.option("--force", is_flag=True, help="Overwrite the plot file if it exists.")
def codes(template, model, as_json, plot, parts, pickup, force):
    """Show the code of every beat of a file or chorale (e.g. bwv269), bar by bar."""
    from pathlib import Path

    from vqcpc.music.io import load
    from vqcpc.music.score import parse_parts_option

    from .registry import resolve_model
    from .train_encoder import grid_codes, load_encoder

    grid = load(template, parts=parse_parts_option(parts), pickup=pickup)
    model_dir = resolve_model(model)
    enc, meta = load_encoder(model_dir)
    c = [int(x) for x in grid_codes(enc, grid)]
    name = model_dir.name
    if plot:
        if Path(plot).exists() and not force:
            raise InputError(f"{plot}: already exists (use --force to overwrite)")
        from vqcpc.music.plot import plot_grids

        plot_grids([(f"{grid.source} — {name} codes", grid, c)], plot)
    if as_json:
        click.echo(json.dumps({"encoder": name, "negatives": meta["config"]["negatives"], "template": grid.source,
                               "beats_per_bar": grid.beats_per_bar, "pickup_beats": grid.pickup_ticks // 4,
                               "codes": c, **({"plot": str(plot)} if plot else {})}))
        return
    bpb = grid.beats_per_bar
    click.echo(f"{grid.source}: {len(c)} beats, {grid.beats_per_bar}/4, encoder {name} ({meta['config']['negatives']} negatives)")
    for b in range(0, len(c), bpb):
        click.echo(f"  bar {b // bpb + 1:>3}: " + " ".join(f"{x:>2}" for x in c[b: b + bpb]))
    if plot:
        click.echo(f"wrote {plot}")
