"""Training the decoder on the frozen encoder's codes: `vqcpc train decoder`."""
from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vqcpc.music.errors import InputError, ModelError
from vqcpc.music.grid import PITCH_OFFSET, VOCAB_SIZE, load_ranges, voice_token_mask

from .checkpoint import RESUME_DIR, append_csv, load_resume, load_weights, save_resume, save_weights
from .config import JsonConfig, load_json, save_json
from .data import Sequences, build_sequences
from .decoder import NEG, CodeDecoder, DecoderConfig, count_parameters
from .train_encoder import ENCODER_JSON, load_data, load_encoder, pick_device

log = logging.getLogger(__name__)

DECODER_WEIGHTS = "decoder.safetensors"
DECODER_JSON = "decoder.json"
DECODER_LOG = "decoder_log.csv"
LOG_FIELDS = ["epoch", "step", "seconds", "tokens", "train_loss", "val_loss", "val_acc", "val_onset_acc"]
METERS = (3, 4)


@dataclass
class DecoderTrainConfig(JsonConfig):
    epochs: int = 20
    steps_per_epoch: int = 200
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 300
    seed: int = 0
    threads: int = 0
    data: str | None = None


@dataclass
class CodedSequences:
    """Flat tokens, codes and meter of every (chorale, transposition)."""

    tokens: list[np.ndarray]  # (T,) each
    codes: list[np.ndarray]  # (beats,) each
    beats_per_bar: list[int]
    names: list[str]


@torch.no_grad()
def code_sequences(encoder, seqs: Sequences, cache: Path | None) -> CodedSequences:
    """The frozen encoder's codes of every sequence, computed once and cached on disk."""
    h = hashlib.sha256(seqs.beats.tobytes())
    h.update(next(iter(encoder.state_dict().values())).numpy().tobytes())
    path = cache / f"codes-{h.hexdigest()[:16]}.npy" if cache else None
    if path is not None and path.exists():
        all_codes = np.load(path)
    else:
        all_codes = np.concatenate([encoder.codes(torch.as_tensor(seqs.beats[i: i + 8192])).numpy()
                                    for i in range(0, len(seqs.beats), 8192)])
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, all_codes)
    out = CodedSequences([], [], [], [])
    for s, g in enumerate(seqs.grids):
        if g.beats_per_bar not in METERS:
            continue
        out.tokens.append(g.tokens[: g.beats * 4].reshape(-1).astype(np.int64))
        out.codes.append(all_codes[seqs.starts[s]: seqs.starts[s] + seqs.lengths[s]].astype(np.int64))
        out.beats_per_bar.append(g.beats_per_bar)
        out.names.append(seqs.names[s])
    return out


def make_batch(data: CodedSequences, picks, window_tokens: int, start_token: int, rng):
    """Windows of at most ``window_tokens`` tokens starting on a bar line, padded; every code of
    each sequence goes with it (positions are absolute, so the masks pick the right ones)."""
    rows = []
    for s in picks:
        toks, bpb = data.tokens[s], data.beats_per_bar[s]
        bar = 16 * bpb
        T = len(toks)
        start = 0
        if T > window_tokens:
            start = int(rng.integers(0, (T - window_tokens) // bar + 1)) * bar
        end = min(T, start + window_tokens)
        prev = np.concatenate([[start_token] if start == 0 else toks[start - 1: start], toks[start: end - 1]])
        rows.append((prev, np.arange(start, end), toks[start:end], data.codes[s], bpb))
    T = max(len(r[0]) for r in rows)
    N = max(len(r[3]) for r in rows)
    B = len(rows)
    tok_in = np.zeros((B, T), np.int64)
    pos = np.full((B, T), -1, np.int64)
    target = np.full((B, T), -100, np.int64)
    codes = np.zeros((B, N), np.int64)
    beats = np.full((B, N), -1, np.int64)
    for i, (p, ps, tg, c, _) in enumerate(rows):
        tok_in[i, : len(p)], pos[i, : len(ps)], target[i, : len(tg)] = p, ps, tg
        codes[i, : len(c)], beats[i, : len(c)] = c, np.arange(len(c))
    bpb = np.array([r[4] for r in rows])
    return [torch.as_tensor(x) for x in (tok_in, pos, target, codes, beats, bpb)]


def masked_logits(logits, pos, voice_mask):
    """Tokens impossible for the position's voice get NEG (they are never predicted)."""
    allowed = voice_mask[torch.remainder(pos, 4)]  # (B, T, V)
    return logits + (~allowed).to(logits.dtype) * NEG


@torch.no_grad()
def validate(model: CodeDecoder, data: CodedSequences, voice_mask, dev) -> dict:
    model.eval()
    tot_loss = tot = correct = onset_n = onset_ok = 0
    for s in range(len(data.tokens)):
        tok_in, pos, target, codes, beats, bpb = (x.to(dev) for x in make_batch(data, [s], 10 ** 9, model.start_token, None))
        logits = masked_logits(model(tok_in, pos, codes, beats, bpb), pos, voice_mask)
        tot_loss += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum"))
        pred = logits.argmax(-1)
        tot += target.numel()
        correct += int((pred == target).sum())
        onset = target >= PITCH_OFFSET
        onset_n += int(onset.sum())
        onset_ok += int((pred[onset] == target[onset]).sum())
    return {"loss": tot_loss / tot, "acc": correct / tot, "onset_acc": onset_ok / max(1, onset_n)}


def load_decoder(model_dir: str | Path, device="cpu") -> tuple[CodeDecoder, dict]:
    model_dir = Path(model_dir)
    if not (model_dir / DECODER_JSON).exists():
        raise ModelError(f"{model_dir}: no {DECODER_JSON}; train it with `vqcpc train decoder --model {model_dir}`")
    meta = load_json(model_dir / DECODER_JSON)
    model = CodeDecoder(DecoderConfig.from_dict(meta["config"]))
    load_weights(model, model_dir / DECODER_WEIGHTS)
    return model.to(device).eval(), meta


def train_decoder(model_dir: Path, cfg: DecoderConfig, tcfg: DecoderTrainConfig, *, device="cpu", resume=False,
                  force=False, command="", progress=True) -> dict:
    model_dir = Path(model_dir)
    if not (model_dir / ENCODER_JSON).exists():
        raise InputError(f"{model_dir}: no trained encoder here; run `vqcpc train encoder --out {model_dir}` first")
    if (model_dir / DECODER_WEIGHTS).exists() and not (resume or force):
        raise InputError(f"{model_dir}: already holds a trained decoder (use --resume or --force)")
    torch.set_num_threads(tcfg.threads or os.cpu_count() or 1)
    torch.manual_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    dev = pick_device(device)
    encoder, enc_meta = load_encoder(model_dir, "cpu")
    cfg.vocab_size, cfg.codes = VOCAB_SIZE, enc_meta["config"]["codes"]
    named, fingerprint = load_data(tcfg.data)
    cache = model_dir / RESUME_DIR
    train = code_sequences(encoder, build_sequences(named["train"], augment=True), cache)
    val = code_sequences(encoder, build_sequences(named["validation"], augment=False), cache)
    voice_mask = torch.as_tensor(voice_token_mask(load_ranges()), device=dev)
    model = CodeDecoder(cfg).to(dev)
    log.info("decoder: %d parameters; %d training sequences, %d validation", count_parameters(model),
             len(train.tokens), len(val.tokens))
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay, betas=(0.9, 0.98))
    total = tcfg.epochs * tcfg.steps_per_epoch

    def lr_at(s):
        return min(1.0, (s + 1) / tcfg.warmup) * max(0.05, 0.5 * (1 + np.cos(np.pi * min(1.0, s / total))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    state = {"epoch": 0, "best_loss": float("inf"), "seconds": 0.0, "tokens": 0, "best": None}
    if resume:
        state = load_resume(model_dir / RESUME_DIR, model, opt, rng)
        sched.last_epoch = state["epoch"] * tcfg.steps_per_epoch
    elif (model_dir / DECODER_LOG).exists():
        (model_dir / DECODER_LOG).unlink()
    from tqdm import tqdm

    window_tokens = 2 * cfg.window
    for epoch in range(state["epoch"] + 1, tcfg.epochs + 1):
        model.train()
        t0 = time.time()
        loss_sum = 0.0
        bar = tqdm(range(tcfg.steps_per_epoch), desc=f"epoch {epoch}/{tcfg.epochs}", disable=not progress, leave=False)
        for step in bar:
            picks = rng.integers(0, len(train.tokens), tcfg.batch_size)
            tok_in, pos, target, codes, beats, bpb = (x.to(dev) for x in make_batch(train, picks, window_tokens, model.start_token, rng))
            logits = masked_logits(model(tok_in, pos, codes, beats, bpb), pos, voice_mask)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss_sum += loss.item()
            state["tokens"] += int((target >= 0).sum())
            bar.set_postfix(loss=f"{loss_sum / (step + 1):.3f}")
        state["seconds"] += time.time() - t0
        v = validate(model, val, voice_mask, dev)
        row = {"epoch": epoch, "step": epoch * tcfg.steps_per_epoch, "seconds": round(state["seconds"], 1),
               "tokens": state["tokens"], "train_loss": loss_sum / tcfg.steps_per_epoch, "val_loss": v["loss"],
               "val_acc": v["acc"], "val_onset_acc": v["onset_acc"]}
        append_csv(model_dir / DECODER_LOG, row, LOG_FIELDS)
        log.info("epoch %d: train loss %.3f | val loss %.3f, acc %.3f, onset acc %.3f (%.0f tokens/s)", epoch,
                 row["train_loss"], v["loss"], v["acc"], v["onset_acc"], state["tokens"] / max(1e-9, state["seconds"]))
        if v["loss"] < state["best_loss"]:
            state["best_loss"] = v["loss"]
            state["best"] = row
            save_weights(model, model_dir / DECODER_WEIGHTS)
        state["epoch"] = epoch
        save_resume(model_dir / RESUME_DIR, model, opt, state, rng)
    best = state["best"]
    meta = {"format": 1, "kind": "vqcpc-decoder", "config": cfg.to_dict(), "train": tcfg.to_dict(),
            "parameters": count_parameters(model), "encoder": enc_meta["config"]["negatives"],
            "data_fingerprint": fingerprint, "command": command, "torch": torch.__version__,
            "metrics": {"validation": {"loss": best["val_loss"], "token_accuracy": best["val_acc"],
                                       "onset_accuracy": best["val_onset_acc"]},
                        "best_epoch": best["epoch"], "train_seconds": round(state["seconds"], 1),
                        "train_tokens": state["tokens"]}}
    save_json(model_dir / DECODER_JSON, meta)
    return meta
