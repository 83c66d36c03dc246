import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vqcpc.cli import main
from vqcpc.music.grid import HOLD, PITCH_OFFSET, REST, load_ranges, validate_tokens
from vqcpc.music.io import load
from vqcpc.models.sampling import Sampler, code_consistency, onset_novelty


def test_vary_json_writes_playable_files(tiny_model, tmp_path):
    out, _, _ = tiny_model
    r = CliRunner().invoke(main, ["vary", "bwv269", "-n", "2", "-o", str(tmp_path / "o"), "--model", str(out),
                                  "--json", "--candidates", "2", "--seed", "3"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert len(data["variations"]) == 2 and Path(data["plot"]).read_bytes()[:4] == b"\x89PNG"
    template = load("bwv269")
    ranges = load_ranges()
    for v in data["variations"]:
        assert 0 <= v["code_consistency"] <= 1 and 0 <= v["novelty"] <= 1
        for path in (v["midi"], v["musicxml"]):
            g = load(path)
            assert g.beats_per_bar == 3 and g.pickup_ticks == template.pickup_ticks
            validate_tokens(g.tokens)
            for voice, (lo, hi) in enumerate(ranges):
                p = g.tokens[:, voice][g.tokens[:, voice] >= PITCH_OFFSET] - PITCH_OFFSET
                assert p.size == 0 or (p.min() >= lo and p.max() <= hi)
        assert load(v["midi"]).ticks >= template.ticks - 3 * 4


def test_vary_never_overwrites_without_force(tiny_model, tmp_path):
    out, _, _ = tiny_model
    args = ["vary", "bwv269", "-n", "1", "-o", str(tmp_path), "--model", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = (tmp_path / "bwv269-var1.mid").read_bytes()
    r = CliRunner().invoke(main, args + ["--seed", "5"])
    assert r.exit_code == 2 and "already exists" in r.output
    assert (tmp_path / "bwv269-var1.mid").read_bytes() == before
    assert CliRunner().invoke(main, args + ["--seed", "5", "--force"]).exit_code == 0


def test_vary_user_codes_and_juxtapose(tiny_model, tmp_path):
    out, _, _ = tiny_model
    r = CliRunner().invoke(main, ["vary", "bwv269", "-n", "1", "-o", str(tmp_path / "a"), "--model", str(out),
                                  "--codes", "3 3 7", "--json"])
    assert r.exit_code == 0, r.output
    codes = json.loads(r.output)["codes"]
    assert codes[:6] == [3, 3, 7, 3, 3, 7]
    r = CliRunner().invoke(main, ["vary", "bwv269", "-n", "1", "-o", str(tmp_path / "b"), "--model", str(out),
                                  "--codes", "99"])
    assert r.exit_code == 2 and "0..15" in r.output
    r = CliRunner().invoke(main, ["vary", "bwv269", "-n", "1", "-o", str(tmp_path / "c"), "--model", str(out),
                                  "--codes-from", "bwv26.6"])
    assert r.exit_code == 2 and "meter" in r.output


def test_sampler_masks_impossible_tokens():
    mask = np.zeros((4, 130), bool)
    mask[:, [REST, HOLD]] = True
    mask[0, PITCH_OFFSET + 60: PITCH_OFFSET + 62] = True
    s = Sampler(mask, 3, temperature=1.0, top_p=1.0, seed=0)
    logits = np.zeros((3, 130))
    logits[:, HOLD] = 50.0  # the model wants HOLD, but nothing sounds yet
    logits[:, PITCH_OFFSET + 100] = 100.0  # out of range
    for _ in range(20):
        tok = s.sample(logits.copy(), 0)
        assert ((tok == REST) | (tok == PITCH_OFFSET + 60) | (tok == PITCH_OFFSET + 61) | (tok == HOLD)).all()
    s2 = Sampler(mask, 1, temperature=0.0, seed=0)
    assert s2.sample(logits[:1].copy(), 0)[0] != HOLD  # first token: HOLD impossible
    assert s2.sample(np.where(np.arange(130) == PITCH_OFFSET + 60, 9.0, 0.0)[None], 0)[0] == PITCH_OFFSET + 60
    assert s2.sample(logits[:1].copy(), 0)[0] == HOLD  # now a note sounds


def test_consistency_and_novelty_definitions():
    assert code_consistency([1, 2, 3, 4], [1, 0, 3, 0]) == 0.5
    assert code_consistency([9, 2, 3], [8, 2, 0], skip=1) == 0.5
    assert code_consistency([9, 2, 3, 7], [8, 2, 0, 7], skip=1, end=3) == 0.5  # the padding beat 3 is not counted
    t = np.array([[PITCH_OFFSET + 60, REST], [HOLD, REST]])
    v = np.array([[PITCH_OFFSET + 60, REST], [PITCH_OFFSET + 62, REST]])
    assert onset_novelty(t, t) == 0.0
    assert onset_novelty(v, t) == pytest.approx(0.5)  # {60@0} vs {60@0, 62@1}


def _prefer(*tokens):
    """Logits (1, 130) ranking ``tokens`` first to last, everything else far below."""
    x = np.full((1, 130), -50.0)
    for rank, t in enumerate(tokens):
        x[0, t] = 10.0 - rank
    return x


@pytest.mark.parametrize("rules", [True, False])
def test_sampler_parallels_rule(rules):
    """Soprano C5 -> D5 over bass C3: the model's first choice for the bass is D3 (parallel octaves)."""
    mask = np.ones((4, 130), bool)
    s = Sampler(mask, 1, temperature=0.0, seed=0, rules=rules)
    tick0 = [PITCH_OFFSET + 72, REST, REST, PITCH_OFFSET + 48]
    for v, t in enumerate(tick0):
        assert s.sample(_prefer(t), v)[0] == t
    assert s.sample(_prefer(PITCH_OFFSET + 74), 0)[0] == PITCH_OFFSET + 74
    s.sample(_prefer(REST), 1), s.sample(_prefer(REST), 2)
    bass = s.sample(_prefer(PITCH_OFFSET + 50, PITCH_OFFSET + 45), 3)[0]
    assert bass == (PITCH_OFFSET + 45 if rules else PITCH_OFFSET + 50)


@pytest.mark.parametrize("rules", [True, False])
def test_sampler_range_and_crossing_rules(rules):
    mask = np.ones((4, 130), bool)
    s = Sampler(mask, 1, temperature=0.0, seed=0, rules=rules)
    # the soprano wants A5 (above the textbook G5): ruled out, G5 next
    assert s.sample(_prefer(PITCH_OFFSET + 81, PITCH_OFFSET + 79), 0)[0] == PITCH_OFFSET + (79 if rules else 81)
    assert s.sample(_prefer(PITCH_OFFSET + 64), 1)[0] == PITCH_OFFSET + 64
    # the tenor wants G4, above the alto's E4: a crossing; D4 next
    assert s.sample(_prefer(PITCH_OFFSET + 67, PITCH_OFFSET + 62), 2)[0] == PITCH_OFFSET + (62 if rules else 67)
    assert s.sample(_prefer(PITCH_OFFSET + 48), 3)[0] == PITCH_OFFSET + 48
    assert (s.rule_masked > 0) == rules


def test_sampler_rule_lets_contrary_and_oblique_motion_through():
    mask = np.ones((4, 130), bool)
    s = Sampler(mask, 1, temperature=0.0, seed=0)
    for v, t in enumerate([72, None, None, 60]):
        s.sample(_prefer(REST if t is None else PITCH_OFFSET + t), v)
    s.sample(_prefer(PITCH_OFFSET + 74), 0), s.sample(_prefer(REST), 1), s.sample(_prefer(REST), 2)
    assert s.sample(_prefer(PITCH_OFFSET + 50), 3)[0] == PITCH_OFFSET + 50  # contrary motion into octaves
    s.sample(_prefer(PITCH_OFFSET + 76), 0), s.sample(_prefer(REST), 1), s.sample(_prefer(REST), 2)
    assert s.sample(_prefer(HOLD), 3)[0] == HOLD  # oblique: the bass holds


def test_sampler_rule_never_empties_a_row():
    """Where every allowed pitch would be a parallel, the rule steps aside rather than leave nothing."""
    mask = np.zeros((4, 130), bool)
    mask[:, [REST, HOLD]] = True
    mask[0, PITCH_OFFSET + 60: PITCH_OFFSET + 80] = True
    mask[3, PITCH_OFFSET + 62] = True  # the bass may only play D4 (or rest/hold)
    s = Sampler(mask, 1, temperature=0.0, seed=0)
    for v, t in enumerate([PITCH_OFFSET + 72, REST, REST, REST]):
        s.sample(_prefer(t), v)
    s.last_event[0] = [72, -1, -1, 60]  # as if the bass had sounded C4
    s.sample(_prefer(PITCH_OFFSET + 74), 0), s.sample(_prefer(REST), 1), s.sample(_prefer(REST), 2)
    mask[3, [REST, HOLD]] = False
    assert s.sample(_prefer(PITCH_OFFSET + 62), 3)[0] == PITCH_OFFSET + 62


def test_rules_lower_what_the_checks_count_in_real_variations(tiny_model):
    from vqcpc.export.runtime import Engine
    from vqcpc.models.generate import generate, template_codes
    from vqcpc.music.checks import crossings, out_of_range, parallels

    out, _, _ = tiny_model
    e = Engine(out)
    grid = load("bwv269")
    codes = template_codes(e, grid)
    free = generate(e, grid, codes, n=4, seed=1, rules=False)
    ruled = generate(e, grid, codes, n=4, seed=1)
    assert sum(parallels(v.grid.tokens) for v in ruled) <= sum(parallels(v.grid.tokens) for v in free) // 4
    assert sum(out_of_range(v.grid.tokens) for v in ruled) == 0 < sum(out_of_range(v.grid.tokens) for v in free)
    assert sum(crossings(v.grid.tokens) for v in ruled) < sum(crossings(v.grid.tokens) for v in free)


def test_usage_errors_are_one_line_and_zero_steps_are_refused(tmp_path):
    for args in (["vary", "bwv269", "-n", "0", "-o", str(tmp_path / "v")],
                 ["train", "encoder", "--out", str(tmp_path / "e"), "--epochs", "0"],
                 ["train", "decoder", "--model", str(tmp_path), "--steps-per-epoch", "0"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "e").exists()


def test_output_names_keep_a_chorale_s_whole_number():
    from vqcpc.models.commands import output_stem

    assert output_stem("bwv40.3") != output_stem("bwv40.6") == "bwv40.6"
    assert output_stem("songs/My Song.mid") == "My Song" and output_stem("a/b.musicxml") == "b"


def test_codes_and_codes_from_exclude_each_other(tiny_model, tmp_path):
    out, _, _ = tiny_model
    r = CliRunner().invoke(main, ["vary", "bwv269", "-n", "1", "-o", str(tmp_path), "--model", str(out),
                                  "--codes", "1 2", "--codes-from", "bwv269"])
    assert r.exit_code == 2 and "exclude each other" in r.output and not list(tmp_path.iterdir())


def test_codes_of_a_grader_encoder_alone():
    from vqcpc.models.registry import shipped_dir

    r = CliRunner().invoke(main, ["codes", "bwv269", "--model", str(shipped_dir() / "graders" / "uniform"), "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.output)["codes"]) == load("bwv269").beats
