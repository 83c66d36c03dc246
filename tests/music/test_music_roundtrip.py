"""Grids survive being written and read back: MIDI and MusicXML (random grids), MIDI (every chorale)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vqcpc.music import HOLD, REST, Grid, load_ranges, pitch_token
from vqcpc.music.grid import notes_of_voice, validate_tokens
from vqcpc.music.midi import read_midi, write_midi
from vqcpc.music.score import read_musicxml, write_musicxml

RANGES = load_ranges()
KEYS = [None, "C major", "G major", "F major", "D minor", "F# major", "C# major", "G- major", "C- major",
        "E- minor", "G# minor", "B- major"]  # music21 names, as grids read from scores carry


@st.composite
def grids(draw, max_bars: int = 3):
    """Valid grids: HOLD only after a note or HOLD, whole beats, meter 3/4 or 4/4, a pickup of
    whole beats padded with REST, pitches inside each voice's range."""
    bpb = draw(st.sampled_from([3, 4]))
    pickup = 4 * draw(st.integers(0, bpb - 1))
    n = 4 * draw(st.integers(1, max_bars * bpb))  # ticks after the pickup
    cols = []
    for lo, hi in RANGES:
        col: list[int] = []
        while len(col) < n:
            if draw(st.integers(0, 3)) == 0:
                col += [REST] * draw(st.integers(1, 6))
            else:
                col += [pitch_token(draw(st.integers(lo, hi)))] + [HOLD] * (draw(st.integers(1, 10)) - 1)
        cols.append([REST] * pickup + col[:n])
    key = draw(st.sampled_from(KEYS))
    return Grid(np.array(cols, dtype=np.int16).T, beats_per_bar=bpb, pickup_ticks=pickup, key=key)


def last_note_end(grid: Grid) -> int:
    return max((e for v in range(4) for _, e, _ in notes_of_voice(grid.tokens[:, v])), default=0)


def assert_same_grid(a: Grid, b: Grid) -> None:
    assert (b.beats_per_bar, b.pickup_ticks) == (a.beats_per_bar, a.pickup_ticks), b.report
    assert b.tokens.shape == a.tokens.shape, (a.tokens.shape, b.tokens.shape, b.report)
    assert np.array_equal(b.tokens, a.tokens), (a.tokens.T, b.tokens.T, b.report)


def test_generated_grids_are_valid():
    @settings(max_examples=50, deadline=None)
    @given(grids())
    def check(grid):
        validate_tokens(grid.tokens)
        assert grid.ticks % 4 == 0 and grid.pickup_ticks % 4 == 0 and grid.pickup_ticks < grid.ticks_per_bar
        assert (grid.tokens[: grid.pickup_ticks] == REST).all()
        for span, (lo, hi) in zip(grid.pitch_span(), RANGES):
            assert span is None or lo <= span[0] <= span[1] <= hi

    check()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grid=grids())
def test_midi_round_trip(tmp_path, grid):
    # What a MIDI file cannot say: a silent voice (voices come from four channels with notes, else
    # from pitch order) and rests more than a bar after the last note (the end of a file is kept
    # up to one bar after its last note)
    assume(all(notes_of_voice(grid.tokens[:, v]) for v in range(4)))
    assume(grid.ticks - last_note_end(grid) <= grid.ticks_per_bar)
    path = write_midi(grid, tmp_path / "grid.mid")
    back = read_midi(path)
    assert_same_grid(grid, back)
    assert back.report.snapped == back.report.dropped == back.report.chords == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grid=grids())
def test_musicxml_round_trip(tmp_path, grid):
    # A score whose only bar is incomplete is read as a pickup bar: at least one full bar
    assume(grid.ticks >= grid.ticks_per_bar)
    path = write_musicxml(grid, tmp_path / "grid.musicxml")
    back = read_musicxml(path)
    assert_same_grid(grid, back)
    if grid.key:
        assert back.key == grid.key


def _chord_grid(beats: int, bpb: int, pickup_ticks: int = 0) -> Grid:
    cols = []
    for v, (lo, hi) in enumerate(RANGES):
        col = [REST] * pickup_ticks
        for b in range(beats):
            col += [pitch_token(lo + (b * 5 + v) % (hi - lo + 1)), HOLD, HOLD, HOLD]
        cols.append(col)
    return Grid(np.array(cols, dtype=np.int16).T, beats_per_bar=bpb, pickup_ticks=pickup_ticks)


@pytest.mark.parametrize("beats,bpb,pickup", [(6, 4, 0), (5, 3, 0), (2, 4, 0), (1, 3, 0), (9, 4, 4), (2, 4, 8)])
def test_midi_incomplete_last_bar_is_not_taken_for_a_pickup(tmp_path, beats, bpb, pickup):
    """Regression: without a pickup the last bar may be short (bwv304, bwv324, ...); reading the
    file back must not assume a pickup from where the last note ends."""
    grid = _chord_grid(beats, bpb, pickup)
    back = read_midi(write_midi(grid, tmp_path / "g.mid"))
    assert_same_grid(grid, back)
    assert not any("assumed" in n for n in back.report.notes), back.report.notes


@pytest.mark.parametrize("beats,bpb,pickup", [(6, 4, 0), (5, 3, 0), (9, 4, 4), (7, 3, 8)])
def test_musicxml_incomplete_last_bar_is_not_filled(tmp_path, beats, bpb, pickup):
    """Regression: a short last bar must not come back filled up to a whole bar with hidden rests."""
    grid = _chord_grid(beats, bpb, pickup)
    back = read_musicxml(write_musicxml(grid, tmp_path / "g.musicxml"))
    assert_same_grid(grid, back)


def test_every_corpus_chorale_round_trips_through_midi(tmp_path):
    from vqcpc.music.corpus import load_corpus

    chorales = load_corpus()
    assert len(chorales) == 334
    failed = []
    for c in chorales:
        back = read_midi(write_midi(c.grid, tmp_path / f"{c.name}.mid"))
        if not (back.tokens.shape == c.grid.tokens.shape and np.array_equal(back.tokens, c.grid.tokens)
                and (back.beats_per_bar, back.pickup_ticks) == (c.grid.beats_per_bar, c.grid.pickup_ticks)):
            failed.append((c.name, c.grid.ticks, back.ticks, c.grid.pickup_ticks, back.pickup_ticks))
    assert not failed, failed
