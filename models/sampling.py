"""Token sampling shared by the torch and the ONNX backends (numpy only, no torch)."""
from __future__ import annotations

import numpy as np

from vqcpc.music.grid import HOLD, N_VOICES, REST


class Sampler:
    """Temperature + top-p sampling of B streams, seeded; impossible tokens masked:
    pitches outside the voice's range, and HOLD where the voice has no sounding note."""

    def __init__(self, voice_mask: np.ndarray, batch: int, *, temperature: float = 1.0, top_p: float = 0.95,
                 seed: int | None = 0):
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < top_p <= 1:
            raise ValueError("top-p must be in (0, 1]")
        self.voice_mask = voice_mask  # (4, V) bool
        self.temperature, self.top_p = temperature, top_p
        self.rng = np.random.default_rng(seed)
        self.sounding = np.zeros((batch, N_VOICES), dtype=bool)  # a note to HOLD in each voice

    def allowed(self, voice: int) -> np.ndarray:
        """(B, V) bool: what each stream may emit for ``voice`` now."""
        ok = np.repeat(self.voice_mask[voice][None], len(self.sounding), axis=0)
        ok[:, HOLD] &= self.sounding[:, voice]
        return ok

    def sample(self, logits: np.ndarray, voice: int, forced: np.ndarray | int | None = None) -> np.ndarray:
        """logits (B, V) for ``voice`` -> tokens (B,). ``forced`` overrides the choice (e.g. REST in
        a padded pickup)."""
        if forced is not None:
            tok = np.broadcast_to(np.asarray(forced, dtype=np.int64), (logits.shape[0],)).copy()
        else:
            ok = self.allowed(voice)
            x = np.where(ok, logits.astype(np.float64), -np.inf)
            if self.temperature == 0:
                tok = x.argmax(-1)
            else:
                x = x / self.temperature
                x -= x.max(-1, keepdims=True)
                p = np.exp(x)
                p /= p.sum(-1, keepdims=True)
                tok = np.array([self._top_p(row) for row in p])
        self.sounding[:, voice] = tok != REST
        return tok

    def _top_p(self, p: np.ndarray) -> int:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, self.top_p)) + 1]
        q = p[keep] / p[keep].sum()
        return int(keep[self.rng.choice(len(keep), p=q)])


def code_consistency(a: np.ndarray, b: np.ndarray, skip: int = 0) -> float:
    """Share of beats (after the first ``skip``, the padded pickup) whose codes are equal."""
    a, b = np.asarray(a)[skip:], np.asarray(b)[skip:]
    n = min(len(a), len(b))
    return float((a[:n] == b[:n]).mean()) if n else float("nan")


def onset_novelty(variation: np.ndarray, template: np.ndarray) -> float:
    """1 - Jaccard similarity of the (tick, voice, pitch) onset sets; holds do not count."""
    from vqcpc.music.grid import PITCH_OFFSET

    def onsets(t):
        ticks, voices = np.nonzero(t >= PITCH_OFFSET)
        return set(zip(ticks.tolist(), voices.tolist(), t[ticks, voices].tolist()))

    ov, ot = onsets(np.asarray(variation)), onsets(np.asarray(template))
    union = ov | ot
    return 1.0 - len(ov & ot) / len(union) if union else 0.0
