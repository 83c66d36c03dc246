"""Beat search: streams copy a row's whole past, and searching beats raises code consistency."""
import dataclasses

import numpy as np
import pytest

from vqcpc.export.runtime import Engine
from vqcpc.models.generate import TorchBackend, decode, generate, padded_to_bars, template_codes
from vqcpc.models.sampling import Sampler, code_consistency
from vqcpc.music.io import load


@pytest.mark.parametrize("kind", ["onnx", "torch"])
def test_copy_rows_gives_a_row_the_past_of_another(tiny_model, kind):
    out, _, _ = tiny_model
    be = Engine(out) if kind == "onnx" else TorchBackend(out)
    rng = np.random.default_rng(0)
    s = be.new_stream(4, 3)
    for bar in range(3):  # past the ring's wrap (window 128 = 2 bars of 4/4)
        s.push_codes(rng.integers(0, be.n_codes, (3, 4)))
        for _ in range(64):
            logits = s.step(rng.integers(2, 130, 3))
    s.push_codes(np.tile(rng.integers(0, be.n_codes, (1, 4)), (3, 1)))
    s.copy_rows(np.array([2, 2, 0]))
    logits = np.asarray(s.step(np.array([60, 60, 60])))
    assert np.allclose(logits[0], logits[1], atol=1e-6)
    assert not np.allclose(logits[0], logits[2], atol=1e-3)  # row 2 kept row 0's different past


def test_sampler_copy_rows():
    s = Sampler(np.ones((4, 130), bool), 2, temperature=0.0)
    s.sample(np.where(np.arange(130) == 62, 1.0, 0.0)[None].repeat(2, 0) * np.array([[1], [0]]), 0)
    assert s.sounding[:, 0].tolist() == [True, False]
    s.copy_rows(np.array([0, 0]))
    assert s.sounding[:, 0].tolist() == [True, True] and s.pitch[:, 0].tolist() == [60, 60]


def test_beat_search_keeps_more_codes_on_the_shipped_model():
    from vqcpc.models.registry import resolve_model

    e = Engine(resolve_model("uniform"))
    grid = load("bwv269")
    codes = template_codes(e, grid)
    plain = generate(e, grid, codes, n=2, seed=0)
    searched = generate(e, grid, codes, n=2, seed=0, beat_search=4)
    assert len(searched) == 2
    mean = lambda vs: float(np.mean([v.code_consistency for v in vs]))  # noqa: E731
    assert mean(searched) > mean(plain) + 0.15 and mean(searched) > 0.85
    assert all(v.novelty > 0.5 for v in searched)
