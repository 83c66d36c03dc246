"""The musical checks on hand-made grids whose answers are known (DESIGN §7)."""
import numpy as np
import pytest

from vqcpc.music.checks import (SILENT, CopyIndex, crossings, longest_template_run, onset_density, out_of_range,
                                parallels, pitch_class_distance, sounding)
from vqcpc.music.grid import HOLD, REST, pitch_token


def beats(*chords, ticks=4):
    """One row of four pitches (None = rest, 'h' = hold) a beat; each beat a quarter note."""
    rows = []
    for chord in chords:
        first = [REST if p is None else HOLD if p == "h" else pitch_token(p) for p in chord]
        rest = [REST if p is None else HOLD for p in chord]
        rows.append(first)
        rows.extend([rest] * (ticks - 1))
    return np.array(rows, dtype=np.int16)


def outer(s, b):  # soprano and bass only
    return (s, None, None, b)


def test_sounding_carries_holds_and_silences_rests():
    t = beats((72, None, 60, 48), ("h", None, None, 50))
    snd = sounding(t)
    assert snd[:, 0].tolist() == [72] * 8
    assert (snd[:, 1] == SILENT).all()
    assert snd[:, 2].tolist() == [60] * 4 + [SILENT] * 4
    assert snd[:, 3].tolist() == [48] * 4 + [50] * 4
    assert sounding(np.array([[HOLD, REST, REST, REST]]))[0, 0] == SILENT  # a hold with nothing before


@pytest.mark.parametrize("chords, expected", [
    ([outer(72, 60), outer(74, 62)], 1),  # octaves, both up
    ([outer(74, 67), outer(76, 69)], 1),  # fifths, both up
    ([outer(76, 57), outer(78, 59)], 1),  # compound fifths (a twelfth)
    ([outer(72, 60), outer(71, 59), outer(69, 57)], 2),  # two parallel octaves in a row
    ([outer(72, 60), outer(74, 50)], 0),  # contrary motion into an octave: not parallel
    ([outer(72, 60), outer(74, 60)], 0),  # oblique motion
    ([outer(67, 60), outer(74, 62)], 0),  # fifth to octave, similar motion: hidden, not parallel
    ([outer(72, 60), outer(72, 60)], 0),  # repeated octave: nothing moved
    ([outer(72, 60), outer(None, 62), outer(74, 62)], 0),  # a rest breaks the comparison
    ([outer(72, 66), outer(74, 68)], 0),  # parallel tritones are not perfect
])
def test_parallels_outer_voices(chords, expected):
    assert parallels(beats(*chords)) == expected


def test_parallels_every_pair_and_unisons():
    # C major (72 67 64 48) -> D major, all four voices up a tone: S-B octaves and A-B fifths
    assert parallels(beats((72, 67, 64, 48), (74, 69, 66, 50))) == 2
    # alto and tenor in unison moving together
    assert parallels(beats((None, 62, 62, None), (None, 64, 64, None))) == 1


def test_parallels_on_a_sixteenth_between_beats():
    t = beats(outer(72, 60), outer(76, 48))  # beat 2: no parallel (contrary)
    t[2, 0], t[2, 3] = pitch_token(74), pitch_token(62)  # on the third 16th both move up to D
    # events: tick 0 (72/60), tick 2 (74/62: octaves both up), tick 4 (76/48: contrary) -> 1
    assert parallels(t) == 1


def test_crossings_counted_where_they_begin():
    t = beats((72, 67, 60, 48), (65, 67, 60, 48), ("h", "h", 60, 48), (72, 67, 60, 48), (64, 67, 60, 48))
    assert crossings(t) == 2  # S below A from beat 2 to 3, again on beat 5
    assert crossings(beats((72, 67, 60, 62))) == 1  # the bass above the tenor
    assert crossings(beats((72, 72, 60, 48))) == 0  # a unison is no crossing


def test_out_of_range_textbook_ranges():
    assert out_of_range(beats((79, 55, 48, 40), (60, 74, 67, 60))) == 0  # every limit, inclusive
    assert out_of_range(beats((81, 55, 48, 40))) == 1  # soprano A5
    assert out_of_range(beats((72, 54, 47, 39))) == 3  # alto F#3, tenor B2, bass Eb2
    assert out_of_range(beats((81, None, None, None), ("h", None, None, None))) == 1  # a held note counts once


def test_onset_density_and_pitch_class_distance():
    t = beats((72, 67, 64, 48), ("h", "h", "h", 50))
    assert onset_density(t) == pytest.approx(2.5)
    assert onset_density(t, skip_beats=1) == pytest.approx(1.0)
    c = beats((72, 60, 48, 36))
    fsharp = beats((78, 66, 54, 42))
    assert pitch_class_distance(c, c) == 0.0
    assert pitch_class_distance(c, fsharp) == pytest.approx(1.0)
    half = beats((72, 60, 54, 42))  # half C, half F#
    assert pitch_class_distance(c, half) == pytest.approx(0.5)


PHRASE = [(72, 67, 64, 48), (74, 67, 62, 47), (76, 67, 60, 48), (77, 69, 60, 53), (79, 71, 62, 55),
          (77, 69, 65, 50), (76, 67, 64, 48), (74, 65, 59, 43)]


def shifted(chords, s):
    return [tuple(p + s for p in c) for c in chords]


def test_longest_copy_up_to_transposition():
    ref = beats(*PHRASE)
    other = beats(*shifted(PHRASE[:3], 5))
    index = CopyIndex([other, ref])
    # beats 1..6 of the phrase up a tone, after two unrelated beats, then an unrelated beat
    piece = beats((60, 55, 52, 40), (61, 56, 53, 41), *shifted(PHRASE[1:7], 2), (62, 57, 54, 45))
    assert index.longest_copy(piece) == 6
    # a change of transposition in the middle breaks the run into 3 + 3
    broken = beats(*shifted(PHRASE[1:4], 2), *shifted(PHRASE[4:7], 3))
    assert index.longest_copy(broken) == 3
    # skipped beats are not searched
    assert index.longest_copy(piece, skip_beats=5) == 3


def test_longest_copy_beats_without_onsets_match_but_do_not_count():
    index = CopyIndex([beats(*PHRASE)])
    held = beats(*PHRASE[:3], ("h", "h", "h", "h"), *PHRASE[4:6])  # beat 4 only holds beat 3's chord
    assert index.longest_copy(held) == 5  # 3 + 2 onset beats, the held beat bridging them
    silent = beats(*PHRASE[:2], (None, None, None, None), *PHRASE[3:5])
    assert index.longest_copy(silent) == 4
    assert index.longest_copy(beats(*PHRASE)) == 8


def test_longest_copy_same_shape_elsewhere_is_not_a_run():
    # every beat of the piece exists in the reference, but not consecutively: runs of one
    index = CopyIndex([beats(*PHRASE)])
    assert index.longest_copy(beats(PHRASE[0], PHRASE[5], PHRASE[2], PHRASE[7])) == 1


def test_longest_template_run():
    template = beats(*PHRASE)
    variation = beats(PHRASE[0], (73, 68, 65, 49), *shifted(PHRASE[2:5], -3), PHRASE[5], (60, 60, 60, 40),
                      PHRASE[7])
    assert longest_template_run(variation, template) == 3  # the three shifted beats
    assert longest_template_run(template, template) == 8
    assert longest_template_run(template, template, skip_beats=2) == 6
    # the same pitches with other onsets (a re-struck note instead of a hold) are not equal
    restruck = beats(*PHRASE[:3], (76, 67, 60, 48), *PHRASE[4:])
    held = beats(*PHRASE[:3], ("h", "h", "h", "h"), *PHRASE[4:])
    assert longest_template_run(restruck, held) == 4
