"""The two models shipped in the package: complete, intact, and as good as their cards say."""
import json

import numpy as np
import pytest

from vqcpc.models.registry import SHIPPED, resolve_model, shipped_dir


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_is_complete_and_intact(name):
    from vqcpc.export.runtime import Engine
    from vqcpc.music.io import load

    d = resolve_model(name)
    for f in ("encoder.safetensors", "encoder.json", "decoder.safetensors", "decoder.json", "encoder.onnx",
              "code_memory.onnx", "decoder_step.onnx", "model.json", "README.md", "card.json"):
        assert (d / f).exists(), f
    e = Engine(d)  # verifies every sha256 of the manifest
    codes = e.encode(load("bwv269", fold=True).beat_tokens().astype(np.int64))
    assert len(codes) == 65 and codes.min() >= 0 and codes.max() < 16
    assert json.loads((d / "encoder.json").read_text())["config"]["negatives"] == name


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_encoder_meets_its_bar(name):
    m = json.loads((resolve_model(name) / "encoder.json").read_text())["metrics"]
    assert m["test"]["codes_used"] >= 12 and m["test"]["perplexity"] >= 8
    assert m["validation"]["cpc_accuracy"] > 2 * m["chance"]


def test_shipped_files_stay_small():
    total = sum(p.stat().st_size for p in shipped_dir().rglob("*") if p.is_file())
    assert total < 50 * 2 ** 20
