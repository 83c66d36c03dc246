"""Variations of a template: codes -> new four-voice music that shares them.

Backend-agnostic: a backend has ``encode(beats (N, 16)) -> codes (N,)``, ``voice_mask`` and
``new_stream(beats_per_bar, batch)`` whose streams take ``push_codes((B, bpb))`` and
``step(tok_in (B,)) -> logits (B, V)``. ``TorchBackend`` is here; the ONNX runtime has its own.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from vqcpc.music.errors import InputError
from vqcpc.music.grid import (REST, TICKS_PER_BEAT, TOKENS_PER_BEAT, Grid, fold_grid, load_ranges,
                              voice_token_mask)

from .sampling import Sampler, code_consistency, onset_novelty

METERS = (3, 4)


@dataclass
class Variation:
    grid: Grid
    codes: np.ndarray  # the variation's codes, re-encoded
    code_consistency: float
    novelty: float


def padded_to_bars(grid: Grid) -> np.ndarray:
    """The grid's tokens with REST ticks added to complete the last bar: (bars * ticks_per_bar, 4)."""
    extra = grid.bars * grid.ticks_per_bar - grid.ticks
    return np.concatenate([grid.tokens, np.full((extra, 4), REST, np.int16)]) if extra else grid.tokens


def template_codes(backend, grid: Grid) -> np.ndarray:
    """Codes of every beat of whole bars (the last bar completed with silent beats)."""
    if grid.beats_per_bar not in METERS:
        raise InputError(f"{grid.source}: meter {grid.beats_per_bar}/4; the models know 3/4 and 4/4")
    tokens = padded_to_bars(fold_grid(grid, load_ranges()))
    return backend.encode(tokens.reshape(-1, TOKENS_PER_BEAT).astype(np.int64))


def parse_codes(text: str, n_codes: int) -> np.ndarray:
    try:
        codes = np.array([int(x) for x in text.replace(",", " ").split()], dtype=np.int64)
    except ValueError:
        raise InputError(f"--codes {text!r}: expected whole numbers separated by spaces") from None
    if codes.size == 0 or codes.min() < 0 or codes.max() >= n_codes:
        raise InputError(f"--codes: each code must be in 0..{n_codes - 1}")
    return codes


def fit_codes(codes: np.ndarray, beats: int) -> np.ndarray:
    """User codes repeated or cut to ``beats`` (a short pattern is looped)."""
    return np.resize(codes, beats)


def juxtapose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The first half of ``a``'s codes, then ``b``'s codes from the same beat on (looped if short)."""
    h = len(a) // 2
    return np.concatenate([a[:h], np.resize(b, len(a))[h:]])


def generate(backend, grid: Grid, codes: np.ndarray, *, n: int = 4, temperature: float = 1.0, top_p: float = 0.95,
             seed: int | None = 0, candidates: int = 1, rules: bool = True,
             beat_search: int = 1) -> list[Variation]:
    """``n`` variations of ``grid``'s length and meter that follow ``codes`` (one per beat of
    whole bars); with ``candidates`` > 1, each is the best of that many by code consistency.
    The voice-leading rules of ``Sampler`` hold unless ``rules`` is False;
    ``beat_search`` K > 1 keeps, beat by beat, one of K sampled beats with the wanted code."""
    bpb = grid.beats_per_bar
    assert len(codes) == grid.bars * bpb, (len(codes), grid.bars, bpb)
    B = n * candidates * beat_search
    sampler = Sampler(backend.voice_mask, B, temperature=temperature, top_p=top_p, seed=seed, rules=rules)
    grids = decode(backend, grid, np.tile(codes, (B, 1)), [(slice(0, B), sampler)], search=beat_search)
    recoded = [backend.encode(padded_to_bars(dataclasses.replace(grid, tokens=g)).reshape(-1, TOKENS_PER_BEAT).astype(np.int64))
               for g in grids]
    skip = grid.pickup_ticks // TICKS_PER_BEAT
    result = []
    for i in range(n):
        group = range(i * candidates, (i + 1) * candidates)
        best = max(group, key=lambda b: (code_consistency(recoded[b], codes, skip, grid.beats), -b))
        g = Grid(grids[best], beats_per_bar=bpb, pickup_ticks=grid.pickup_ticks, key=grid.key,
                 source=f"variation {i + 1} of {grid.source}")
        result.append(Variation(g, recoded[best], code_consistency(recoded[best], codes, skip, grid.beats),
                                onset_novelty(g.tokens, fold_grid(grid, load_ranges()).tokens)))
    return result


def decode(backend, grid: Grid, code_rows: np.ndarray, samplers, *, search: int = 1) -> list[np.ndarray]:
    """One batch of streams, row r following ``code_rows[r]`` (one code a beat of whole bars),
    each row sampled by the sampler whose slice holds it: ``samplers`` is [(slice, Sampler)].
    Returns each row's tokens, (grid.ticks, 4); a padded pickup is forced to REST.

    Beat search (``search`` = K > 1): rows come in groups of K that follow the same codes; at
    the end of every beat each group keeps a row whose beat the model's encoder gives the
    wanted code (the group's first row if none does) and all K rows continue from it. Only the
    group's first row is returned (len(code_rows) // K grids). It steers by the model's own
    encoder, like reranking: grade it with another encoder."""
    bpb, tpb = grid.beats_per_bar, grid.ticks_per_bar
    B = len(code_rows)
    assert B % search == 0 and all(sl.start % search == 0 and sl.stop % search == 0 for sl, _ in samplers)
    stream = backend.new_stream(bpb, B)
    out = np.zeros((grid.bars * tpb * 4, B), dtype=np.int64)
    first = np.arange(B) // search * search  # each row's group leader
    pickup_tokens = grid.pickup_ticks * 4
    prev = None
    for bar in range(grid.bars):
        stream.push_codes(np.ascontiguousarray(code_rows[:, bar * bpb:(bar + 1) * bpb]))
        for p in range(bar * tpb * 4, (bar + 1) * tpb * 4):
            logits = stream.step(prev)
            forced = REST if p // 4 < grid.pickup_ticks else None
            prev = np.empty(B, dtype=np.int64)
            for rows, sampler in samplers:
                prev[rows] = sampler.sample(logits[rows], p % 4, forced)
            out[p] = prev
            if search > 1 and (p + 1) % TOKENS_PER_BEAT == 0 and p >= pickup_tokens:
                beat = p // TOKENS_PER_BEAT
                hit = backend.encode(out[p + 1 - TOKENS_PER_BEAT: p + 1].T.copy()) == code_rows[:, beat]
                src = first.copy()
                for g in range(0, B, search):
                    ok = np.nonzero(hit[g:g + search])[0]
                    if ok.size:
                        src[g:g + search] = g + ok[0]
                stream.copy_rows(src)
                for rows, sampler in samplers:
                    sampler.copy_rows(src[rows] - rows.start)
                out[: p + 1] = out[: p + 1, src]
                prev = prev[src]
    return [out[:, b].reshape(-1, 4)[: grid.ticks] for b in range(0, B, search)]


class TorchBackend:
    """Encoder + decoder of a model directory in torch (float32, CPU by default)."""

    def __init__(self, model_dir, device="cpu"):
        import torch

        from .train_decoder import load_decoder
        from .train_encoder import load_encoder

        self.torch = torch
        self.encoder, self.encoder_meta = load_encoder(model_dir, device)
        self.decoder, self.decoder_meta = load_decoder(model_dir, device)
        self.device = device
        self.voice_mask = voice_token_mask(load_ranges())
        self.n_codes = self.encoder.cfg.codes

    def encode(self, beats: np.ndarray) -> np.ndarray:
        return self.encoder.codes(self.torch.as_tensor(beats, device=self.device)).cpu().numpy()

    def new_stream(self, beats_per_bar: int, batch: int):
        return _NumpyStream(self, beats_per_bar, batch)


class _NumpyStream:
    def __init__(self, backend: TorchBackend, bpb: int, batch: int):
        from .stream import TorchStream

        self.t = backend.torch
        self.s = TorchStream(backend.decoder, bpb, batch)

    def copy_rows(self, src: np.ndarray) -> None:
        self.s.copy_rows(src)

    def push_codes(self, codes: np.ndarray) -> None:
        self.s.push_codes(self.t.as_tensor(codes))

    def step(self, tok_in: np.ndarray | None) -> np.ndarray:
        return self.s.step(None if tok_in is None else self.t.as_tensor(tok_in)).float().cpu().numpy()
