"""Incremental decoding in torch, bar by bar, with fixed-size ring caches (DESIGN §4).

The host keeps W - 1 past keys/values per layer in a ring (slot = position mod (W - 1)) and the
cross-attention keys/values of the last bars' codes (slot = beat mod code_slots); a new bar's
codes are turned into keys/values once. The ONNX runtime mirrors this class with numpy.
"""
from __future__ import annotations

import torch

from vqcpc.music.grid import N_VOICES, TOKENS_PER_BEAT

from .decoder import CodeDecoder, bars_in_window


def code_context_bars(model: CodeDecoder, beats_per_bar: int) -> int:
    """Bars of codes that determine the memory of the newest bar."""
    nbars = int(bars_in_window(model.cfg.window, torch.tensor(beats_per_bar)))
    return model.cfg.code_layers * (nbars - 1) + 1


class TorchStream:
    """B parallel streams decoded one token at a time; equal to the full forward pass."""

    def __init__(self, model: CodeDecoder, beats_per_bar: int, batch: int = 1, dtype=None, device=None):
        p = next(model.parameters())
        dtype, device = dtype or p.dtype, device or p.device
        cfg = model.cfg
        self.model, self.bpb, self.B = model, beats_per_bar, batch
        L, H, dh = cfg.layers, cfg.heads, cfg.d_model // cfg.heads
        self.S, self.C = cfg.window - 1, cfg.code_slots
        self.ring_k = torch.zeros(L, batch, H, self.S, dh, dtype=dtype, device=device)
        self.ring_v = torch.zeros_like(self.ring_k)
        self.ring_pos = torch.full((batch, self.S), -1, dtype=torch.long, device=device)
        self.cross_k = torch.zeros(L, batch, H, self.C, dh, dtype=dtype, device=device)
        self.cross_v = torch.zeros_like(self.cross_k)
        self.code_beat = torch.full((batch, self.C), -1, dtype=torch.long, device=device)
        self.bpb_t = torch.full((batch,), beats_per_bar, dtype=torch.long, device=device)
        self.codes: list[torch.Tensor] = []  # the last bars' codes, each (B, bpb)
        self.bars = 0  # bars of codes pushed so far
        self.pos = 0  # absolute index of the next token
        self.prev = torch.full((batch,), model.start_token, dtype=torch.long, device=device)
        self.context_bars = code_context_bars(model, beats_per_bar)

    @torch.no_grad()
    def push_codes(self, bar_codes: torch.Tensor) -> None:
        """The codes of the next bar, (B, bpb): computes its cross-attention keys/values once."""
        m = self.bars
        self.codes = (self.codes + [bar_codes.to(self.code_beat.device).long()])[-self.context_bars:]
        self.bars += 1
        first = m + 1 - len(self.codes)
        codes = torch.cat(self.codes, dim=1)  # (B, bars * bpb)
        beats = torch.arange(first * self.bpb, (m + 1) * self.bpb, device=codes.device).expand(self.B, -1)
        mem = self.model.memory(codes, beats, self.bpb_t)[:, -self.bpb:]  # (B, bpb, d)
        slots = torch.remainder(beats[0, -self.bpb:], self.C)
        for i, (k, v) in enumerate(self.model.cross_kv(mem)):
            self.cross_k[i][:, :, slots] = k
            self.cross_v[i][:, :, slots] = v
        self.code_beat[:, slots] = beats[:, -self.bpb:]

    @torch.no_grad()
    def step(self, tok_in: torch.Tensor | None = None) -> torch.Tensor:
        """Feed the previous token (default: the last fed/sampled one) -> logits (B, V) for pos."""
        if tok_in is not None:
            self.prev = tok_in.long()
        need_bar = self.pos // (TOKENS_PER_BEAT * self.bpb)
        assert need_bar < self.bars, "the codes of this bar have not been pushed"
        pos = torch.full((self.B,), self.pos, dtype=torch.long, device=self.ring_pos.device)
        logits, k1, v1 = self.model.step(self.prev, pos, self.ring_k, self.ring_v, self.ring_pos,
                                         self.cross_k, self.cross_v, self.code_beat, self.bpb_t)
        slot = self.pos % self.S
        self.ring_k[:, :, :, slot] = k1[:, :, :, 0]
        self.ring_v[:, :, :, slot] = v1[:, :, :, 0]
        self.ring_pos[:, slot] = self.pos
        self.pos += 1
        return logits

    @torch.no_grad()
    def copy_rows(self, src) -> None:
        """Row r takes row src[r]'s whole state (its past): a beat search keeps the chosen beat."""
        src = torch.as_tensor(src, device=self.ring_pos.device)
        for name in ("ring_k", "ring_v", "cross_k", "cross_v"):
            t = getattr(self, name)
            t.copy_(t[:, src])
        for name in ("ring_pos", "code_beat", "prev"):
            setattr(self, name, getattr(self, name)[src].clone())
        self.codes = [c[src] for c in self.codes]

    def voice(self) -> int:
        return self.pos % N_VOICES
