"""Weights in safetensors, configs in JSON, resumable training state without pickles."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vqcpc.music.errors import ModelError

RESUME_DIR = ".train"  # inside a model directory; never shipped


def save_weights(module: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    tmp = Path(path).with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)


def load_weights(module: torch.nn.Module, path: Path) -> None:
    if not Path(path).exists():
        raise ModelError(f"{path}: no weights file")
    module.load_state_dict(load_file(str(path)))


def save_resume(folder: Path, model, opt, info: dict, rng: np.random.Generator) -> None:
    """Model, optimizer moments and RNG states, so a killed run continues where it stopped."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    scalars = {}
    for pid, st in opt_state["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    tensors["rng.torch"] = torch.get_rng_state()
    info = dict(info, param_groups=opt_state["param_groups"], opt_scalars=scalars,
                numpy_rng=rng.bit_generator.state)
    tmp = folder / "resume.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(folder / "resume.safetensors")
    (folder / "resume.json.tmp").write_text(json.dumps(info, default=int))
    (folder / "resume.json.tmp").replace(folder / "resume.json")


def load_resume(folder: Path, model, opt, rng: np.random.Generator) -> dict:
    if not (folder / "resume.json").exists():
        raise ModelError(f"{folder.parent}: nothing to resume (no {RESUME_DIR}/resume.json)")
    info = json.loads((folder / "resume.json").read_text())
    t = load_file(str(folder / "resume.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    state: dict = {}
    for k, v in t.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for k, v in info["opt_scalars"].items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    torch.set_rng_state(t["rng.torch"])
    rng.bit_generator.state = info["numpy_rng"]
    return info


def append_csv(path: Path, row: dict, fields: list[str]) -> None:
    """One row of a training log (header written with the first row)."""
    new = not Path(path).exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in row.items()})
