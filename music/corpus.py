"""The dataset: four-part Bach chorales of music21, grouped by tune, split, cached (DESIGN §3)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import InputError
from .grid import N_VOICES, PITCH_OFFSET, VOICES, Grid, Report, legal_shifts, load_ranges, notes_of_voice

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
CACHE_FORMAT = 1
TUNE_PREFIX = 10  # soprano intervals compared when grouping chorales by tune


def cache_dir() -> Path:
    return Path(os.environ.get("VQCPC_CACHE", Path.home() / ".cache" / "vqcpc"))


def _code_fingerprint() -> str:
    """Hash of the code that turns scores into grids and of music21's version: the cache key."""
    import music21

    h = hashlib.sha256(f"{CACHE_FORMAT} {music21.__version__}".encode())
    pkg = resources.files("vqcpc.music")
    for name in ("grid.py", "voicing.py", "score.py", "corpus.py"):
        h.update(pkg.joinpath(name).read_bytes())
    return h.hexdigest()[:16]


def list_chorales() -> list[str]:
    """BWV names of the chorales music21 lists (353 with music21 10.5), in its order."""
    from music21 import corpus

    names = []
    for fn in corpus.chorales.Iterator(numberingSystem="bwv", returnType="filename"):
        name = fn.split("/")[-1].removesuffix(".mxl")
        if name not in names:
            names.append(name)
    return names


@dataclass
class Chorale:
    name: str  # e.g. 'bwv269'
    grid: Grid


def _parse_all() -> tuple[list[Chorale], dict]:
    """Parse every listed chorale; keep the four-part ones. Slow (about a minute)."""
    from music21 import corpus

    from .score import grid_from_score

    chorales, skipped = [], {}
    for name in list_chorales():
        score = corpus.parse(f"bach/{name}")
        if len(score.parts) != N_VOICES:
            skipped[name] = f"{len(score.parts)} parts"
            continue
        chorales.append(Chorale(name, grid_from_score(score, source=name)))
    return chorales, skipped


def load_corpus(*, refresh: bool = False) -> list[Chorale]:
    """All four-part chorales as grids, from the on-disk cache when it matches code and music21."""
    path = cache_dir() / f"chorales-{_code_fingerprint()}.npz"
    if not refresh and (cached := _try_cache(path)) is not None:
        return cached
    # Two processes started together (two trainings) must not parse at once: music21's own parse
    # cache is read while the other process is still writing it. The second waits, then reads ours.
    with _cache_lock(path.parent):
        if not refresh and (cached := _try_cache(path)) is not None:
            return cached
        log.info("parsing the music21 chorales (about a minute; cached afterwards in %s)", path.parent)
        chorales, skipped = _parse_all()
        _write_cache(path, chorales, skipped)
    return chorales


def _try_cache(path: Path) -> list[Chorale] | None:
    if not path.exists():
        return None
    try:
        return _read_cache(path)
    except (OSError, ValueError, KeyError) as err:
        log.warning("corpus cache %s unreadable (%s); rebuilding", path, err)
        return None


@contextmanager
def _cache_lock(folder: Path):
    """An exclusive lock on FOLDER/corpus.lock (POSIX flock; no lock where fcntl is missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no concurrent trainings expected there
        yield
        return
    with open(folder / "corpus.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_cache(path: Path, chorales: list[Chorale], skipped: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = [{"name": c.name, "ticks": c.grid.ticks, "beats_per_bar": c.grid.beats_per_bar,
             "pickup_ticks": c.grid.pickup_ticks, "key": c.grid.key, "report": c.grid.report.as_dict()}
            for c in chorales]
    tokens = np.concatenate([c.grid.tokens for c in chorales])
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, tokens=tokens, meta=json.dumps({"chorales": meta, "skipped": skipped}))
    tmp.replace(path)


def _read_cache(path: Path) -> list[Chorale]:
    with np.load(path) as data:
        tokens = data["tokens"]
        meta = json.loads(str(data["meta"]))
    out, at = [], 0
    for m in meta["chorales"]:
        t = tokens[at: at + m["ticks"]]
        at += m["ticks"]
        out.append(Chorale(m["name"], Grid(t, beats_per_bar=m["beats_per_bar"], pickup_ticks=m["pickup_ticks"],
                                           key=m["key"], source=m["name"], report=Report(**m["report"]))))
    return out


# --- tunes and the split -------------------------------------------------------------------------

def tune_signature(grid: Grid) -> tuple[int, ...]:
    """The soprano's first intervals, repeated notes merged: equal for the same tune in any key."""
    pitches = [p for _, _, p in notes_of_voice(grid.tokens[:, 0])]
    merged = [p for i, p in enumerate(pitches) if i == 0 or p != pitches[i - 1]]
    return tuple(b - a for a, b in zip(merged, merged[1:]))[:TUNE_PREFIX]


def group_by_tune(chorales: list[Chorale]) -> list[list[str]]:
    """Chorale names grouped by tune (same soprano opening up to transposition), sorted."""
    groups: dict[tuple, list[str]] = {}
    for c in chorales:
        groups.setdefault(tune_signature(c.grid), []).append(c.name)
    return sorted(sorted(g) for g in groups.values())


def make_split(chorales: list[Chorale], seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> dict:
    """A group-level split, about 80/10/10 of the chorales; never a tune in two splits."""
    groups = group_by_tune(chorales)
    random.Random(seed).shuffle(groups)
    n = len(chorales)
    split = {s: [] for s in SPLITS}
    targets = [fractions[1] * n, fractions[2] * n]
    for g in groups:
        if len(split["validation"]) + len(g) <= targets[0]:
            split["validation"].extend(g)
        elif len(split["test"]) + len(g) <= targets[1]:
            split["test"].extend(g)
        else:
            split["train"].extend(g)
    return {s: sorted(v, key=_bwv_order) for s, v in split.items()} | {
        "groups": [g for g in sorted(groups) if len(g) > 1]}


def _bwv_order(name: str):
    return tuple(int(x) for x in re.findall(r"[0-9]+", name))


def load_split() -> dict[str, list[str]]:
    """The committed split: {'train': [...], 'validation': [...], 'test': [...]} by BWV name."""
    data = json.loads(resources.files("vqcpc.music").joinpath("splits.json").read_text())
    return {s: data[s] for s in SPLITS}


def split_hash() -> str:
    return hashlib.sha256(json.dumps(load_split(), sort_keys=True).encode()).hexdigest()[:16]


def corpus_split(split: str) -> list[Chorale]:
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    names = set(load_split()[split])
    return [c for c in load_corpus() if c.name in names]


def voice_ranges_of(chorales: list[Chorale]) -> dict[str, list[int]]:
    lo, hi = [999] * N_VOICES, [-1] * N_VOICES
    for c in chorales:
        for v, span in enumerate(c.grid.pitch_span()):
            if span:
                lo[v], hi[v] = min(lo[v], span[0]), max(hi[v], span[1])
    return {VOICES[v]: [lo[v], hi[v]] for v in range(N_VOICES)}


def augmented(chorales: list[Chorale]) -> list[tuple[Chorale, int]]:
    """(chorale, shift) for every shift in -6..+5 that keeps all four voices in range."""
    ranges = load_ranges()
    return [(c, s) for c in chorales for s in legal_shifts(c.grid, ranges)]


def summary() -> dict:
    """What `vqcpc data` prints."""
    chorales = load_corpus()
    split = load_split()
    by_name = {c.name: c for c in chorales}
    rep = Report()
    for c in chorales:
        rep.add(c.grid.report)
    beats = sum(c.grid.beats for c in chorales)
    aug = augmented([by_name[n] for n in split["train"] if n in by_name])
    return {
        "chorales": {s: len(split[s]) for s in SPLITS},
        "total_chorales": len(chorales),
        "tunes": {s: len({tune_signature(by_name[n].grid) for n in split[s] if n in by_name}) for s in SPLITS},
        "beats": beats,
        "tokens": beats * 16,
        "meters": {f"{m}/4": sum(c.grid.beats_per_bar == m for c in chorales) for m in (3, 4)},
        "with_pickup": sum(c.grid.pickup_ticks > 0 for c in chorales),
        "train_transpositions": len(aug),
        "voice_ranges": {v: list(r) for v, r in zip(VOICES, load_ranges())},
        "snapped": rep.snapped,
        "dropped": rep.dropped,
        "chords": rep.chords,
        "pitch_offset": PITCH_OFFSET,
    }
