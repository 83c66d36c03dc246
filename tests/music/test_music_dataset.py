"""The dataset: 334 four-part chorales, a committed split by tune, voice ranges, augmentation."""
from __future__ import annotations

import json

import pytest

from vqcpc.music import load_ranges
from vqcpc.music.corpus import (SPLITS, augmented, corpus_split, load_corpus, load_split, tune_signature,
                                voice_ranges_of)
from vqcpc.music.grid import PITCH_OFFSET, legal_shifts


@pytest.fixture(scope="module")
def chorales():
    return {c.name: c for c in load_corpus()}


@pytest.fixture(scope="module")
def split():
    return load_split()


def test_corpus_has_334_four_part_chorales(chorales):
    assert len(chorales) == 334
    for c in chorales.values():
        assert c.grid.tokens.shape[1] == 4 and c.grid.ticks % 4 == 0
        assert c.grid.beats_per_bar in (3, 4, 6)  # one chorale, bwv123.6, is in 6/4
        assert 0 <= c.grid.pickup_ticks < c.grid.ticks_per_bar


def test_split_covers_the_corpus_once(chorales, split):
    assert set(split) == set(SPLITS)
    names = [n for s in SPLITS for n in split[s]]
    assert len(names) == len(set(names)) == 334  # no chorale in two splits, none twice in one
    assert set(names) == set(chorales)
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not set(split[a]) & set(split[b])


def test_split_is_about_80_10_10(split):
    n = sum(len(v) for v in split.values())
    for s, target in zip(SPLITS, (0.8, 0.1, 0.1)):
        assert abs(len(split[s]) / n - target) < 0.03, (s, len(split[s]))


def test_no_tune_in_two_splits(chorales, split):
    tunes = {s: {tune_signature(chorales[n].grid) for n in split[s]} for s in SPLITS}
    assert not tunes["train"] & tunes["validation"]
    assert not tunes["train"] & tunes["test"]
    assert not tunes["validation"] & tunes["test"]


def test_tune_signature_ignores_transposition(chorales):
    grid = chorales["bwv269"].grid
    assert tune_signature(grid.transposed(3)) == tune_signature(grid)
    assert len(tune_signature(grid)) == 10


def test_corpus_split_returns_the_listed_chorales(split):
    assert sorted(c.name for c in corpus_split("test")) == sorted(split["test"])


def test_ranges_are_those_of_the_training_chorales(chorales, split):
    train = [chorales[n] for n in split["train"]]
    assert load_ranges() == [tuple(r) for r in voice_ranges_of(train).values()]
    assert list(voice_ranges_of(train)) == ["soprano", "alto", "tenor", "bass"]


def test_augmentation_shifts_stay_in_range(chorales, split):
    ranges = load_ranges()
    train = [chorales[n] for n in split["train"]]
    pairs = augmented(train)
    assert pairs
    by_chorale: dict[str, list[int]] = {}
    for c, s in pairs:
        assert -6 <= s <= 5
        by_chorale.setdefault(c.name, []).append(s)
        for span, (lo, hi) in zip(c.grid.transposed(s).pitch_span(), ranges):
            assert span is None or lo <= span[0] <= span[1] <= hi, (c.name, s)
    for c in train:  # every legal shift is used; untransposed training chorales are always in range
        assert by_chorale[c.name] == legal_shifts(c.grid, ranges)
        assert 0 in by_chorale[c.name]
        for s in set(range(-6, 6)) - set(by_chorale[c.name]):
            spans = c.grid.transposed(s).pitch_span()
            assert any(sp and not (lo <= sp[0] and sp[1] <= hi) for sp, (lo, hi) in zip(spans, ranges))


def test_data_json_through_the_cli(cli):
    r = cli("data", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    for key in ("chorales", "beats", "tokens", "snapped", "dropped"):
        assert key in s
    assert set(s["chorales"]) >= {"train", "validation", "test"}
    assert sum(s["chorales"].values()) == 334
    assert s["total_chorales"] == 334
    assert s["tokens"] == s["beats"] * 16 > 0
    assert s["pitch_offset"] == PITCH_OFFSET
    assert s["voice_ranges"] == {v: list(r) for v, r in zip(("soprano", "alto", "tenor", "bass"), load_ranges())}


def test_data_text_through_the_cli(cli):
    r = cli("data")
    assert r.exit_code == 0, r.output
    assert "334 four-part" in r.stdout
