"""The VQ-CPC encoder (Hadjeres & Crestel 2020), in build order:
beat encoder -> vector quantizer -> upscaler to z -> context GRU -> bilinear CPC scores."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vqcpc.music.grid import N_VOICES, TOKENS_PER_BEAT

from .config import EncoderConfig


class BeatEncoder(nn.Module):
    """16 tokens of a beat -> a latent vector (before quantization)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_embed)
        self.pos = nn.Embedding(TOKENS_PER_BEAT, cfg.d_embed)  # voice and tick within the beat
        self.gru = nn.GRU(cfg.d_embed, cfg.d_gru, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * cfg.d_gru, cfg.d_latent)
        self.drop = nn.Dropout(cfg.dropout)
        self.register_buffer("positions", torch.arange(TOKENS_PER_BEAT), persistent=False)

    def forward(self, beats: torch.Tensor) -> torch.Tensor:
        # beats: (N, 16) token ids -> (N, d_latent)
        x = self.drop(self.tok(beats) + self.pos(self.positions))  # (N, 16, E)
        _, h = self.gru(x)  # h: (2, N, H)
        h = torch.cat([h[0], h[1]], dim=-1)  # (N, 2H)
        return self.out(h)


class VectorQuantizer(nn.Module):
    """Nearest-code quantization with a straight-through gradient, codebook + commitment losses,
    codebook initialised from data and dead codes restarted on encoder outputs."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(cfg.codes, cfg.d_latent) * 0.1)
        self.commitment = cfg.commitment
        self.register_buffer("usage", torch.zeros(cfg.codes))  # running count since the last restart
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def codes(self, latent: torch.Tensor) -> torch.Tensor:
        # latent: (N, D) -> (N,) index of the nearest code; both on the unit sphere, so the
        # nearest code is the one of highest cosine similarity (this keeps the codebook used)
        return (F.normalize(latent, dim=-1) @ F.normalize(self.codebook, dim=-1).t()).argmax(-1)

    def forward(self, latent: torch.Tensor, bypass: bool = False):
        latent = F.normalize(latent, dim=-1)
        if bypass:  # warm-up: the continuous latent goes on, the codebook waits for learned features
            return latent, self.codes(latent), latent.new_zeros(())
        if self.training and not bool(self.initialised):
            self._init_from(latent.detach())
        idx = self.codes(latent)
        q = F.normalize(self.codebook, dim=-1)[idx]  # (N, D)
        loss = F.mse_loss(q, latent.detach()) + self.commitment * F.mse_loss(latent, q.detach())
        if self.training:
            self.usage += torch.bincount(idx, minlength=self.usage.numel()).float()
        q = latent + (q - latent).detach()  # straight-through
        return q, idx, loss

    @torch.no_grad()
    def _init_from(self, latent: torch.Tensor, iters: int = 10) -> None:
        """Spherical k-means on the first batch's latents: codes that already split the data."""
        K = self.codebook.shape[0]
        if latent.shape[0] < K:
            return
        centers = latent[torch.randperm(latent.shape[0], device=latent.device)[:K]].clone()
        for _ in range(iters):
            assign = (latent @ F.normalize(centers, dim=-1).t()).argmax(-1)
            for k in range(K):
                members = latent[assign == k]
                if len(members):
                    centers[k] = members.mean(0)
        self.codebook.copy_(F.normalize(centers, dim=-1))
        self.initialised.fill_(True)

    @torch.no_grad()
    def restart_dead(self, latent: torch.Tensor, below: float) -> int:
        """Move codes used less than ``below`` x their fair share to random encoder outputs."""
        total = self.usage.sum()
        if total == 0:
            return 0
        dead = (self.usage / total) < below / self.usage.numel()
        n = int(dead.sum())
        if n:
            pick = torch.randint(0, latent.shape[0], (n,), device=latent.device)
            noise = 0.01 * latent.std() * torch.randn(n, latent.shape[1], device=latent.device)
            self.codebook[dead] = latent[pick] + noise
        self.usage.zero_()
        return n


class VQCPC(nn.Module):
    """Beats -> codes, trained by InfoNCE on future beats given a context of past codes' z."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.beat = BeatEncoder(cfg)
        self.vq = VectorQuantizer(cfg)
        self.up = nn.Sequential(nn.Linear(cfg.d_latent, cfg.d_z), nn.GELU(), nn.Linear(cfg.d_z, cfg.d_z))
        self.context = nn.GRU(cfg.d_z, cfg.d_context, batch_first=True)
        self.score = nn.ModuleList(nn.Linear(cfg.d_context, cfg.d_z, bias=False) for _ in range(cfg.future_beats))

    def encode(self, beats: torch.Tensor, bypass: bool = False):
        """beats: (N, 16) -> z (N, d_z), codes (N,), vq loss, latent (N, d_latent)."""
        latent = self.beat(beats)
        q, idx, vq_loss = self.vq(latent, bypass)
        return self.up(q), idx, vq_loss, latent

    @torch.no_grad()
    def codes(self, beats: torch.Tensor) -> torch.Tensor:
        """(N, 16) token ids -> (N,) codes (eval mode: no usage counting, no dropout)."""
        return self.vq.codes(self.beat(beats))

    def forward(self, windows: torch.Tensor, negatives: torch.Tensor, bypass: bool = False):
        """windows: (B, C + F, 16) beats, C context then F future; negatives: (B, M, 16).

        Returns (loss, accuracy per k (F,), info dict). Each window's M negatives serve every k.
        ``bypass``: skip quantization (the warm-up of EncoderTrainConfig.vq_warmup_steps).
        """
        B, L, _ = windows.shape
        C, Fut = self.cfg.context_beats, self.cfg.future_beats
        M = negatives.shape[1]
        beats = torch.cat([windows.reshape(B * L, -1), negatives.reshape(B * M, -1)])  # (B*(L+M), 16)
        z, idx, vq_loss, latent = self.encode(beats, bypass)
        zw = z[: B * L].reshape(B, L, -1)  # (B, L, Dz)
        zn = z[B * L:].reshape(B, M, -1)  # (B, M, Dz)
        _, h = self.context(zw[:, :C])
        c = h[-1]  # (B, Dc)
        losses, accs = [], []
        for k in range(Fut):
            pred = self.score[k](c)  # (B, Dz)
            cand = torch.cat([zw[:, C + k: C + k + 1], zn], dim=1)  # (B, 1 + M, Dz); positive first
            if self.cfg.score_temperature:  # cosine form: both sides normalized, divided by tau
                cand, pred = F.normalize(cand, dim=-1), F.normalize(pred, dim=-1) / self.cfg.score_temperature
            logits = torch.einsum("bmd,bd->bm", cand, pred)  # (B, 1 + M)
            target = torch.zeros(B, dtype=torch.long, device=logits.device)
            losses.append(F.cross_entropy(logits, target))
            accs.append(tie_fair_accuracy(logits))
        nce = torch.stack(losses).mean()
        return nce + vq_loss, torch.stack(accs), {"nce": nce.detach(), "vq": vq_loss.detach(),
                                                  "latent": latent.detach(), "codes": idx.detach()}


def tie_fair_accuracy(logits: torch.Tensor) -> torch.Tensor:
    """Share of rows whose column 0 (the positive) scores highest, a tie counting 1/(tied):
    a negative with the positive's code scores exactly the same, and must not count as a win."""
    best = logits.max(-1).values
    top = logits >= best.unsqueeze(-1)  # (B, 1 + M)
    return (top[:, 0].float() / top.sum(-1).float()).mean()


def code_perplexity(codes: torch.Tensor, n_codes: int) -> tuple[int, float]:
    """(codes used, perplexity exp(H)) of a sequence of code indices."""
    counts = torch.bincount(codes.flatten(), minlength=n_codes).double()
    p = counts / counts.sum()
    nz = p[p > 0]
    return int((counts > 0).sum()), float(torch.exp(-(nz * nz.log()).sum()))


assert N_VOICES * 4 == TOKENS_PER_BEAT
