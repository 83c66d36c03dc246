"""What codes mean, and how well variations keep them: measures for model cards (no torch).

- ``code_information``: normalized mutual information between a beat's code and the key of its
  chorale (transposed), the bass pitch class and the chord (root + quality) sounding at the beat's
  onset, beside a random-code baseline (the same codes shuffled);
- ``variation_figures``: code consistency and onset novelty of one variation per test chorale,
  beside a chance baseline (another test chorale of the same meter against the same codes).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from vqcpc.music.grid import HOLD, PITCH_OFFSET, REST, TICKS_PER_BEAT, Grid, fold_grid, legal_shifts, load_ranges

PITCH_CLASSES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]


def nmi(x, y) -> float:
    """Normalized mutual information 2 I(X;Y) / (H(X) + H(Y)) of two label sequences."""
    x, y = np.asarray(x), np.asarray(y)
    _, xi = np.unique(x, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    joint = np.zeros((xi.max() + 1, yi.max() + 1))
    np.add.at(joint, (xi, yi), 1)
    p = joint / joint.sum()
    px, py = p.sum(1), p.sum(0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(px, py)[nz])).sum())
    hx = -float((px[px > 0] * np.log(px[px > 0])).sum())
    hy = -float((py[py > 0] * np.log(py[py > 0])).sum())
    return 2 * mi / (hx + hy) if hx + hy > 0 else 0.0


def sounding_at(tokens: np.ndarray, tick: int) -> list[int]:
    """MIDI pitches sounding at ``tick`` (onsets and held notes), voice by voice."""
    out = []
    for v in range(tokens.shape[1]):
        t = tick
        while t >= 0 and tokens[t, v] == HOLD:
            t -= 1
        if t >= 0 and tokens[t, v] >= PITCH_OFFSET:
            out.append(int(tokens[t, v]) - PITCH_OFFSET)
    return out


@lru_cache(maxsize=4096)
def chord_label(pitches: tuple[int, ...]) -> str:
    """Root and quality of a sonority, by music21 (as chordify would label that slice)."""
    if not pitches:
        return "rest"
    from music21 import chord

    c = chord.Chord(list(pitches))
    return f"{c.root().name}:{c.quality}"


def beat_labels(grid: Grid, tonic_pc: int | None, mode: str) -> dict[str, list]:
    labels = {"key": [], "bass": [], "chord": []}
    for b in range(grid.beats):
        pitches = sounding_at(grid.tokens, b * TICKS_PER_BEAT)
        labels["key"].append(f"{PITCH_CLASSES[tonic_pc]} {mode}" if tonic_pc is not None else "?")
        labels["bass"].append(PITCH_CLASSES[min(pitches) % 12] if pitches else "rest")
        labels["chord"].append(chord_label(tuple(sorted(set(p % 12 + 60 for p in pitches)))))
    return labels


def code_information(backend, chorales, seed: int = 0, shuffles: int = 5) -> dict:
    """NMI of codes with key, bass pitch class and chord over ``chorales`` in all their legal
    transpositions (so that key varies), with the shuffled-code baseline beside each."""
    from music21 import pitch as m21pitch

    ranges = load_ranges()
    codes, labels = [], {"key": [], "bass": [], "chord": []}
    for c in chorales:
        grid = fold_grid(c.grid, ranges)
        tonic, mode = (grid.key or "C major").split()
        pc = m21pitch.Pitch(tonic).pitchClass
        for s in legal_shifts(grid, ranges):
            g = grid.transposed(s) if s else grid
            skip = g.pickup_ticks // TICKS_PER_BEAT  # padded pickup beats are silence, not music
            cs = backend.encode(g.beat_tokens().astype(np.int64))[skip:]
            lab = beat_labels(g, (pc + s) % 12, mode)
            codes.extend(cs.tolist())
            for k in labels:
                labels[k].extend(lab[k][skip:])
    rng = np.random.default_rng(seed)
    out = {"beats": len(codes)}
    for k, lab in labels.items():
        base = [nmi(rng.permutation(codes), lab) for _ in range(shuffles)]
        out[k] = {"nmi": round(nmi(codes, lab), 4), "random_codes_nmi": round(float(np.mean(base)), 4)}
    return out


def variation_figures(backend, chorales, *, seed: int = 0, candidates: int = 1, temperature: float = 1.0,
                      top_p: float = 0.95) -> dict:
    """One variation per chorale: median code consistency and novelty, and the chance consistency
    of the next chorale of the same meter against the same codes."""
    from .generate import generate, template_codes
    from .sampling import code_consistency

    rows = []
    for i, c in enumerate(chorales):
        grid = c.grid
        if grid.beats_per_bar not in (3, 4):
            continue
        codes = template_codes(backend, grid)
        v = generate(backend, grid, codes, n=1, seed=seed + i, candidates=candidates,
                     temperature=temperature, top_p=top_p)[0]
        others = [o for o in chorales[i + 1:] + chorales[:i] if o.grid.beats_per_bar == grid.beats_per_bar]
        other_codes = template_codes(backend, others[0].grid)
        skip = grid.pickup_ticks // TICKS_PER_BEAT
        chance = code_consistency(np.resize(other_codes, len(codes)), codes, skip, grid.beats)
        rows.append({"chorale": c.name, "code_consistency": v.code_consistency, "novelty": v.novelty,
                     "chance_consistency": chance})
    med = {k: round(float(np.median([r[k] for r in rows])), 4) for k in ("code_consistency", "novelty", "chance_consistency")}
    return {"chorales": len(rows), "candidates": candidates, "median": med, "per_chorale": rows}


assert REST == 0
