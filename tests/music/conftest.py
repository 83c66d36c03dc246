"""Shared fixtures of the music tests: the case files (a copy kept under tests/data/cases),
the eight-chord C major phrase they are made of, and the CLI runner."""
from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest
from click.testing import CliRunner

from vqcpc.music import HOLD, REST, pitch_token

CASES = Path(__file__).resolve().parent.parent / "data" / "cases"

# The phrase of the case files: eight chords, one per beat, in C major (S, A, T, B).
PHRASE = (
    (72, 72, 71, 72, 76, 74, 74, 72),
    (64, 65, 67, 67, 69, 69, 67, 64),
    (55, 57, 62, 64, 60, 65, 59, 55),
    (48, 53, 55, 48, 57, 50, 55, 48),
)
PICKUP_CHORD = (74, 67, 59, 55)  # the one-beat pickup of pickup_4_4.mid


def chord_tokens(voices, pickup_ticks: int = 0) -> np.ndarray:
    """(ticks, 4) tokens: one chord per beat (a pitch then three HOLDs), after ``pickup_ticks`` rests."""
    cols = []
    for pitches in voices:
        col = [REST] * pickup_ticks
        for p in pitches:
            col += [pitch_token(p), HOLD, HOLD, HOLD]
        cols.append(col)
    return np.array(cols, dtype=np.int16).T


def phrase_midi(path: Path, voices=PHRASE, *, vel0_release: bool = False, tpb: int = 480) -> Path:
    """The phrase as a type 1 file: a conductor track, then one track per voice on channels 1-4."""
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    mid.tracks.append(mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=500000, time=0),
        mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
    ]))
    for ch, pitches in enumerate(voices):
        track = mido.MidiTrack()
        for p in pitches:
            track.append(mido.Message("note_on", channel=ch, note=p, velocity=80, time=0))
            if vel0_release:
                track.append(mido.Message("note_on", channel=ch, note=p, velocity=0, time=tpb))
            else:
                track.append(mido.Message("note_off", channel=ch, note=p, velocity=0, time=tpb))
        mid.tracks.append(track)
    mid.save(str(path))
    return path


@pytest.fixture(scope="session")
def cases() -> Path:
    assert CASES.is_dir(), CASES
    return CASES


@pytest.fixture
def cli():
    """Invoke `vqcpc ARGS...` in-process; returns click's Result (stdout and stderr apart)."""
    from vqcpc.cli import main

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args])

    return invoke


@pytest.fixture(scope="session")
def phrase():
    """The phrase and its helpers: .voices, .pickup_chord, .tokens(voices, pickup_ticks), .midi(path, ...)."""
    from types import SimpleNamespace

    return SimpleNamespace(voices=PHRASE, pickup_chord=PICKUP_CHORD, tokens=chord_tokens, midi=phrase_midi)


def assert_cli_error(result, *needles: str) -> str:
    """Exit status 2, one line on stderr naming every needle, no traceback anywhere."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert "\n" not in err, err
    assert err.startswith("error: "), err
    for n in needles:
        assert n.lower() in err.lower(), (n, err)
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), result.exception
    return err


@pytest.fixture(scope="session")
def cli_error():
    return assert_cli_error
