"""`vqcpc evaluate` end to end on a tiny model and grader, and its aggregation on known rows."""
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vqcpc.cli import main
from vqcpc.export.runtime import Engine, EncoderEngine
from vqcpc.models.evaluate import over_seeds, summarize
from vqcpc.music.errors import ModelError

SYSTEMS = ("", " reranked", " beat search", " shuffled codes", " chance", " template")


def test_encoder_only_export_grades_but_cannot_generate(tiny_grader):
    m = json.loads((tiny_grader / "model.json").read_text())
    assert m["kind"] == "encoder" and m["seed"] == 1 and set(m["sha256"]) == {"encoder.onnx", "encoder.safetensors"}
    codes = EncoderEngine(tiny_grader).encode(np.full((5, 16), 62, np.int64))
    assert codes.shape == (5,) and codes.max() < m["codebook_size"]
    with pytest.raises(ModelError, match="encoder alone"):
        Engine(tiny_grader)


def test_evaluate_report_and_json(tiny_model, tiny_grader, tmp_path):
    model, _, _ = tiny_model
    out = tmp_path / "report"
    args = ["evaluate", "--model", str(model), "--grader", str(tiny_grader), "--split", "validation",
            "--limit", "2", "-n", "1", "--seeds", "2", "--candidates", "2", "--beat-search", "2", "--jobs", "1",
            "-o", str(out), "--json"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output.strip().splitlines()[-1])
    name = model.name
    assert set(data["systems"]) == {name + s for s in SYSTEMS}
    for s in data["systems"].values():
        for key in ("code_consistency", "novelty", "max_copy_beats", "parallels_per_100_beats",
                    "crossings_per_100_beats", "out_of_range_per_100_beats"):
            assert key in s, key
        assert 0 <= s["code_consistency"] <= 1 and 0 <= s["novelty"] <= 1
        assert s["spread"]["code_consistency"]["min"] <= s["code_consistency"] <= s["spread"]["code_consistency"]["max"]
    # the template re-encoded is its own codes under both graders: the measuring path is consistent
    t = data["systems"][name + " template"]
    assert t["code_consistency"] == 1.0 and t["code_consistency_other_grader"] == 1.0 and t["novelty"] == 0.0
    assert data["systems"][name]["variations"] == 2 * 1 * 2  # chorales x n x seeds
    assert data["systems"][name + " chance"]["novelty"] > 0.5  # another chorale, even with --limit
    assert "consistency_to_fed_codes" in data["systems"][name + " shuffled codes"]
    assert {"max_copy_beats", "parallels_per_100_beats", "out_of_range_per_100_beats"} <= set(data["bach"])
    assert data["bach"]["chorales"] == 2 and "points" not in data
    assert set(data["goals"][name]) and all("met" in g for g in data["goals"][name].values())
    text = (out / "quality.md").read_text()
    assert "| **Bach**" in text and f"| {name} reranked |" in text and "## Gaps and what would close them" in text
    missed = [k for k, g in data["goals"][name].items() if not g["met"]]
    assert ("Every goal is met" in text) == (not missed)
    for png in ("consistency_novelty.png", "musical_checks.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert len(json.loads((out / "results.json").read_text())["points"][name]) == 4
    # the same command again must not overwrite the report
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "already exists" in again.output


def test_evaluate_refuses_unpaired_graders(tiny_model, tiny_grader):
    model, _, _ = tiny_model
    r = CliRunner().invoke(main, ["evaluate", "--model", str(model), "--model", "uniform", "--grader", str(tiny_grader)])
    assert r.exit_code == 2 and "one per --model" in r.output


def test_evaluate_warns_when_the_grader_is_the_model_itself(tiny_model):
    model, _, _ = tiny_model
    r = CliRunner().invoke(main, ["evaluate", "--model", str(model), "--grader", str(model), "--limit", "1", "-n", "1",
                                  "--seeds", "1", "--jobs", "1"])
    assert r.exit_code == 0, r.output
    assert "not an independent grader" in r.output


def row(cons, novelty, copy, par, beats=50):
    return {"code_consistency": cons, "code_consistency_other_grader": cons / 2, "novelty": novelty,
            "template_run_beats": 1, "copy_beats": copy, "parallels": par, "crossings": 0, "out_of_range": 1,
            "onsets": 4 * beats, "beats": beats, "pitch_class_distance": 0.1}


def test_summaries_pool_rates_and_spread_over_seeds():
    s1 = summarize([row(0.5, 0.9, 3, 1), row(0.7, 0.8, 5, 3)])
    assert s1["code_consistency"] == pytest.approx(0.6) and s1["max_copy_beats"] == 5
    assert s1["parallels_per_100_beats"] == pytest.approx(4.0)  # 4 parallels in 100 beats
    assert s1["out_of_range_per_100_beats"] == pytest.approx(2.0) and s1["onset_density"] == pytest.approx(4.0)
    s2 = summarize([row(0.8, 0.9, 2, 0), row(0.8, 0.8, 2, 0)])
    both = over_seeds([s1, s2])
    assert both["code_consistency"] == pytest.approx(0.7)
    assert both["spread"]["code_consistency"]["std"] == pytest.approx(np.std([0.6, 0.8], ddof=1), abs=1e-4)
    assert both["max_copy_beats"] == 5 and both["variations"] == 4


def test_grader_ceiling_on_known_code_pairs():
    from vqcpc.models.evaluate import grader_ceiling

    same = np.array([0, 1, 2, 3] * 5)
    assert grader_ceiling(same, same) == {"ceiling": 1.0, "best_map": 1.0}
    assert grader_ceiling(same, (same + 1) % 4) == {"ceiling": 1.0, "best_map": 1.0}  # renamed codes agree fully
    # own code 0 splits evenly over two grader codes: a beat of code 0 matches half the time
    own, other = np.array([0, 0, 1, 1]), np.array([0, 1, 2, 2])
    assert grader_ceiling(own, other) == {"ceiling": 0.75, "best_map": 0.75}


def test_evaluate_refuses_a_report_path_that_is_not_a_file(tmp_path):
    (tmp_path / "quality.md").mkdir()
    r = CliRunner().invoke(main, ["evaluate", "--model", "uniform", "-o", str(tmp_path), "--force", "--limit", "1"])
    assert r.exit_code == 2 and "not a file" in r.output
