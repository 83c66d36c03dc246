"""Where models live: the two shipped inside the package, or any model directory (torch-free)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from vqcpc.music.errors import ModelError

SHIPPED = ("uniform", "sameseq")
DEFAULT_MODEL = "uniform"


def shipped_dir() -> Path:
    return Path(str(resources.files("vqcpc.models").joinpath("shipped")))


def resolve_model(name_or_dir: str) -> Path:
    """'uniform' / 'sameseq' (shipped) or a path to a model directory -> its path."""
    p = Path(name_or_dir)
    if p.is_dir():
        return p
    if name_or_dir in SHIPPED:
        d = shipped_dir() / name_or_dir
        if d.is_dir():
            return d
        raise ModelError(f"shipped model {name_or_dir!r} is missing from this installation ({d})")
    raise ModelError(f"{name_or_dir}: no such model directory, nor a shipped model ({', '.join(SHIPPED)})")


def encoder_seed_and_kind(model_dir: Path) -> tuple[int | None, str | None]:
    """The training seed and the negatives of a directory's encoder (from encoder.json)."""
    import json

    path = Path(model_dir) / "encoder.json"
    if not path.exists():
        raise ModelError(f"{model_dir}: no encoder.json")
    meta = json.loads(path.read_text())
    return meta.get("train", {}).get("seed"), meta.get("config", {}).get("negatives")


def grader_for(model_dir: Path) -> Path:
    """The shipped grader encoder of the same kind (negatives) as the model's, trained with
    another seed: ``shipped/graders/<negatives>``."""
    _, kind = encoder_seed_and_kind(model_dir)
    d = shipped_dir() / "graders" / str(kind)
    if not d.is_dir():
        raise ModelError(f"no shipped grader for {kind!r} encoders; pass --grader DIR (an exported encoder)")
    return d
