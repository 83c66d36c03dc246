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


def open_backend(model_dir, backend: str, device: str = "cpu"):
    """The ONNX runtime engine (default) or the torch weights of a model directory."""
    if backend == "torch":
        from .generate import TorchBackend

        return TorchBackend(model_dir, "cuda" if device == "cuda" else "cpu")
    from vqcpc.export.runtime import Engine

    return Engine(model_dir, device=device)


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
@click.option("--vq-warmup", type=int, default=0, show_default=True,
              help="Steps of CPC on continuous latents before quantizing (codebook then k-means-initialised).")
@click.option("--threads", type=int, default=0, help="torch threads (0: all cores).")
@click.option("--resume", is_flag=True, help="Continue a killed run from its last epoch.")
@click.option("--force", is_flag=True, help="Retrain over an existing encoder in OUT.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_encoder_cmd(negatives, codes, out, data, device, seed, epochs, steps_per_epoch, batch_size, vq_warmup,
                      threads, resume, force, quiet):
    """Train a VQ-CPC encoder into a model directory; the best epoch by validation CPC accuracy is kept."""
    from .config import EncoderConfig, EncoderTrainConfig
    from .train_encoder import train_encoder

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = EncoderConfig(negatives=negatives, codes=int(codes))
    tcfg = EncoderTrainConfig(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                              seed=seed, threads=threads, data=data, vq_warmup_steps=vq_warmup)
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
@click.option("--backend", type=click.Choice(["onnx", "torch"]), default="onnx", show_default=True)
@click.option("--parts", help="MusicXML: which parts are S,A,T,B (1-based).")
@click.option("--pickup", type=float, help="MIDI: length of the pickup in beats.")
@click.option("--force", is_flag=True, help="Overwrite the plot file if it exists.")
def codes(template, model, as_json, plot, backend, parts, pickup, force):
    """Show the code of every beat of a file or chorale (e.g. bwv269), bar by bar."""
    from pathlib import Path

    from vqcpc.music.io import load
    from vqcpc.music.score import parse_parts_option

    from .generate import template_codes
    from .registry import resolve_model

    grid = load(template, parts=parse_parts_option(parts), pickup=pickup)
    model_dir = resolve_model(model)
    if plot and Path(plot).exists() and not force:
        raise InputError(f"{plot}: already exists (use --force to overwrite)")
    be = open_backend(model_dir, backend)
    c = [int(x) for x in template_codes(be, grid)[: grid.beats]]
    name = model_dir.name
    negatives = json.loads((model_dir / "encoder.json").read_text())["config"]["negatives"]
    if plot:
        from vqcpc.music.plot import plot_grids

        plot_grids([(f"{grid.source}: codes of the {name} encoder", grid, c)], plot)
    if as_json:
        click.echo(json.dumps({"encoder": name, "negatives": negatives, "template": grid.source,
                               "beats_per_bar": grid.beats_per_bar,
                               "pickup_beats": (grid.ticks_per_bar - grid.pickup_ticks) / 4 if grid.pickup_ticks else 0,
                               "padded_beats": grid.pickup_ticks // 4,
                               "codes": c, **({"plot": str(plot)} if plot else {})}))
        return
    bpb = grid.beats_per_bar
    click.echo(f"{grid.source}: {len(c)} beats in {bpb}/4, encoder {name} ({negatives} negatives)")
    for b in range(0, len(c), bpb):
        click.echo(f"  bar {b // bpb + 1:>3}: " + " ".join(f"{x:>2}" for x in c[b: b + bpb]))
    if plot:
        click.echo(f"wrote {plot}")


@train.command("decoder")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Model directory holding a trained encoder; the decoder is written beside it.")
@click.option("--data", type=click.Path(exists=True, file_okay=False), help="A folder of your own four-voice files (as for the encoder).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--steps-per-epoch", type=int, default=200, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--d-model", type=int, default=192, show_default=True)
@click.option("--layers", type=int, default=3, show_default=True)
@click.option("--heads", type=int, default=4, show_default=True)
@click.option("--d-ff", type=int, default=512, show_default=True)
@click.option("--window", type=int, default=512, show_default=True, help="W: tokens of self-attention context.")
@click.option("--threads", type=int, default=0, help="torch threads (0: all cores).")
@click.option("--resume", is_flag=True, help="Continue a killed run from its last epoch.")
@click.option("--force", is_flag=True, help="Retrain over an existing decoder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_decoder_cmd(model_dir, data, device, seed, epochs, steps_per_epoch, batch_size, d_model, layers, heads,
                      d_ff, window, threads, resume, force, quiet):
    """Train the decoder on the frozen encoder's codes, teacher-forced under the streaming masks."""
    from .decoder import DecoderConfig
    from .train_decoder import DecoderTrainConfig, train_decoder

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if d_model % heads or window % 64:
        raise InputError("--d-model must be a multiple of --heads, and --window a multiple of 64")
    cfg = DecoderConfig(d_model=d_model, layers=layers, heads=heads, d_ff=d_ff, window=window)
    tcfg = DecoderTrainConfig(epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size, seed=seed,
                              threads=threads, data=data)
    meta = train_decoder(model_dir, cfg, tcfg, device=device, resume=resume, force=force,
                         command=_command_line(), progress=not quiet)
    v = meta["metrics"]["validation"]
    click.echo(f"decoder written to {model_dir}: validation loss {v['loss']:.3f}, token accuracy "
               f"{v['token_accuracy']:.3f}, onset accuracy {v['onset_accuracy']:.3f}")


@click.command()
@click.argument("template")
@click.option("-n", "n", type=click.IntRange(1, 64), default=4, show_default=True, help="Number of variations.")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--model", default="uniform", show_default=True, help="Shipped model name or a model directory.")
@click.option("--temperature", type=click.FloatRange(0, 10), default=1.0, show_default=True)
@click.option("--top-p", type=click.FloatRange(0.01, 1.0), default=0.95, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--candidates", type=click.IntRange(1, 32), default=1, show_default=True,
              help="Decode this many per variation in one batch; keep the one whose codes match best.")
@click.option("--codes", "codes_text", help='Codes to follow instead of the template\'s, e.g. "3 3 7 1" (looped).')
@click.option("--codes-from", "codes_from", help="Juxtapose: the template's codes for the first half, OTHER's after.")
@click.option("--backend", type=click.Choice(["onnx", "torch"]), default="onnx", show_default=True,
              help="onnx: the exported graphs in onnxruntime (no torch needed); torch: the training weights.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True)
@click.option("--parts", help="MusicXML: which parts are S,A,T,B (1-based).")
@click.option("--pickup", type=float, help="MIDI: length of the pickup in beats.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
def vary(template, n, out, model, temperature, top_p, seed, candidates, codes_text, codes_from, backend, device,
         parts, pickup, as_json, force):
    """Write N variations of a template (file or chorale such as bwv269) that share its codes."""
    from pathlib import Path

    from vqcpc.music.io import load, save
    from vqcpc.music.plot import plot_grids
    from vqcpc.music.score import parse_parts_option

    from .generate import generate, juxtapose, parse_codes, template_codes, fit_codes
    from .registry import resolve_model

    out = Path(out)
    grid = load(template, parts=parse_parts_option(parts), pickup=pickup)
    model_dir = resolve_model(model)
    stem = Path(grid.source).stem
    paths = [(out / f"{stem}-var{i + 1}.mid", out / f"{stem}-var{i + 1}.musicxml") for i in range(n)]
    plot_path = out / f"{stem}-variations.png"
    existing = [p for pair in paths for p in pair if p.exists()] + ([plot_path] if plot_path.exists() else [])
    if existing and not force:
        raise InputError(f"{existing[0]}: already exists (use --force to overwrite)")
    be = open_backend(model_dir, backend, device)
    target = template_codes(be, grid)
    if codes_text:
        target = fit_codes(parse_codes(codes_text, be.n_codes), len(target))
    if codes_from:
        other = load(codes_from)
        if other.beats_per_bar != grid.beats_per_bar:
            raise InputError(f"--codes-from {codes_from}: meter {other.beats_per_bar}/4 differs from the template's")
        target = juxtapose(target, template_codes(be, other))
    variations = generate(be, grid, target, n=n, temperature=temperature, top_p=top_p, seed=seed,
                          candidates=candidates)
    out.mkdir(parents=True, exist_ok=True)
    rows = [(f"template {grid.source}", grid, target)]
    report = []
    for v, (mid, xml) in zip(variations, paths):
        save(v.grid, mid, force=True)
        save(v.grid, xml, force=True)
        rows.append((f"{v.grid.source}: code consistency {v.code_consistency:.2f}, novelty {v.novelty:.2f}",
                     v.grid, v.codes))
        report.append({"midi": str(mid), "musicxml": str(xml), "code_consistency": round(v.code_consistency, 4),
                       "novelty": round(v.novelty, 4), "codes": [int(c) for c in v.codes]})
    plot_grids(rows, plot_path)
    if as_json:
        click.echo(json.dumps({"template": grid.source, "model": model_dir.name, "codes": [int(c) for c in target],
                               "variations": report, "plot": str(plot_path)}))
        return
    click.echo(f"{grid.source}: {grid.beats} beats, model {model_dir.name}")
    for r in report:
        click.echo(f"  {r['midi']}  code consistency {r['code_consistency']:.2f}  novelty {r['novelty']:.2f}")
    click.echo(f"  plot: {plot_path}")
