"""The quality report of ``vqcpc evaluate``: quality.md, results.json and two PNG plots."""
from __future__ import annotations

import json
from pathlib import Path

GOALS = {  # DESIGN §7 / the evaluation issue
    "code_consistency_other_grader": 0.85,  # without reranking, by the other-seed grader
    "novelty": 0.5,
    "parallels_vs_bach": 1.5,  # at most 1.5 x Bach's rate on the same chorales
}
CHECKS = ("parallels_per_100_beats", "crossings_per_100_beats", "out_of_range_per_100_beats")
FILES = ("quality.md", "results.json", "consistency_novelty.png", "musical_checks.png")


def goals(result: dict) -> dict:
    """Each model's goals, met or not, with the figures they compare."""
    bach = result["bach"]
    out = {}
    for name in result["models"]:
        s = result["systems"][name]
        rows = {
            "code consistency >= 0.85 (other-seed grader, no reranking)":
                (s["code_consistency_other_grader"], 0.85, s["code_consistency_other_grader"] >= 0.85),
            "onset novelty >= 0.5": (s["novelty"], 0.5, s["novelty"] >= 0.5),
            "longest copy from train <= Bach's test-vs-train":
                (s["max_copy_beats"], bach["max_copy_beats"], s["max_copy_beats"] <= bach["max_copy_beats"]),
            "parallels per 100 beats <= 1.5 x Bach's":
                (s["parallels_per_100_beats"], round(1.5 * bach["parallels_per_100_beats"], 4),
                 s["parallels_per_100_beats"] <= 1.5 * bach["parallels_per_100_beats"]),
            "notes outside textbook ranges <= Bach's":
                (s["out_of_range_per_100_beats"], bach["out_of_range_per_100_beats"],
                 s["out_of_range_per_100_beats"] <= bach["out_of_range_per_100_beats"]),
        }
        out[name] = {k: {"value": v, "goal": g, "met": bool(m)} for k, (v, g, m) in rows.items()}
    return out


def _fmt(x, spread=None, digits=3):
    if x is None:
        return "–"
    text = f"{x:.{digits}f}" if isinstance(x, float) else str(x)
    if spread and spread.get("std") is not None:
        text += f" ± {spread['std']:.{digits}f}"
    return text


def write_report(result: dict, out_dir: Path, command: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(result, indent=1))
    plots = [plot_points(result, out_dir / "consistency_novelty.png"), plot_checks(result, out_dir / "musical_checks.png")]
    (out_dir / "quality.md").write_text(markdown(result, command))
    return [out_dir / "quality.md", out_dir / "results.json", *plots]


def markdown(result: dict, command: str) -> str:
    st = result["settings"]
    sy, bach = result["systems"], result["bach"]
    lines = [
        f"# Quality report: {result['split']} split",
        "",
        f"Written by `{command}` in {result['seconds']:.0f} s "
        f"({result['chorales']} chorales; {st['n']} variations a chorale and seed, {st['seeds']} seeds, "
        f"reranking over {st['candidates']} candidates, temperature {st['temperature']}, top-p {st['top_p']}, "
        f"backend {st['backend']}, "
        f"{'voice-leading rules kept while sampling (textbook ranges, no parallel fifths/octaves, no crossings)' if st.get('rules') else 'no rules: the model alone'}).",
        "Figures are means over seeds ± their standard deviation across seeds; rates are pooled over all beats.",
        "",
        "## Code consistency and novelty",
        "",
        "| system | consistency (own encoder) | consistency (other-seed grader) | to the codes fed | onset novelty "
        "| longest run = template | pitch-class distance |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in sy.items():
        sp = s.get("spread", {})
        lines.append(f"| {name} | {_fmt(s['code_consistency'], sp.get('code_consistency'))} "
                     f"| {_fmt(s['code_consistency_other_grader'], sp.get('code_consistency_other_grader'))} "
                     f"| {_fmt(s.get('consistency_to_fed_codes'), sp.get('consistency_to_fed_codes'))} "
                     f"| {_fmt(s['novelty'], sp.get('novelty'))} | {s['template_run_beats']} beats "
                     f"| {_fmt(s['pitch_class_distance'])} |")
    lines += [
        "",
        "![consistency against novelty](consistency_novelty.png)",
        "",
        "## Musical checks beside Bach",
        "",
        "| system | parallel 5ths/8ves | crossings | outside textbook ranges | onsets a beat "
        "| longest copy from train (max / median) |",
        "|---|---|---|---|---|---|",
        f"| **Bach** ({bach['chorales']} {result['split']} chorales) | {bach['parallels_per_100_beats']:.2f} "
        f"| {bach['crossings_per_100_beats']:.2f} | {bach['out_of_range_per_100_beats']:.2f} "
        f"| {bach['onset_density']:.2f} | {bach['max_copy_beats']} / {bach['median_copy_beats']:.1f} |",
    ]
    for name, s in sy.items():
        if name.endswith((" chance", " template")):
            continue
        sp = s.get("spread", {})
        lines.append(f"| {name} | {_fmt(s['parallels_per_100_beats'], sp.get('parallels_per_100_beats'), 2)} "
                     f"| {_fmt(s['crossings_per_100_beats'], sp.get('crossings_per_100_beats'), 2)} "
                     f"| {_fmt(s['out_of_range_per_100_beats'], sp.get('out_of_range_per_100_beats'), 2)} "
                     f"| {_fmt(s['onset_density'], None, 2)} | {s['max_copy_beats']} / {s['median_copy_beats']:.1f} |")
    lines += ["", "Rates are per 100 beats.", "", "![musical checks](musical_checks.png)", "", "## Goals", ""]
    for model, rows in result["goals"].items():
        lines.append(f"**{model}**")
        lines.append("")
        for k, r in rows.items():
            lines.append(f"- {'met' if r['met'] else 'MISSED'}: {k}: {_fmt(r['value'])} (goal {_fmt(r['goal'])})")
        lines.append("")
    lines += gaps(result)
    lines += ["## Encoders", "", "| encoder | validation CPC accuracy (training) | chance | codes used here "
              "| perplexity here | grader ceiling / best-map agreement | trained by |", "|---|---|---|---|---|---|---|"]
    for name, e in result["encoders"].items():
        a = e.get("agreement_with_grader")
        agree = f"{a['ceiling']:.3f} / {a['best_map']:.3f}" if a else "–"
        lines.append(f"| {name} | {_fmt(e['validation_cpc_accuracy'])} | {_fmt(e['cpc_chance'], None, 4)} "
                     f"| {e['codes_used']} | {e['perplexity']} | {agree} | `{e['command']}` |")
    lines += ["", "## How the figures are made", "", _METHOD]
    if result.get("reading"):
        lines += ["", "## Reading", "", result["reading"]]
    return "\n".join(lines) + "\n"


def gaps(result: dict) -> list[str]:
    """What the figures of this run say about each missed goal, and what would close it."""
    sy, bach, rules = result["systems"], result["bach"], result["settings"].get("rules", True)
    out = ["## Gaps and what would close them", ""]
    for model, rows in result["goals"].items():
        s = sy[model]
        for k, r in rows.items():
            if r["met"]:
                continue
            if k.startswith("code consistency"):
                rr = sy.get(f"{model} reranked", {})
                bs = sy.get(f"{model} beat search")
                text = (f"**{model}, code consistency** {s['code_consistency_other_grader']:.2f} by the other-seed grader "
                        f"({s['code_consistency']:.2f} by its own encoder; chance "
                        f"{sy[model + ' chance']['code_consistency_other_grader']:.2f}, the decoder fed shuffled codes "
                        f"{sy[model + ' shuffled codes']['code_consistency_other_grader']:.2f}). Reranking "
                        f"{result['settings']['candidates']} candidates gives {rr.get('code_consistency_other_grader', 0):.2f}.")
                if bs:
                    text += (f" Beat search ({result['settings']['beat_search']} candidates a beat, steered by the own "
                             f"encoder) gives {bs['code_consistency']:.2f} by the own encoder and "
                             f"{bs['code_consistency_other_grader']:.2f} by the other-seed grader, novelty "
                             f"{bs['novelty']:.2f}: searching closes most of the gap the own encoder sees, and what is "
                             f"left by the grader is where two encoders of the same kind disagree.")
                agree = result["encoders"].get(f"{model} model", {}).get("agreement_with_grader")
                if agree:
                    text += (f" But the two encoders themselves agree only so far: a variation whose every beat had "
                             f"the template's own code, each beat a typical one of its code, would score "
                             f"{agree['ceiling']:.2f} by the grader (its codes match the own encoder's under the best "
                             f"code-to-code map on {agree['best_map']:.0%} of real beats). A goal above that ceiling "
                             f"needs encoders whose codes agree across seeds (fewer codes, or a codebook fixed by a "
                             f"stronger training signal), not only a better decoder.")
                text += (" For the decoder itself to follow the codes more tightly without search: a larger decoder "
                         "trained longer, or a training signal through the encoder (the re-encoded codes of sampled "
                         "beats as a loss).")
                out += [text, ""]
            elif k.startswith("parallels"):
                out += [f"**{model}, parallels** {s['parallels_per_100_beats']:.2f} per 100 beats against Bach's "
                        f"{bach['parallels_per_100_beats']:.2f}" + ("; the sampling rule should make this 0: look for rows "
                        "where the rules left nothing." if rules else ": sample with the voice-leading rules "
                        "(the default) to keep them out."), ""]
            elif k.startswith("notes outside"):
                out += [f"**{model}, ranges** {s['out_of_range_per_100_beats']:.2f} notes outside the textbook ranges "
                        f"per 100 beats against Bach's {bach['out_of_range_per_100_beats']:.2f}" +
                        (": the range rule is on, so these are tokens where the rules left nothing." if rules else
                         ": the models' ranges are the training chorales' extremes, wider than the textbook's; the "
                         "range rule (the default) keeps notes inside."), ""]
            elif k.startswith("longest copy"):
                out += [f"**{model}, copies**: a run of {s['max_copy_beats']} beats equals a training chorale (Bach's "
                        f"test chorales: {bach['max_copy_beats']}); filter variations with a copy longer than Bach's "
                        "figure, or sample at a higher temperature.", ""]
            else:
                out += [f"**{model}**: {k}: {r['value']} (goal {r['goal']}).", ""]
    if len(out) == 2:
        out += ["Every goal is met in this run.", ""]
    return out


_METHOD = """\
- *Code consistency*: the share of beats whose code, when the variation is encoded again, equals
  the template's code. "Own encoder" is the model's encoder (the one reranking optimises);
  "other-seed grader" is an encoder of the same kind trained with another seed, comparing its
  own codes of the variation with its own codes of the template. Padded pickup beats are skipped.
- *Reranked*: the best of the candidates by the own encoder; the unreranked row is the first
  candidate of each group, an ordinary sample.
- *Shuffled codes*: the decoder fed the template's codes in a random order; scored against the
  template's codes and against the codes it was fed ("to the codes fed").
- *Chance*: another chorale of the split in the same meter, cut or looped to the template's length,
  scored as if it were a variation. *Template*: the template itself (the ceiling).
- *Onset novelty*: 1 − |O_v ∩ O_t| / |O_v ∪ O_t| over (tick, voice, pitch) onsets; held notes do not
  count. *Longest run = template*: beats equal to the template up to one transposition.
- *Copies*: the longest run of beats whose sounding pitches equal consecutive beats of one training
  chorale up to one transposition (beats where nothing starts bridge a run without counting).
  Bach's figure is each test chorale against the training chorales.
- *Parallels*: at each tick where a note starts, every pair of voices against the previous such tick:
  both moved in the same direction and form the same perfect fifth or octave (mod 12, unison
  included). *Crossings*: a voice below the next lower one, counted where it begins. *Ranges*:
  S C4–G5, A G3–D5, T C3–G4, B E2–C4, counted per note started. Bach's chorales are read as written.
- *Grader ceiling*: the other-seed grader's expected consistency for a variation whose every beat
  carries the template's own code and is otherwise a typical beat of that code,
  Σ_c p(c) Σ_g p(g | c)², over the split's real beats (c: the model's code, g: the grader's);
  *best-map agreement*: the share of beats whose grader code is the one most often paired with
  their own code.
- *Pitch-class distance*: total-variation distance of the duration-weighted pitch-class
  distributions of variation and template.
"""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_points(result: dict, path: Path) -> Path:
    """Per system: each variation's consistency (by the other-seed grader) against its novelty."""
    plt = _plt()
    names = [n for n in result["points"] if not n.endswith(" template")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for ax, col, title in ((axes[0], 0, "own encoder"), (axes[1], 1, "other-seed grader")):
        for name in names:
            pts = result["points"][name]
            ax.scatter([p[2] for p in pts], [p[col] for p in pts], s=8, alpha=0.5, label=name)
        ax.axhline(GOALS["code_consistency_other_grader"], color="k", lw=0.8, ls="--")
        ax.axvline(GOALS["novelty"], color="k", lw=0.8, ls=":")
        ax.set_xlabel("onset novelty")
        ax.set_title(f"code consistency ({title})")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("code consistency")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{result['split']} split: one point a variation (dashed: goals)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_checks(result: dict, path: Path) -> Path:
    """A bar chart of the musical checks, Bach's own rate beside each system's."""
    import numpy as np

    plt = _plt()
    names = ["Bach"] + [n for n in result["systems"] if not n.endswith((" chance", " template"))]
    vals = {"Bach": [result["bach"][c] for c in CHECKS]}
    errs = {"Bach": [0.0] * len(CHECKS)}
    for n in names[1:]:
        s = result["systems"][n]
        vals[n] = [s[c] for c in CHECKS]
        errs[n] = [s.get("spread", {}).get(c, {}).get("std", 0.0) for c in CHECKS]
    x = np.arange(len(CHECKS))
    w = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for i, n in enumerate(names):
        ax.bar(x + i * w, vals[n], w, yerr=errs[n], label=n, color="k" if n == "Bach" else None)
    ax.set_xticks(x + w * (len(names) - 1) / 2, ["parallel 5ths/8ves", "voice crossings", "outside SATB ranges"])
    ax.set_ylabel("per 100 beats")
    ax.set_title(f"musical checks, {result['split']} split (error bars: std over seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
