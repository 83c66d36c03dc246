"""Configuration dataclasses: saved as JSON beside the weights, the only way a model is rebuilt."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


class JsonConfig:
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class EncoderConfig(JsonConfig):
    vocab_size: int = 130
    d_embed: int = 32
    d_gru: int = 64  # per direction, over the 16 tokens of a beat
    d_latent: int = 16  # the low-dimensional space the codebook lives in
    codes: int = 16  # codebook size: 8, 16 or 32
    d_z: int = 64  # upscaled code vector that CPC scores
    d_context: int = 64  # context GRU over the z of the left context
    context_beats: int = 6
    future_beats: int = 6  # k = 1..6
    negatives: str = "uniform"  # "uniform" (whole training set) or "sameseq" (same chorale + transposition)
    n_negatives: int = 15  # chance = 1 / (n_negatives + 1)
    commitment: float = 0.25
    score_temperature: float = 0.0  # 0: the paper's bilinear z^T W_k c; > 0: its cosine form / tau
    dropout: float = 0.1


@dataclass
class EncoderTrainConfig(JsonConfig):
    epochs: int = 20
    steps_per_epoch: int = 200
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    vq_warmup_steps: int = 0  # first steps without quantization; then k-means codebook init on learned latents
    restart_every: int = 50  # steps between dead-code restarts
    restart_below: float = 0.2  # a code used by less than this share of the expected usage is dead
    val_windows: int = 2048
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = all cores
    data: str | None = None  # a folder of the user's own four-voice files instead of the Bach corpus


def save_json(path: Path, data: dict) -> None:
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


@dataclass
class Metrics(JsonConfig):
    values: dict = field(default_factory=dict)
