"""`vqcpc train encoder|decoder` and `vqcpc codes`."""
from __future__ import annotations

import json
import logging
import shlex
import sys

import click

from vqcpc.music.params import Finite
from vqcpc.music.errors import InputError


def _command_line() -> str:
    return "vqcpc " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _reading_notes(grid) -> None:
    """What reading the template assumed or changed, on stderr (as `vqcpc inspect` shows it)."""
    r = grid.report
    for note in r.notes:
        click.echo(f"note: {note}", err=True)
    changed = {k: getattr(r, k) for k in ("snapped", "dropped", "chords", "folded", "clipped") if getattr(r, k)}
    if changed:
        click.echo("note: " + ", ".join(f"{v} notes {k}" for k, v in changed.items()), err=True)


def output_stem(template: str) -> str:
    """The name output files start with: a file's name without its suffix, a corpus chorale's whole
    name (bwv40.3 and bwv40.6 are two chorales, not one with a suffix)."""
    from pathlib import Path

    p = Path(template)
    return p.stem if p.suffix.lower() in (".mid", ".midi", ".xml", ".musicxml", ".mxl") else p.name


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
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--steps-per-epoch", type=click.IntRange(1), default=250, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--vq-warmup", type=int, default=0, show_default=True,
              help="Steps of CPC on continuous latents before quantizing (codebook then k-means-initialised).")
@click.option("--threads", type=click.IntRange(0), default=0, help="torch threads (0: all cores).")
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
@click.option("--pickup", type=Finite(min=0), help="MIDI: length of the pickup in beats.")
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
    if plot and Path(plot).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise InputError(f"{plot}: a plot is written as .png, .pdf or .svg")
    if plot and not Path(plot).resolve().parent.is_dir():
        raise InputError(f"{plot}: no folder {Path(plot).parent} to write it in")
    if backend == "onnx":  # the encoder alone suffices (a grader's directory too)
        from vqcpc.export.runtime import EncoderEngine

        be = EncoderEngine(model_dir)
    else:
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
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=20, show_default=True)
@click.option("--steps-per-epoch", type=click.IntRange(1), default=200, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--d-model", type=int, default=192, show_default=True)
@click.option("--layers", type=int, default=3, show_default=True)
@click.option("--heads", type=int, default=4, show_default=True)
@click.option("--d-ff", type=int, default=512, show_default=True)
@click.option("--window", type=int, default=512, show_default=True, help="W: tokens of self-attention context.")
@click.option("--threads", type=click.IntRange(0), default=0, help="torch threads (0: all cores).")
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
@click.option("--temperature", type=Finite(0, 10), default=1.0, show_default=True)
@click.option("--top-p", type=Finite(0.01, 1.0), default=0.95, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--candidates", type=click.IntRange(1, 32), default=1, show_default=True,
              help="Decode this many per variation in one batch; keep the one whose codes match best.")
@click.option("--no-rules", is_flag=True, help="Sample from the model alone, without the voice-leading rules "
              "(textbook ranges, no parallel fifths/octaves, no crossings).")
@click.option("--beat-search", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Sample K candidates of every beat and keep one whose code is the wanted one (K times the work).")
@click.option("--codes", "codes_text", help='Codes to follow instead of the template\'s, e.g. "3 3 7 1" (looped).')
@click.option("--codes-from", "codes_from", help="Juxtapose: the template's codes for the first half, OTHER's after.")
@click.option("--backend", type=click.Choice(["onnx", "torch"]), default="onnx", show_default=True,
              help="onnx: the exported graphs in onnxruntime (no torch needed); torch: the training weights.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True)
@click.option("--parts", help="MusicXML: which parts are S,A,T,B (1-based).")
@click.option("--pickup", type=Finite(min=0), help="MIDI: length of the pickup in beats.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
def vary(template, n, out, model, temperature, top_p, seed, candidates, no_rules, beat_search, codes_text,
         codes_from, backend, device, parts, pickup, as_json, force):
    """Write N variations of a template (file or chorale such as bwv269) that share its codes."""
    from pathlib import Path

    from vqcpc.music.io import load, save
    from vqcpc.music.plot import plot_grids
    from vqcpc.music.score import parse_parts_option

    from .generate import generate, juxtapose, parse_codes, template_codes, fit_codes
    from .registry import resolve_model

    out = Path(out)
    above = next((p for p in [out, *out.parents] if p.exists()), None)
    if above is not None and not above.is_dir():
        raise InputError(f"-o {out}: {above} is a file, not a folder")
    grid = load(template, parts=parse_parts_option(parts), pickup=pickup)
    _reading_notes(grid)
    model_dir = resolve_model(model)
    stem = output_stem(template)
    paths = [(out / f"{stem}-var{i + 1}.mid", out / f"{stem}-var{i + 1}.musicxml") for i in range(n)]
    plot_path = out / f"{stem}-variations.png"
    existing = [p for pair in paths for p in pair if p.exists()] + ([plot_path] if plot_path.exists() else [])
    if existing and not force:
        raise InputError(f"{existing[0]}: already exists (use --force to overwrite)")
    if codes_text is not None and codes_from:
        raise InputError("--codes and --codes-from exclude each other: give one")
    if codes_text is not None and not codes_text.strip():
        raise InputError("--codes is empty: give codes such as \"3 3 7 1\"")
    be = open_backend(model_dir, backend, device)
    target = template_codes(be, grid)
    if codes_text is not None:
        target = fit_codes(parse_codes(codes_text, be.n_codes), len(target))
    if codes_from:
        other = load(codes_from)
        if other.beats_per_bar != grid.beats_per_bar:
            raise InputError(f"--codes-from {codes_from}: meter {other.beats_per_bar}/4 differs from the template's")
        target = juxtapose(target, template_codes(be, other))
    variations = generate(be, grid, target, n=n, temperature=temperature, top_p=top_p, seed=seed,
                          candidates=candidates, rules=not no_rules, beat_search=beat_search)
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
        click.echo(f"  {r['midi']}  code consistency {r['code_consistency']:.2f} (by the model's own encoder)  "
                   f"novelty {r['novelty']:.2f}")
    click.echo(f"  plot: {plot_path}")


@click.command()
@click.option("--model", "models", multiple=True, help="Shipped model name or model directory (repeatable; "
              "default: both shipped models).")
@click.option("--grader", "graders", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Grader encoder directory for each --model, in order (default: the shipped grader of the "
                   "model's kind).")
@click.option("--split", type=click.Choice(["validation", "test"]), default="validation", show_default=True,
              help="validation for tuning; test for the report.")
@click.option("-n", "n", type=click.IntRange(1, 32), default=4, show_default=True, help="Variations a chorale and seed.")
@click.option("--seeds", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--candidates", type=click.IntRange(2, 16), default=2, show_default=True,
              help="Candidates for the reranked system (the first of each group is the unreranked sample).")
@click.option("--temperature", type=Finite(0, 10), default=1.0, show_default=True)
@click.option("--top-p", type=Finite(0.01, 1.0), default=0.95, show_default=True)
@click.option("--backend", type=click.Choice(["onnx", "torch"]), default="onnx", show_default=True)
@click.option("--no-rules", is_flag=True, help="Sample from the model alone, without the voice-leading rules.")
@click.option("--beat-search", type=click.IntRange(1, 16), default=1, show_default=True,
              help="K > 1 adds the system 'MODEL beat search' (K candidates of every beat, one with the wanted code kept).")
@click.option("--jobs", type=click.IntRange(1, 64), default=None, help="Worker processes (default: cores, at most 4).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first LIMIT chorales (a quick look).")
@click.option("-o", "--out", "out", type=click.Path(file_okay=False), help="Report folder: quality.md, results.json, PNGs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (without the per-variation points).")
@click.option("--force", is_flag=True, help="Overwrite an existing report in OUT.")
def evaluate(models, graders, split, n, seeds, candidates, temperature, top_p, backend, no_rules, beat_search,
             jobs, limit, out, as_json, force):
    """Variations of every chorale of a split, measured beside the baselines (DESIGN §7)."""
    from pathlib import Path

    from .evaluate import ModelSpec, Settings, default_jobs
    from .evaluate import evaluate as run_evaluation
    from .registry import SHIPPED, encoder_seed_and_kind, grader_for, resolve_model
    from .report import FILES, goals, write_report

    models = models or SHIPPED
    if graders and len(graders) != len(models):
        raise InputError(f"{len(graders)} --grader for {len(models)} models: give one per --model, or none")
    if out:
        odd = [Path(out) / f for f in FILES if (Path(out) / f).exists() and not (Path(out) / f).is_file()]
        if odd:
            raise InputError(f"{odd[0]}: exists and is not a file; choose another -o")
        clash = [Path(out) / f for f in FILES if (Path(out) / f).exists()]
        if clash and not force:
            raise InputError(f"{clash[0]}: already exists (use --force to overwrite)")
    specs, warnings = [], []
    for i, m in enumerate(models):
        d = resolve_model(m)
        g = Path(graders[i]) if graders else grader_for(d)
        (ms, mk), (gs, gk) = encoder_seed_and_kind(d), encoder_seed_and_kind(g)
        if ms == gs:
            warnings.append(f"{m}: the grader {g} was trained with the model's own seed {ms}: not an independent grader")
        if mk != gk:
            warnings.append(f"{m}: the grader's negatives ({gk}) differ from the model's ({mk})")
        name = m if m in SHIPPED else d.name
        specs.append(ModelSpec(name, str(d), str(g)))
    if len({s.name for s in specs}) != len(specs):  # e.g. runs/seed0/model and runs/seed1/model
        specs = [ModelSpec(s.model_dir if s.name not in SHIPPED else s.name, s.model_dir, s.grader_dir) for s in specs]
    if len({s.model_dir for s in specs}) != len(specs):
        raise InputError("the same model is given twice")
    st = Settings(split=split, n=n, seeds=seeds, candidates=candidates, temperature=temperature, top_p=top_p,
                  backend=backend, rules=not no_rules, beat_search=beat_search, jobs=jobs or default_jobs(), limit=limit)

    def progress(done, total):
        if not as_json:
            click.echo(f"\r{done}/{total} model x chorale tasks", nl=done == total, err=True)

    result = run_evaluation(specs, st, progress=progress)
    result["warnings"] = warnings
    result["goals"] = goals(result)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    if out:
        written = write_report(result, Path(out), _command_line())
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.items() if k != "points"}))
        return
    click.echo(f"{result['split']}: {result['chorales']} chorales in {result['seconds']:.0f} s")
    click.echo(f"{'system':32s} {'consist.':>8s} {'grader':>8s} {'novelty':>8s} {'copy':>5s} {'par/100':>8s} "
               f"{'cross':>7s} {'range':>7s}")
    rows = [(k, v) for k, v in result["systems"].items()] + [("Bach", result["bach"])]
    for name, s in rows:
        def f(key, fmt="8.3f"):
            return format(s[key], fmt) if key in s else format("-", ">" + fmt.split(".")[0])
        click.echo(f"{name:32s} {f('code_consistency')} {f('code_consistency_other_grader')} {f('novelty')} "
                   f"{s['max_copy_beats']:5d} {f('parallels_per_100_beats', '8.2f')} {f('crossings_per_100_beats', '7.2f')} "
                   f"{f('out_of_range_per_100_beats', '7.2f')}")
    for model, g in result["goals"].items():
        missed = [k for k, r in g.items() if not r["met"]]
        click.echo(f"{model}: goals met {len(g) - len(missed)}/{len(g)}" + (f"; missed: {'; '.join(missed)}" if missed else ""))
    if out:
        click.echo(f"report: {written[0]}")
