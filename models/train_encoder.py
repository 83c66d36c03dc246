"""Training the VQ-CPC encoder: `vqcpc train encoder`."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from vqcpc.music.errors import InputError, ModelError
from vqcpc.music.grid import VOCAB_SIZE, vocabulary

from .checkpoint import RESUME_DIR, append_csv, load_resume, load_weights, save_resume, save_weights
from .config import EncoderConfig, EncoderTrainConfig, load_json, save_json
from .data import Sequences, WindowSampler, build_sequences, corpus_grids, data_fingerprint, user_grids
from .encoder import VQCPC, code_perplexity

log = logging.getLogger(__name__)

ENCODER_WEIGHTS = "encoder.safetensors"
ENCODER_JSON = "encoder.json"
ENCODER_LOG = "encoder_log.csv"
LOG_FIELDS = ["epoch", "step", "seconds", "train_loss", "train_nce", "train_vq", "train_acc", "val_loss",
              "val_acc", *[f"val_acc_k{k}" for k in range(1, 7)], "val_codes_used", "val_perplexity", "restarted"]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: this torch has no CUDA device; use --device cpu")
    return torch.device(name)


def load_data(data: str | None):
    """{'train': [...], 'validation': [...], 'test': [...]} of (name, Grid), and its fingerprint."""
    named = user_grids(data) if data else {s: corpus_grids(s) for s in ("train", "validation", "test")}
    return named, data_fingerprint(named)


def load_encoder(model_dir: str | Path, device="cpu") -> tuple[VQCPC, dict]:
    model_dir = Path(model_dir)
    if not (model_dir / ENCODER_JSON).exists():
        raise ModelError(f"{model_dir}: no {ENCODER_JSON}; not a trained model directory")
    meta = load_json(model_dir / ENCODER_JSON)
    model = VQCPC(EncoderConfig.from_dict(meta["config"]))
    load_weights(model, model_dir / ENCODER_WEIGHTS)
    return model.to(device).eval(), meta


@torch.no_grad()
def evaluate(model: VQCPC, windows, negatives, batch: int, device) -> dict:
    model.eval()
    losses, accs = [], []
    for i in range(0, len(windows), batch):
        w = torch.as_tensor(windows[i: i + batch], device=device)
        n = torch.as_tensor(negatives[i: i + batch], device=device)
        loss, acc, _ = model(w, n)
        losses.append(float(loss) * len(w))
        accs.append(acc.cpu().numpy() * len(w))
    acc_k = np.sum(accs, axis=0) / len(windows)
    return {"loss": sum(losses) / len(windows), "acc": float(acc_k.mean()), "acc_k": [float(a) for a in acc_k]}


@torch.no_grad()
def usage(model: VQCPC, seqs: Sequences, device) -> dict:
    model.eval()
    codes = torch.cat([model.codes(torch.as_tensor(seqs.beats[i: i + 4096], device=device))
                       for i in range(0, len(seqs.beats), 4096)])
    used, ppl = code_perplexity(codes.cpu(), model.cfg.codes)
    return {"codes_used": used, "perplexity": ppl}


def train_encoder(out: Path, cfg: EncoderConfig, tcfg: EncoderTrainConfig, *, device: str = "cpu",
                  resume: bool = False, force: bool = False, command: str = "", progress: bool = True) -> dict:
    out = Path(out)
    if (out / ENCODER_WEIGHTS).exists() and not (resume or force):
        raise InputError(f"{out}: already holds a trained encoder (use --resume to continue or --force to retrain)")
    if cfg.codes not in (8, 16, 32):
        raise InputError(f"--codes {cfg.codes}: expected 8, 16 or 32")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(tcfg.threads or os.cpu_count() or 1)
    torch.manual_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    dev = pick_device(device)
    cfg.vocab_size = VOCAB_SIZE
    named, fingerprint = load_data(tcfg.data)
    train = build_sequences(named["train"], augment=True)
    val = build_sequences(named["validation"], augment=False)
    sampler = WindowSampler(train, cfg.context_beats, cfg.future_beats, cfg.negatives, cfg.n_negatives)
    val_sampler = WindowSampler(val, cfg.context_beats, cfg.future_beats, cfg.negatives, cfg.n_negatives)
    vrng = np.random.default_rng(12345)  # the same validation windows and negatives every epoch
    val_w, val_n = val_sampler.sample(tcfg.val_windows, vrng)

    model = VQCPC(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    total_steps = tcfg.epochs * tcfg.steps_per_epoch
    warmup = min(200, total_steps // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 1 - s / total_steps))
    state = {"epoch": 0, "best_acc": -1.0, "seconds": 0.0, "best": None}
    resume_dir = out / RESUME_DIR
    if resume:
        state = load_resume(resume_dir, model, opt, rng)
        sched.last_epoch = state["epoch"] * tcfg.steps_per_epoch
        log.info("resumed after epoch %d", state["epoch"])
    elif (out / ENCODER_LOG).exists():
        (out / ENCODER_LOG).unlink()

    from tqdm import tqdm

    for epoch in range(state["epoch"] + 1, tcfg.epochs + 1):
        model.train()
        t0 = time.time()
        sums = np.zeros(4)
        restarted = 0
        bar = tqdm(range(tcfg.steps_per_epoch), desc=f"epoch {epoch}/{tcfg.epochs}", disable=not progress,
                   leave=False, dynamic_ncols=True)
        for step in bar:
            global_step = (epoch - 1) * tcfg.steps_per_epoch + step
            if global_step == tcfg.vq_warmup_steps and global_step > 0:
                model.vq.initialised.fill_(False)  # k-means on the next batch's learned latents
            w, n = sampler.sample(tcfg.batch_size, rng)
            loss, acc, info = model(torch.as_tensor(w, device=dev), torch.as_tensor(n, device=dev),
                                    bypass=global_step < tcfg.vq_warmup_steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if (global_step + 1) % tcfg.restart_every == 0 and global_step >= tcfg.vq_warmup_steps:
                restarted += model.vq.restart_dead(info["latent"], tcfg.restart_below)
            sums += [loss.item(), info["nce"].item(), info["vq"].item(), acc.mean().item()]
            bar.set_postfix(loss=f"{sums[0] / (step + 1):.3f}", acc=f"{sums[3] / (step + 1):.3f}")
        state["seconds"] += time.time() - t0
        v = evaluate(model, val_w, val_n, 256, dev)
        u = usage(model, val, dev)
        mean = sums / tcfg.steps_per_epoch
        row = {"epoch": epoch, "step": epoch * tcfg.steps_per_epoch, "seconds": round(state["seconds"], 1),
               "train_loss": mean[0], "train_nce": mean[1], "train_vq": mean[2], "train_acc": mean[3],
               "val_loss": v["loss"], "val_acc": v["acc"],
               **{f"val_acc_k{k + 1}": a for k, a in enumerate(v["acc_k"])},
               "val_codes_used": u["codes_used"], "val_perplexity": u["perplexity"], "restarted": restarted}
        append_csv(out / ENCODER_LOG, row, LOG_FIELDS)
        log.info("epoch %d: train loss %.3f acc %.3f | val acc %.3f, codes %d, perplexity %.1f, restarted %d",
                 epoch, mean[0], mean[3], v["acc"], u["codes_used"], u["perplexity"], restarted)
        if v["acc"] > state["best_acc"] and u["codes_used"] >= max(2, cfg.codes // 2):
            state["best_acc"] = v["acc"]
            state["best"] = {"epoch": epoch, **{k: row[k] for k in row if k.startswith("val_")}}
            save_weights(model, out / ENCODER_WEIGHTS)
        state["epoch"] = epoch
        save_resume(resume_dir, model, opt, state, rng)
    if not (out / ENCODER_WEIGHTS).exists():  # codebook never healthy: keep the last weights, say so
        save_weights(model, out / ENCODER_WEIGHTS)
        state["best"] = {"epoch": state["epoch"], "note": "codebook never used half its codes"}
    return _finish(out, cfg, tcfg, state, named, fingerprint, dev, command)


def _finish(out, cfg, tcfg, state, named, fingerprint, dev, command) -> dict:
    from vqcpc.music.corpus import split_hash

    model = VQCPC(cfg)
    load_weights(model, out / ENCODER_WEIGHTS)
    model = model.to(dev).eval()
    metrics = {"validation": {"cpc_accuracy": state["best"].get("val_acc"),
                              "cpc_accuracy_per_k": [state["best"].get(f"val_acc_k{k}") for k in range(1, 7)],
                              "codes_used": state["best"].get("val_codes_used"),
                              "perplexity": state["best"].get("val_perplexity")},
               "chance": 1.0 / (cfg.n_negatives + 1), "best_epoch": state["best"]["epoch"],
               "train_seconds": round(state["seconds"], 1)}
    if named["test"]:
        metrics["test"] = usage(model, build_sequences(named["test"], augment=False), dev)
    meta = {"format": 1, "kind": "vqcpc-encoder", "config": cfg.to_dict(), "train": tcfg.to_dict(),
            "vocabulary": vocabulary(), "data": tcfg.data or "music21 Bach chorales",
            "split_hash": None if tcfg.data else split_hash(), "data_fingerprint": fingerprint,
            "metrics": metrics, "command": command, "torch": torch.__version__}
    save_json(out / ENCODER_JSON, meta)
    return meta


def grid_codes(model: VQCPC, grid, device="cpu") -> np.ndarray:
    """The code of every beat of a grid (its pitches folded into the voice ranges first)."""
    from vqcpc.music.grid import fold_grid, load_ranges

    beats = fold_grid(grid, load_ranges()).beat_tokens().astype(np.int64)
    return model.codes(torch.as_tensor(beats, device=device)).cpu().numpy()
