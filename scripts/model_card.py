"""Measure a trained + exported model on the test chorales, write its model card, and (with --ship)
copy the files the package ships into models/shipped/NAME.

    python scripts/model_card.py runs/uniform --ship models/shipped/uniform
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

SHIPPED_FILES = ["encoder.safetensors", "encoder.json", "encoder_log.csv", "decoder.safetensors", "decoder.json",
                 "decoder_log.csv", "encoder.onnx", "code_memory.onnx", "decoder_step.onnx",
                 "decoder_step.int8.onnx", "decoder_step.b1.onnx", "model.json", "card.json", "README.md"]


def fmt(x, nd=3):
    return "n/a" if x is None else f"{x:.{nd}f}"


def card_text(name, enc, dec, man, figs) -> str:
    em, dm = enc["metrics"], dec["metrics"]
    v = em["validation"]
    info = figs["codes"]
    var1, var4 = figs["variations_1"], figs["variations_4"]
    lines = [
        f"# Model `{name}`: VQ-CPC encoder with {enc['config']['negatives']} negatives + relative-attention decoder",
        "",
        "Trained on the J.S. Bach chorales of music21 (the training split of `vqcpc/music/splits.json`, "
        "every transposition in -6..+5 that keeps the voices in range). All figures below were measured "
        "by `scripts/model_card.py` on this machine class (2 CPU cores); test figures are on the 33 test "
        "chorales, which no model saw in training.",
        "",
        "## Exact commands",
        "",
        "```",
        enc["command"],
        dec["command"],
        "vqcpc-export " + name + " --int8 --force   # (run on the training folder)",
        f"python scripts/model_card.py <training folder> --ship models/shipped/{name}",
        "```",
        "",
        "## Encoder",
        "",
        f"- {enc['config']['codes']} codes, {enc['config']['n_negatives']} negatives "
        f"({enc['config']['negatives']}); training time {em['train_seconds'] / 60:.1f} min "
        f"({enc['train']['epochs']} epochs x {enc['train']['steps_per_epoch']} steps, batch {enc['train']['batch_size']}), "
        f"best epoch {em['best_epoch']}.",
        f"- Validation CPC accuracy {fmt(v['cpc_accuracy'])} (chance {em['chance']:.4f}); per k = 1..6: "
        + ", ".join(fmt(a) for a in v["cpc_accuracy_per_k"]) + ".",
        f"- Codebook usage: validation {v['codes_used']} codes, perplexity {fmt(v['perplexity'], 2)}; "
        f"test {em['test']['codes_used']} codes, perplexity {fmt(em['test']['perplexity'], 2)}.",
        "",
        "What the codes tell (normalized mutual information over the test chorales in all their legal "
        f"transpositions, {info['beats']} beats; beside it the same codes shuffled):",
        "",
        "| label | NMI | shuffled codes |",
        "|---|---|---|",
    ]
    for k, title in (("key", "key of the chorale (tonic + mode)"), ("bass", "bass pitch class at the beat"),
                     ("chord", "chord root + quality at the beat (music21)")):
        lines.append(f"| {title} | {info[k]['nmi']:.3f} | {info[k]['random_codes_nmi']:.3f} |")
    lines += [
        "",
        "## Decoder",
        "",
        f"- {dec['parameters']:,} parameters: d={dec['config']['d_model']}, {dec['config']['layers']} layers, "
        f"{dec['config']['heads']} heads, feed-forward {dec['config']['d_ff']}, token window W={dec['config']['window']}; "
        f"training time {dm['train_seconds'] / 60:.1f} min, {dm['train_tokens']:,} tokens, best epoch {dm['best_epoch']}.",
        f"- Validation (teacher-forced, streaming masks): loss {dm['validation']['loss']:.3f} nats/token, "
        f"token accuracy {dm['validation']['token_accuracy']:.3f}, accuracy on note onsets {dm['validation']['onset_accuracy']:.3f}.",
        "",
        "## Variations of the test chorales",
        "",
        "One variation per test chorale (ONNX runtime, temperature 1.0, top-p 0.95, seed = chorale index); "
        "code consistency = share of beats whose re-encoded code equals the template's (graded by this "
        "model's own encoder); novelty = 1 - Jaccard of (tick, voice, pitch) onsets; chance = another test "
        "chorale of the same meter scored against the same codes.",
        "",
        "| | median code consistency | median novelty | median chance consistency |",
        "|---|---|---|---|",
        f"| 1 candidate | {var1['median']['code_consistency']:.3f} | {var1['median']['novelty']:.3f} | {var1['median']['chance_consistency']:.3f} |",
        f"| best of 4 candidates (reranked by this encoder) | {var4['median']['code_consistency']:.3f} | {var4['median']['novelty']:.3f} | {var4['median']['chance_consistency']:.3f} |",
        "",
        f"ONNX parity at export: fp32 max |diff| {max(man['checks']['fp32'].values()):.1e}; "
        + (f"int8 step graph max |logit diff| {man['checks']['int8']['max_abs_diff']:.3f}, top-1 agreement "
           f"{man['checks']['int8']['top1_agreement']:.3f}." if "int8" in man["checks"] else ""),
        "",
        f"Card measured in {figs['seconds'] / 60:.1f} min.",
    ]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--ship", type=Path, help="copy the shipped files into this folder")
    args = ap.parse_args()

    from vqcpc.export.runtime import Engine
    from vqcpc.models.analysis import code_information, variation_figures
    from vqcpc.music.corpus import corpus_split

    d = args.model_dir
    t0 = time.time()
    engine = Engine(d)
    test = corpus_split("test")
    figs = {"codes": code_information(engine, test),
            "variations_1": variation_figures(engine, test, candidates=1),
            "variations_4": variation_figures(engine, test, candidates=4)}
    figs["seconds"] = round(time.time() - t0, 1)
    (d / "card.json").write_text(json.dumps(figs, indent=1))
    enc = json.loads((d / "encoder.json").read_text())
    dec = json.loads((d / "decoder.json").read_text())
    man = json.loads((d / "model.json").read_text())
    name = args.ship.name if args.ship else d.name
    (d / "README.md").write_text(card_text(name, enc, dec, man, figs))
    print(json.dumps({k: figs[k] for k in ("codes",)} | {k: figs[k]["median"] for k in ("variations_1", "variations_4")}))
    if args.ship:
        args.ship.mkdir(parents=True, exist_ok=True)
        for f in SHIPPED_FILES:
            if (d / f).exists():
                shutil.copy2(d / f, args.ship / f)


if __name__ == "__main__":
    main()
