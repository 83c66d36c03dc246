"""The evaluation harness (DESIGN §7): variations of every chorale of a split, every measure, the
baselines beside them, the spread over seeds. numpy + onnxruntime (torch only with --backend torch).

For each model and chorale, one batch of streams is decoded per seed:
``n * candidates`` rows follow the template's codes and ``n`` rows follow the same codes shuffled
over the chorale's beats. The first candidate of each group is the variation without reranking
(an ordinary sample); the best of the group by the model's own encoder is the reranked one. Code
consistency is graded twice: by the model's encoder and by a grader, an encoder of the same kind
trained with another seed (its codes are compared with the codes *it* gives the template).

Systems, per model M: ``M``, ``M reranked``, ``M shuffled codes`` (scored against the template's
codes and against the codes it was fed), ``M chance`` (another chorale of the split, same meter,
as if it were a variation: the floor). ``template``: the chorale itself (the ceiling). ``bach``:
the musical checks on the split's real chorales, copies measured against the training chorales.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from vqcpc.music import checks
from vqcpc.music.errors import ModelError
from vqcpc.music.grid import TICKS_PER_BEAT, TOKENS_PER_BEAT, Grid, fold_grid, load_ranges

from .generate import decode, padded_to_bars, template_codes
from .sampling import Sampler, code_consistency, onset_novelty

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    split: str = "validation"
    n: int = 4
    seeds: int = 3
    candidates: int = 2
    temperature: float = 1.0
    top_p: float = 0.95
    backend: str = "onnx"
    rules: bool = True  # False: sample without the voice-leading rules of Sampler (the model alone)
    beat_search: int = 1  # K > 1 adds the system "M beat search" (generate.decode)
    jobs: int = 2
    limit: int | None = None  # the first LIMIT chorales of the split (quick runs, tests)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model_dir: str
    grader_dir: str


# --- one variation's measures ---------------------------------------------------------------------

def measure(tokens: np.ndarray, template: Grid, *, codes_own, template_own, codes_other, template_other,
            copies: checks.CopyIndex) -> dict:
    """Every measure of one piece of music (a variation, or a baseline) against its template."""
    skip = template.pickup_ticks // TICKS_PER_BEAT
    body = tokens[skip * TICKS_PER_BEAT:]
    beats = len(body) / TICKS_PER_BEAT
    return {
        "code_consistency": code_consistency(codes_own, template_own, skip, template.beats),
        "code_consistency_other_grader": code_consistency(codes_other, template_other, skip, template.beats),
        "novelty": onset_novelty(tokens, template.tokens),
        "template_run_beats": checks.longest_template_run(tokens, template.tokens, skip),
        "copy_beats": copies.longest_copy(tokens, skip),
        "parallels": checks.parallels(body),
        "crossings": checks.crossings(body),
        "out_of_range": checks.out_of_range(body),
        "onsets": int(checks.onsets(body).sum()),
        "beats": beats,
        "pitch_class_distance": checks.pitch_class_distance(body, template.tokens[skip * TICKS_PER_BEAT:]),
    }


def summarize(rows: list[dict]) -> dict:
    """Rows of ``measure`` -> the system's figures (rates per 100 beats pooled over all beats)."""
    copies = [r["copy_beats"] for r in rows]
    out = {
        "variations": len(rows),
        "code_consistency": float(np.mean([r["code_consistency"] for r in rows])),
        "code_consistency_other_grader": float(np.mean([r["code_consistency_other_grader"] for r in rows])),
        "novelty": float(np.mean([r["novelty"] for r in rows])),
        "template_run_beats": int(max(r["template_run_beats"] for r in rows)),
        "max_copy_beats": int(max(copies)),
        "median_copy_beats": float(np.median(copies)),
        **pooled_rates(rows),
        "pitch_class_distance": float(np.mean([r["pitch_class_distance"] for r in rows])),
    }
    if "consistency_to_fed_codes" in rows[0]:
        out["consistency_to_fed_codes"] = float(np.mean([r["consistency_to_fed_codes"] for r in rows]))
    return out


def over_seeds(per_seed: list[dict]) -> dict:
    """Mean over seeds of each figure, with its spread (std, min, max) and the per-seed values."""
    out = {}
    for k in per_seed[0]:
        vals = np.array([s[k] for s in per_seed], dtype=float)
        out[k] = round(float(vals.mean()), 4)
        if len(vals) > 1 and k != "variations":
            out.setdefault("spread", {})[k] = {"std": round(float(vals.std(ddof=1)), 4),
                                               "min": round(float(vals.min()), 4), "max": round(float(vals.max()), 4)}
    for k in ("max_copy_beats", "template_run_beats", "variations"):
        if k in out:
            out[k] = int(round(max(s[k] for s in per_seed))) if k != "variations" else int(sum(s[k] for s in per_seed))
    return out


# --- the work of one model on one chorale (a worker process) ----------------------------------------

_CACHE: dict = {}


def _open(spec: ModelSpec, backend: str):
    key = (spec, backend)
    if key not in _CACHE:
        from vqcpc.export.runtime import EncoderEngine

        from .commands import open_backend

        if backend == "torch":
            import torch

            torch.set_num_threads(1)  # one worker a core: torch's own threads would fight them
        _CACHE[key] = (open_backend(spec.model_dir, backend, "cpu"), EncoderEngine(spec.grader_dir))
    return _CACHE[key]


def _copy_index() -> checks.CopyIndex:
    if "copies" not in _CACHE:
        from vqcpc.music.corpus import corpus_split

        _CACHE["copies"] = checks.CopyIndex([c.grid.tokens for c in corpus_split("train")])
    return _CACHE["copies"]


def _encode(enc, tokens: np.ndarray, grid: Grid) -> np.ndarray:
    g = dataclasses.replace(grid, tokens=tokens)
    return enc.encode(padded_to_bars(g).reshape(-1, TOKENS_PER_BEAT).astype(np.int64))


def model_on_chorale(spec: ModelSpec, st: Settings, index: int, grid: Grid, others: list[Grid]) -> dict:
    """Rows of measures for each system of this model on one chorale, per seed."""
    backend, grader = _open(spec, st.backend)
    copies = _copy_index()
    template = fold_grid(grid, load_ranges())
    skip, end = grid.pickup_ticks // TICKS_PER_BEAT, grid.beats  # beats after `end` pad the last bar
    own_t, other_t = template_codes(backend, grid), template_codes(grader, grid)
    k, n = st.candidates, st.n
    out = {f"{spec.name}{s}": [[] for _ in range(st.seeds)]
           for s in ("", " reranked", " shuffled codes", " chance", " template")}
    for s in range(st.seeds):
        seed = 1000 * s + index
        rng = np.random.default_rng(seed)
        shuffled = np.concatenate([own_t[:skip], rng.permutation(own_t[skip:end]), own_t[end:]])
        rows = np.stack([own_t] * (n * k) + [shuffled] * n)
        samplers = [(slice(0, n * k), Sampler(backend.voice_mask, n * k, temperature=st.temperature,
                                               top_p=st.top_p, seed=seed, rules=st.rules)),
                    (slice(n * k, n * k + n), Sampler(backend.voice_mask, n, temperature=st.temperature,
                                                      top_p=st.top_p, seed=seed + 500, rules=st.rules))]
        grids = decode(backend, grid, rows, samplers)
        own = [_encode(backend, g, grid) for g in grids]
        oth = [_encode(grader, g, grid) for g in grids]

        def m(i):
            return measure(grids[i], template, codes_own=own[i], template_own=own_t, codes_other=oth[i],
                           template_other=other_t, copies=copies)

        for g in range(n):
            group = range(g * k, (g + 1) * k)
            out[spec.name][s].append(m(group[0]))
            best = max(group, key=lambda r: (code_consistency(own[r], own_t, skip, end), -r))
            out[f"{spec.name} reranked"][s].append(m(best))
        if st.beat_search > 1:
            K = st.beat_search
            searched = decode(backend, grid, np.stack([own_t] * (n * K)),
                              [(slice(0, n * K), Sampler(backend.voice_mask, n * K, temperature=st.temperature,
                                                          top_p=st.top_p, seed=seed + 900, rules=st.rules))],
                              search=K)
            for g in searched:
                out.setdefault(f"{spec.name} beat search", [[] for _ in range(st.seeds)])[s].append(
                    measure(g, template, codes_own=_encode(backend, g, grid), template_own=own_t,
                            codes_other=_encode(grader, g, grid), template_other=other_t, copies=copies))
        for i in range(n * k, n * k + n):
            row = m(i)
            row["consistency_to_fed_codes"] = code_consistency(own[i], shuffled, skip, end)
            out[f"{spec.name} shuffled codes"][s].append(row)
        # chance: another chorale of the split (same meter), its tokens cut or looped to this length
        o = np.resize(others[s].tokens, grid.tokens.shape)
        out[f"{spec.name} chance"][s].append(
            measure(o, template, codes_own=_encode(backend, o, grid), template_own=own_t,
                    codes_other=_encode(grader, o, grid), template_other=other_t, copies=copies))
        # the ceiling: the template itself, re-encoded as a variation would be
        t = template.tokens
        out[f"{spec.name} template"][s].append(
            measure(t, template, codes_own=_encode(backend, t, grid), template_own=own_t,
                    codes_other=_encode(grader, t, grid), template_other=other_t, copies=copies))
    return out


def _task(args):
    spec, st, index, grid, others = args
    t0 = time.perf_counter()
    rows = model_on_chorale(spec, st, index, grid, others)
    return spec.name, grid.source, rows, time.perf_counter() - t0


def bach_rows(chorales, copies: checks.CopyIndex) -> list[dict]:
    """The musical checks on the real chorales (each its own template; copies against train)."""
    rows = []
    for c in chorales:
        g = c.grid  # as Bach wrote it (not folded into the models' ranges)
        skip = g.pickup_ticks // TICKS_PER_BEAT
        body = g.tokens[skip * TICKS_PER_BEAT:]
        rows.append({"chorale": c.name, "copy_beats": copies.longest_copy(g.tokens, skip),
                     "parallels": checks.parallels(body), "crossings": checks.crossings(body),
                     "out_of_range": checks.out_of_range(body), "onsets": int(checks.onsets(body).sum()),
                     "beats": len(body) / TICKS_PER_BEAT})
    return rows


def pooled_rates(rows: list[dict]) -> dict:
    """The musical checks' counts of ``rows`` pooled over all their beats: per 100 beats, onsets a beat."""
    beats = sum(r["beats"] for r in rows)
    out = {f"{k}_per_100_beats": 100 * sum(r[k] for r in rows) / beats for k in ("parallels", "crossings", "out_of_range")}
    out["onset_density"] = sum(r["onsets"] for r in rows) / beats
    return out


def bach_summary(rows: list[dict]) -> dict:
    copies = [r["copy_beats"] for r in rows]
    return {"chorales": len(rows), "max_copy_beats": int(max(copies)), "median_copy_beats": float(np.median(copies)),
            **{k: round(v, 4) for k, v in pooled_rates(rows).items()}}


# --- the whole run ---------------------------------------------------------------------------------

def evaluate(specs: list[ModelSpec], st: Settings, progress=None) -> dict:
    from vqcpc.music.corpus import corpus_split

    t0 = time.perf_counter()
    pool = [c for c in corpus_split(st.split) if c.grid.beats_per_bar in (3, 4)]
    skipped = [c.name for c in corpus_split(st.split) if c.grid.beats_per_bar not in (3, 4)]
    chorales = pool[: st.limit] if st.limit else pool
    if not chorales:
        raise ModelError(f"split {st.split!r}: no chorale in 3/4 or 4/4")
    for spec in specs:  # a model or grader that cannot be opened fails here, before any work
        _open(spec, st.backend)
    tasks = []
    for i, c in enumerate(chorales):
        # chance: another chorale of the whole split (not only of --limit's), in the same meter
        same = [o for o in pool if o.name != c.name and o.grid.beats_per_bar == c.grid.beats_per_bar]
        if not same:
            raise ModelError(f"split {st.split!r}: no other chorale in {c.grid.beats_per_bar}/4 for the chance baseline")
        rng = np.random.default_rng(i)
        others = [same[int(rng.integers(len(same)))].grid for _ in range(st.seeds)]
        for spec in specs:
            tasks.append((spec, st, i, c.grid, others))
    rows: dict[str, list[list[dict]]] = {}
    seconds = []
    jobs = max(1, min(st.jobs, len(tasks)))
    if jobs == 1:
        results = map(_task, tasks)
    else:
        _CACHE.clear()  # the workers open their own sessions
        workers = ProcessPoolExecutor(jobs)
        results = workers.map(_task, tasks)
    for done, (_, _, r, sec) in enumerate(results, 1):
        seconds.append(sec)
        for system, per_seed in r.items():
            acc = rows.setdefault(system, [[] for _ in range(st.seeds)])
            for s, lst in enumerate(per_seed):
                acc[s].extend(lst)
        if progress:
            progress(done, len(tasks))
    if jobs > 1:
        workers.shutdown()
    copies = _copy_index()
    bach = bach_rows(chorales, copies)
    systems = {name: over_seeds([summarize(seed_rows) for seed_rows in per_seed]) for name, per_seed in rows.items()}
    points = {name: [[round(r["code_consistency"], 4), round(r["code_consistency_other_grader"], 4),
                      round(r["novelty"], 4)] for seed_rows in per_seed for r in seed_rows]
              for name, per_seed in rows.items()}
    return {
        "split": st.split, "chorales": len(chorales), "skipped_meters": skipped,
        "models": [spec.name for spec in specs],
        "graders": {spec.name: spec.grader_dir for spec in specs},
        "settings": dataclasses.asdict(st),
        "systems": systems,
        "bach": bach_summary(bach),
        "encoders": encoder_figures(specs, chorales, st.backend),
        "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds_per_task": {"median": round(float(np.median(seconds)), 2), "max": round(float(max(seconds)), 2)},
        "points": points,  # per variation: [consistency, consistency by the grader, novelty]
    }


def grader_ceiling(own: np.ndarray, other: np.ndarray) -> dict:
    """How far two encoders' codes of the same beats agree.

    ``ceiling``: the grader's expected consistency for a variation whose every beat has the
    template's own code and is otherwise a typical beat of that code: sum_c p(c) sum_g p(g | c)^2,
    over the split's real beats. ``best_map``: the share of beats whose grader code is the one
    most often paired with their own code (agreement under the best code-to-code map)."""
    joint = np.zeros((own.max() + 1, other.max() + 1))
    np.add.at(joint, (own, other), 1)
    rows = joint.sum(1, keepdims=True)
    cond = joint / np.maximum(rows, 1)
    ceiling = float(((rows[:, 0] / joint.sum()) * (cond ** 2).sum(1)).sum())
    return {"ceiling": round(ceiling, 4), "best_map": round(float(joint.max(1).sum() / joint.sum()), 4)}


def encoder_figures(specs: list[ModelSpec], chorales, backend: str = "onnx") -> dict:
    """Per model and grader: CPC accuracy of its training (validation) and codebook use on this
    split; per model, how far its encoder and its grader agree (``grader_ceiling``)."""
    from vqcpc.export.runtime import EncoderEngine

    out = {}
    for spec in specs:
        pair = []
        model, _ = _open(spec, backend)
        for role, d in (("model", spec.model_dir), ("grader", spec.grader_dir)):
            e = model if role == "model" else EncoderEngine(d)
            codes = np.concatenate([template_codes(e, c.grid)[c.grid.pickup_ticks // TICKS_PER_BEAT: c.grid.beats]
                                    for c in chorales])
            pair.append(codes)
            training = getattr(e, "manifest", {}).get("training", {}).get("encoder") or \
                {"metrics": getattr(e, "encoder_meta", {}).get("metrics"), "command": getattr(e, "encoder_meta", {}).get("command")}
            p = np.bincount(codes, minlength=e.n_codes) / len(codes)
            nz = p[p > 0]
            metrics = training.get("metrics") or {}
            cmd = training.get("command") or ""
            out[f"{spec.name} {role}"] = {
                "dir": str(d), "validation_cpc_accuracy": (metrics.get("validation") or {}).get("cpc_accuracy"),
                "cpc_chance": metrics.get("chance"), "codes_used": int((p > 0).sum()),
                "perplexity": round(float(np.exp(-(nz * np.log(nz)).sum())), 2), "command": cmd}
        out[f"{spec.name} model"]["agreement_with_grader"] = grader_ceiling(*pair)
    return out


def default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))
