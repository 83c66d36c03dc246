"""The code-conditioned Transformer decoder with relative attention (DESIGN §4), in build order:
attention -> layers -> config-driven model with a full forward and a cached one-token step.

Positions are absolute and int64 everywhere; an empty cache slot has position -1 and is masked.
- token self-attention: token p sees token j when p - W < j <= p (distance p - j in [0, W));
- code self-attention and cross-attention are bar-causal: a position in bar n sees the codes of
  bars n - B + 1 .. n, B = W // tokens per bar; relative distances are in beats.
The full forward and the step call the same ``attend``; the step returns only its own new
keys/values, which the host writes into a ring slot.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from vqcpc.music.grid import N_VOICES, TICKS_PER_BEAT, TOKENS_PER_BEAT

from .config import JsonConfig

NEG = -1e9  # additive mask; finite so that a fully masked row cannot produce NaN
CODE_REL_OFFSET = 4  # code distances (in beats) start at -(beats per bar - 1) >= -3


@dataclass
class DecoderConfig(JsonConfig):
    vocab_size: int = 130
    codes: int = 16
    d_model: int = 192
    heads: int = 4
    layers: int = 3
    code_layers: int = 1
    d_ff: int = 768
    window: int = 512  # W: tokens of self-attention context (8 bars of 4/4)
    max_beats_per_bar: int = 4  # meters 3/4 and 4/4
    dropout: float = 0.1

    @property
    def code_rel(self) -> int:  # relative code distances -3 .. B*bpb - 1, B*bpb <= W / 16
        return CODE_REL_OFFSET + self.window // TOKENS_PER_BEAT

    @property
    def code_slots(self) -> int:  # cross-attention memory: at most B bars of codes = W / 16 beats
        return self.window // TOKENS_PER_BEAT


def bars_in_window(window: int, beats_per_bar: torch.Tensor) -> torch.Tensor:
    """B = W // tokens per bar (8 for 4/4, 10 for 3/4 at W = 512)."""
    return window // (beats_per_bar * TOKENS_PER_BEAT)


def attend(q, k, v, rel, rel_idx, allowed, k_new=None, v_new=None):
    """Scaled dot-product attention with relative position scores gathered at clipped distances.

    q: (B, H, Tq, D); k, v: (B, H, Tk, D); rel: (H, R, D) one embedding per distance;
    rel_idx: (B, Tq, Tk) int64 in [0, R); allowed: (B, Tq, Tk) bool. Returns (B, H, Tq, D).
    With ``k_new``/``v_new`` (B, H, Tn, D), the keys are ``k`` then ``k_new`` (Tk counts both in
    rel_idx and allowed): the one-token step attends to its ring and its own key this way, so
    the ring is never copied into a concatenation (its scores are, which are small).
    """
    B, H, Tq, D = q.shape
    scores = q @ k.transpose(-1, -2)  # (B, H, Tq, Tk)
    if k_new is not None:
        scores = torch.cat([scores, q @ k_new.transpose(-1, -2)], dim=-1)
    Tk = scores.shape[-1]
    rel_scores = torch.matmul(q, rel.transpose(-1, -2))  # (B, H, Tq, R)
    rel_scores = rel_scores.gather(-1, rel_idx.unsqueeze(1).expand(B, H, Tq, Tk))  # (B, H, Tq, Tk)
    scores = (scores + rel_scores) / math.sqrt(D)
    scores = scores + (~allowed).unsqueeze(1).to(scores.dtype) * NEG
    p = torch.softmax(scores, dim=-1)
    if k_new is None:
        return p @ v
    n_old = k.shape[2]
    return p[..., :n_old] @ v + p[..., n_old:] @ v_new


class Attention(nn.Module):
    def __init__(self, cfg: DecoderConfig, n_rel: int):
        super().__init__()
        self.h, self.dh = cfg.heads, cfg.d_model // cfg.heads
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.o = nn.Linear(cfg.d_model, cfg.d_model)
        self.rel = nn.Parameter(torch.randn(self.h, n_rel, self.dh) * 0.02)

    def split(self, x):  # (B, T, d) -> (B, H, T, dh)
        B, T, _ = x.shape
        return x.view(B, T, self.h, self.dh).transpose(1, 2)

    def keys_values(self, x):  # (B, T, d) -> k, v: (B, H, T, dh)
        k, v = self.kv(x).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def forward(self, x, k, v, rel_idx, allowed, k_new=None, v_new=None):
        out = attend(self.split(self.q(x)), k, v, self.rel, rel_idx, allowed, k_new, v_new)  # (B, H, T, dh)
        B, _, T, _ = out.shape
        return self.o(out.transpose(1, 2).reshape(B, T, -1))


class CodeLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.att = Attention(cfg, cfg.code_rel)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, rel_idx, allowed):
        h = self.n1(x)
        k, v = self.att.keys_values(h)
        x = x + self.drop(self.att(h, k, v, rel_idx, allowed))
        return x + self.drop(self.ff(self.n2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.n1, self.n2, self.n3 = (nn.LayerNorm(cfg.d_model) for _ in range(3))
        self.self_att = Attention(cfg, cfg.window)
        self.cross = Attention(cfg, cfg.code_rel)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, k, v, self_idx, self_ok, ck, cv, cross_idx, cross_ok, k_new=None, v_new=None):
        """x: (B, T, d); k, v: self-attention keys/values (B, H, S, dh) that include x's own, or
        the ring's, with x's own in k_new, v_new (the one-token step)."""
        x = x + self.drop(self.self_att(self.n1(x), k, v, self_idx, self_ok, k_new, v_new))
        x = x + self.drop(self.cross(self.n2(x), ck, cv, cross_idx, cross_ok))
        return x + self.drop(self.ff(self.n3(x)))


# --- masks and relative indices from absolute positions -------------------------------------------

def token_self_mask(qpos, kpos, window: int):
    """qpos: (B, Tq), kpos: (B, Tk) absolute token indices (-1 empty) -> rel idx, allowed."""
    d = qpos.unsqueeze(-1) - kpos.unsqueeze(-2)  # (B, Tq, Tk)
    allowed = (kpos.unsqueeze(-2) >= 0) & (d >= 0) & (d < window)
    return d.clamp(0, window - 1), allowed


def code_mask(q_beat, k_beat, beats_per_bar, window: int, n_rel: int):
    """Bar-causal window in beats. q_beat: (B, Tq), k_beat: (B, Tk) (-1 empty); bpb: (B,)."""
    bpb = beats_per_bar.view(-1, 1, 1)
    nbars = bars_in_window(window, beats_per_bar).view(-1, 1, 1)
    qbar = torch.div(q_beat, beats_per_bar.view(-1, 1), rounding_mode="floor").unsqueeze(-1)  # (B, Tq, 1)
    kbar = torch.div(k_beat, beats_per_bar.view(-1, 1), rounding_mode="floor").unsqueeze(-2)  # (B, 1, Tk)
    allowed = (k_beat.unsqueeze(-2) >= 0) & (kbar <= qbar) & (kbar > qbar - nbars)
    d = q_beat.unsqueeze(-1) - k_beat.unsqueeze(-2) + CODE_REL_OFFSET
    del bpb
    return d.clamp(0, n_rel - 1), allowed


class CodeDecoder(nn.Module):
    """Codes (one per beat) -> memory; tokens + memory -> logits for the next token."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.code_emb = nn.Embedding(cfg.codes, d)
        self.code_beat_emb = nn.Embedding(cfg.max_beats_per_bar, d)
        self.code_layers = nn.ModuleList(CodeLayer(cfg) for _ in range(cfg.code_layers))
        self.code_norm = nn.LayerNorm(d)
        self.tok_emb = nn.Embedding(cfg.vocab_size + 1, d)  # + START, the input before token 0
        self.voice_emb = nn.Embedding(N_VOICES, d)
        self.metric_emb = nn.Embedding(cfg.max_beats_per_bar * TICKS_PER_BEAT, d)  # tick within the bar
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.vocab_size)
        self.drop = nn.Dropout(cfg.dropout)

    @property
    def start_token(self) -> int:
        return self.cfg.vocab_size

    # -- the code side ------------------------------------------------------------------------------
    def memory(self, codes, code_beat, beats_per_bar):
        """codes, code_beat: (B, Nc) (beat -1 = empty slot); bpb: (B,) -> memory (B, Nc, d)."""
        x = self.code_emb(codes.clamp(min=0)) + self.code_beat_emb(
            torch.remainder(code_beat.clamp(min=0), beats_per_bar.view(-1, 1)))
        idx, ok = code_mask(code_beat, code_beat, beats_per_bar, self.cfg.window, self.cfg.code_rel)
        slot = torch.arange(ok.shape[-1], device=ok.device)
        ok = ok | (slot.unsqueeze(0) == slot.unsqueeze(1))  # empty slots see themselves (no NaN)
        for layer in self.code_layers:
            x = layer(x, idx, ok)
        return self.code_norm(x)

    def cross_kv(self, memory):
        """memory (B, Nc, d) -> per layer (k, v), each (B, H, Nc, dh): computed once per bar."""
        return [layer.cross.keys_values(memory) for layer in self.layers]

    # -- the token side -----------------------------------------------------------------------------
    def embed(self, tok_in, pos, beats_per_bar):
        """tok_in: (B, T) previous tokens (START before token 0); pos: (B, T) absolute token index."""
        tick = torch.div(pos, N_VOICES, rounding_mode="floor")
        tpb = (beats_per_bar * TICKS_PER_BEAT).view(-1, 1)
        x = self.tok_emb(tok_in) + self.voice_emb(torch.remainder(pos, N_VOICES)) + \
            self.metric_emb(torch.remainder(tick, tpb))
        return self.drop(x)

    def forward(self, tok_in, pos, codes, code_beat, beats_per_bar):
        """Full teacher-forced pass. tok_in, pos: (B, T); codes, code_beat: (B, Nc). -> (B, T, V)."""
        cross = self.cross_kv(self.memory(codes, code_beat, beats_per_bar))
        x = self.embed(tok_in, pos, beats_per_bar)
        self_idx, self_ok = token_self_mask(pos, pos, self.cfg.window)
        q_beat = torch.div(pos, TOKENS_PER_BEAT, rounding_mode="floor")
        c_idx, c_ok = code_mask(q_beat, code_beat, beats_per_bar, self.cfg.window, self.cfg.code_rel)
        for layer, (ck, cv) in zip(self.layers, cross):
            k, v = layer.self_att.keys_values(layer.n1(x))
            x = layer(x, k, v, self_idx, self_ok, ck, cv, c_idx, c_ok)
        return self.head(self.norm(x))

    def step(self, tok_in, pos, ring_k, ring_v, ring_pos, cross_k, cross_v, code_beat, beats_per_bar):
        """One token for each of B streams.

        tok_in, pos: (B,); ring_k, ring_v: (L, B, H, S, dh) past keys/values, or a sequence of L
        (B, H, S, dh) tensors (the ONNX graph takes one input a layer, so that no input is split);
        ring_pos: (B, S) (-1 empty); cross_k, cross_v: the same for (L, B, H, C, dh); code_beat:
        (B, C) (-1 empty). Returns logits (B, V) and this step's keys/values new_k, new_v:
        (L, B, H, 1, dh).
        """
        x = self.embed(tok_in.unsqueeze(1), pos.unsqueeze(1), beats_per_bar)  # (B, 1, d)
        kpos = torch.cat([ring_pos, pos.unsqueeze(1)], dim=1)  # (B, S + 1)
        self_idx, self_ok = token_self_mask(pos.unsqueeze(1), kpos, self.cfg.window)
        q_beat = torch.div(pos, TOKENS_PER_BEAT, rounding_mode="floor").unsqueeze(1)
        c_idx, c_ok = code_mask(q_beat, code_beat, beats_per_bar, self.cfg.window, self.cfg.code_rel)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            k1, v1 = layer.self_att.keys_values(layer.n1(x))  # (B, H, 1, dh)
            x = layer(x, ring_k[i], ring_v[i], self_idx, self_ok, cross_k[i], cross_v[i], c_idx, c_ok, k1, v1)
            new_k.append(k1)
            new_v.append(v1)
        return self.head(self.norm(x))[:, 0], torch.stack(new_k), torch.stack(new_v)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
