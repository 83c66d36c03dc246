"""Token sampling shared by the torch and the ONNX backends (numpy only, no torch)."""
from __future__ import annotations

import numpy as np

from vqcpc.music.grid import HOLD, N_VOICES, PITCH_OFFSET, REST


def textbook_mask(vocab: int) -> np.ndarray:
    """(4, V) bool: REST, HOLD and the pitches inside each voice's textbook SATB range."""
    from vqcpc.music.checks import TEXTBOOK_RANGES

    m = np.zeros((N_VOICES, vocab), dtype=bool)
    m[:, [REST, HOLD]] = True
    for v, (lo, hi) in enumerate(TEXTBOOK_RANGES):
        m[v, PITCH_OFFSET + lo: PITCH_OFFSET + hi + 1] = True
    return m


class Sampler:
    """Temperature + top-p sampling of B streams, seeded; impossible tokens masked:
    pitches outside the voice's range, and HOLD where the voice has no sounding note.

    With ``rules`` (the default), three voice-leading rules of ``vqcpc.music.checks`` are kept while
    sampling, so that the variations follow the textbook as Bach's chorales do:
    - pitches outside the textbook SATB ranges (``TEXTBOOK_RANGES``) are masked;
    - a note that would make parallel fifths or octaves with a voice already sampled at this tick
      is masked (against the sonority of the last tick where a note started, both voices moving
      the same way into the same perfect interval: the rule of ``checks.parallels``);
    - a note that would start above the voice above it (a crossing) is masked.
    Where the rules would leave a row no token, that row samples without them at that step.
    Tokens must come in the flat order (S A T B of each tick), as every decoder emits them.
    """

    def __init__(self, voice_mask: np.ndarray, batch: int, *, temperature: float = 1.0, top_p: float = 0.95,
                 seed: int | None = 0, rules: bool = True):
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < top_p <= 1:
            raise ValueError("top-p must be in (0, 1]")
        self.voice_mask = voice_mask  # (4, V) bool
        self.temperature, self.top_p = temperature, top_p
        self.rng = np.random.default_rng(seed)
        self.sounding = np.zeros((batch, N_VOICES), dtype=bool)  # a note to HOLD in each voice
        self.rules = rules
        self.textbook = textbook_mask(voice_mask.shape[1])
        self.pitch = np.full((batch, N_VOICES), -1)  # sounding pitch (-1 none), this tick's voices so far
        self.last_event = np.full((batch, N_VOICES), -1)  # the sonority where a note last started
        self.onset_now = np.zeros(batch, dtype=bool)  # a note started at this tick so far
        self.rule_masked = 0  # row-steps where a rule removed at least one pitch

    def copy_rows(self, src: np.ndarray) -> None:
        """Row r takes row src[r]'s sampling state (what sounds, the last sonority)."""
        for name in ("sounding", "pitch", "last_event", "onset_now"):
            setattr(self, name, getattr(self, name)[src].copy())

    def _rule_mask(self, voice: int) -> np.ndarray:
        """(B, V) bool: pitches of ``voice`` the rules forbid now (out of the textbook range; parallel
        fifths/octaves or a crossing with a voice above, already sampled at this tick)."""
        V = self.voice_mask.shape[1]
        q = (np.arange(V) - PITCH_OFFSET)[None, :]
        pv = self.last_event[:, voice]
        forbid = np.repeat(~self.textbook[voice][None], len(pv), axis=0)
        if voice:
            above = self.pitch[:, voice - 1]
            forbid |= (above >= 0)[:, None] & (q > above[:, None])
        for u in range(voice):
            pu, cu = self.last_event[:, u], self.pitch[:, u]
            ic = np.abs(pu - pv) % 12
            perfect = (pu >= 0) & (cu >= 0) & (pv >= 0) & (cu != pu) & ((ic == 0) | (ic == 7))
            if not perfect.any():
                continue
            move = q - pv[:, None]
            same_way = (move != 0) & ((move > 0) == (cu > pu)[:, None])
            forbid |= perfect[:, None] & same_way & ((np.abs(cu[:, None] - q) % 12) == ic[:, None])
        forbid[:, :PITCH_OFFSET] = False
        return forbid

    def _track(self, tok: np.ndarray, voice: int) -> None:
        self.pitch[:, voice] = np.where(tok >= PITCH_OFFSET, tok - PITCH_OFFSET,
                                        np.where(tok == REST, -1, self.pitch[:, voice]))
        self.onset_now |= tok >= PITCH_OFFSET
        if voice == N_VOICES - 1:
            self.last_event[self.onset_now] = self.pitch[self.onset_now]
            self.onset_now[:] = False

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
            if self.rules:
                ruled = ok & ~self._rule_mask(voice)
                keep = ruled.any(axis=1)  # a row the rule would empty keeps its tokens
                changed = keep & (ruled != ok).any(axis=1)
                self.rule_masked += int(changed.sum())
                ok = np.where(keep[:, None], ruled, ok)
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
        self._track(tok, voice)
        return tok

    def _top_p(self, p: np.ndarray) -> int:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, self.top_p)) + 1]
        q = p[keep] / p[keep].sum()
        return int(keep[self.rng.choice(len(keep), p=q)])


def code_consistency(a: np.ndarray, b: np.ndarray, skip: int = 0, end: int | None = None) -> float:
    """Share of beats ``skip`` .. ``end`` whose codes are equal: the first ``skip`` beats (a padded
    pickup) and the beats from ``end`` on (silence padding the last bar) match for free."""
    a, b = np.asarray(a)[skip:end], np.asarray(b)[skip:end]
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
