"""Assigning notes to soprano, alto, tenor, bass: by pitch order (files without four
channels/tracks, live input) and per part (scores: chords, grace notes, ties)."""
from __future__ import annotations

import mido
import numpy as np
import pytest

from vqcpc.music import HOLD, REST, Report, pitch_token
from vqcpc.music.grid import notes_of_voice, validate_tokens
from vqcpc.music.midi import read_midi
from vqcpc.music.score import grid_from_score
from vqcpc.music.voicing import Note, PitchOrderVoicer, place_voice, voice_by_pitch_order

S, A, T, B = range(4)


def onset_pitches(tokens, tick):
    """Per voice the pitch starting at ``tick``, 'H' for HOLD, None for REST."""
    out = []
    for tok in tokens[tick]:
        tok = int(tok)
        out.append(None if tok == REST else "H" if tok == HOLD else tok - 2)
    return out


# --- by pitch order ----------------------------------------------------------------------------

def test_four_notes_bass_lowest_soprano_highest():
    report = Report()
    notes = [Note(0, 1, 60), Note(0, 1, 48), Note(0, 1, 72), Note(0, 1, 55)]  # any order
    tokens = voice_by_pitch_order(notes, 4, report)
    assert onset_pitches(tokens, 0) == [72, 60, 55, 48]
    assert (tokens[1:] == HOLD).all()
    assert report.dropped == 0


def test_six_notes_at_once_keep_four_and_count_two_dropped():
    report = Report()
    pitches = [48, 55, 60, 64, 67, 72]
    tokens = voice_by_pitch_order([Note(0, 1, p) for p in pitches], 4, report)
    got = onset_pitches(tokens, 0)
    assert got[S] == 72 and got[B] == 48  # the outer voices are never the ones dropped
    assert got[A] > got[T] and {got[A], got[T]} <= {55, 60, 64, 67}
    assert report.dropped == 2
    validate_tokens(tokens)


def test_dropped_notes_are_counted_once_each_however_long_they_sound():
    report = Report()
    notes = [(0, 16, p) for p in (48, 52, 55, 60, 64, 67)]
    tokens = PitchOrderVoicer().voice(notes, 16, report)
    assert report.dropped == 2
    assert all(len(notes_of_voice(tokens[:, v])) == 1 for v in range(4))


def test_a_voice_without_a_note_is_rest():
    report = Report()
    tokens = voice_by_pitch_order([Note(0, 1, 72), Note(0, 1, 57), Note(0, 1, 48)], 4, report)
    got = onset_pitches(tokens, 0)
    assert got[S] == 72 and got[B] == 48
    assert got[T] == 57 and got[A] is None  # 57 lies nearer the tenor's place than the alto's
    assert (tokens[:, A] == REST).all()
    tokens = voice_by_pitch_order([Note(0, 1, 72), Note(0, 1, 48)], 4, Report())
    assert (tokens[:, A] == REST).all() and (tokens[:, T] == REST).all()
    tokens = voice_by_pitch_order([], 4, Report())
    assert (tokens == REST).all()


def test_inner_voices_follow_their_previous_pitches():
    voicer = PitchOrderVoicer()
    report = Report()
    # a full chord, then three notes: the middle one goes to the inner voice it is nearest to
    tokens = voicer.voice([(0, 4, 72), (0, 4, 67), (0, 4, 55), (0, 4, 48),
                           (4, 8, 72), (4, 8, 56), (4, 8, 48)], 8, report)
    assert onset_pitches(tokens, 4) == [72, None, 56, 48]
    tokens = voicer.voice([(0, 4, 72), (0, 4, 66), (0, 4, 48)], 4, report)  # continues from the last bar
    assert onset_pitches(tokens, 0) == [72, 66, None, 48]  # 66: one from the alto's 67, ten from 56


def test_a_held_inner_note_stays_in_its_voice():
    # the alto holds E4 while the tenor moves; a tenor alone holds while the others change
    notes = [(0, 8, 64),  # alto, held
             (0, 4, 72), (4, 8, 74),  # soprano
             (0, 4, 55), (4, 8, 57),  # tenor
             (0, 8, 48)]  # bass
    tokens = PitchOrderVoicer().voice(notes, 8, Report())
    assert onset_pitches(tokens, 0) == [72, 64, 55, 48]
    assert onset_pitches(tokens, 4) == [74, "H", 57, "H"]


def test_a_held_note_is_not_restruck_in_a_unison():
    # the alto holds E4 while the tenor rises to the same E4: the alto goes on, the tenor strikes
    notes = [(0, 8, 72), (0, 8, 64), (0, 4, 57), (4, 8, 64), (0, 8, 48)]
    tokens = PitchOrderVoicer().voice(notes, 8, Report())
    assert onset_pitches(tokens, 4) == ["H", "H", 64, "H"]
    # and the tenor holds E4 while the alto falls to it
    notes = [(0, 8, 72), (0, 4, 69), (4, 8, 64), (0, 8, 64), (0, 8, 48)]
    tokens = PitchOrderVoicer().voice(notes, 8, Report())
    assert onset_pitches(tokens, 4) == ["H", 64, "H", "H"]


def test_a_lone_note_goes_to_the_nearest_voice_and_keeps_it():
    voicer = PitchOrderVoicer()
    voicer.voice([(0, 4, 72), (0, 4, 64), (0, 4, 55), (0, 4, 43)], 4, Report())
    tokens = voicer.voice([(0, 4, 45)], 4, Report())
    assert onset_pitches(tokens, 0) == [None, None, None, 45]
    assert (tokens[1:, B] == HOLD).all()


def test_single_channel_midi_is_voiced_by_pitch_order(phrase, tmp_path):
    mid = mido.MidiFile(type=0, ticks_per_beat=480)
    track = mido.MidiTrack([mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0)])
    for chord in zip(*phrase.voices):
        for i, p in enumerate(sorted(chord)):  # lowest first, all on channel 1
            track.append(mido.Message("note_on", channel=0, note=p, velocity=80, time=0))
        for i, p in enumerate(chord):
            track.append(mido.Message("note_off", channel=0, note=p, velocity=0, time=480 if i == 0 else 0))
    mid.tracks.append(track)
    mid.save(str(tmp_path / "one_channel.mid"))
    grid = read_midi(tmp_path / "one_channel.mid")
    assert np.array_equal(grid.tokens, phrase.tokens(phrase.voices))
    assert any("pitch order" in n for n in grid.report.notes)


# --- one known voice: chords, snapping (place_voice) -------------------------------------------

def test_place_voice_reduces_chords_deterministically():
    report = Report()
    upper = place_voice([Note(0, 1, 64), Note(0, 1, 72), Note(0, 1, 67)], 4, lowest=False, report=report)
    assert int(upper[0]) == pitch_token(72)
    lower = place_voice([Note(0, 1, 64), Note(0, 1, 48), Note(0, 1, 55)], 4, lowest=True, report=report)
    assert int(lower[0]) == pitch_token(48)
    assert report.chords == 4  # two notes left out of each chord


def test_place_voice_never_gives_zero_length():
    report = Report()
    col = place_voice([Note(0, 0.1, 72), Note(0.1, 0.2, 74), Note(0.3, 2.0, 76)], 8, lowest=False, report=report)
    validate_tokens(col[:, None].repeat(4, axis=1))
    notes = notes_of_voice(col)
    assert all(e > s for s, e, _ in notes)
    assert len(notes) + report.dropped == 3
    assert report.snapped > 0


# --- scores: chords inside one part, grace notes, ties across barlines -------------------------

def _score(parts_notes, ts="4/4"):
    """A music21 Score: one part per voice; each a list of measures, each a list of elements."""
    from music21 import meter, stream

    score = stream.Score()
    for measures in parts_notes:
        part = stream.Part()
        for k, elements in enumerate(measures):
            m = stream.Measure(number=k + 1)
            if k == 0:
                m.append(meter.TimeSignature(ts))
            for el in elements:
                m.append(el)
            part.append(m)
        score.insert(0, part)
    return score


def _n(p, ql=1.0):
    from music21 import note

    return note.Note(midi=p, quarterLength=ql)


def _chord(ps, ql=1.0):
    from music21 import chord

    return chord.Chord([_n(p).pitch for p in ps], quarterLength=ql)


def test_chords_inside_one_part_keep_the_outer_note_and_are_counted():
    score = _score([
        [[_chord([72, 76]), _n(74, 3)]],  # soprano: a chord, keeps E5 (highest)
        [[_n(64), _chord([60, 67, 65]), _n(65, 2)]],  # alto: keeps G4
        [[_n(55, 4)]],
        [[_chord([48, 36]), _n(43, 3)]],  # bass: keeps C2 (lowest)
    ])
    grid = grid_from_score(score, source="chords")
    assert onset_pitches(grid.tokens, 0) == [76, 64, 55, 36]
    assert onset_pitches(grid.tokens, 4) == [74, 67, "H", 43]
    assert grid.report.chords == 3


def test_grace_notes_are_dropped_and_counted():
    grace = _n(62).getGrace()
    score = _score([
        [[_n(72), _n(74), _n(76), _n(72)]],
        [[grace, _n(64, 2), _n(65, 2)]],  # an appoggiatura before the first alto note
        [[_n(55, 4)]],
        [[_n(48, 2), _n(43, 2)]],
    ])
    grid = grid_from_score(score, source="grace")
    assert grid.report.dropped == 1
    assert [p for _, _, p in notes_of_voice(grid.tokens[:, A])] == [64, 65]
    assert notes_of_voice(grid.tokens[:, A])[0] == (0, 8, 64)  # no time taken from the main note
    assert grid.ticks == 16


def test_ties_across_barlines_become_hold():
    from music21 import tie

    first, second = _n(67, 2), _n(67, 1)
    first.tie, second.tie = tie.Tie("start"), tie.Tie("stop")
    score = _score([
        [[_n(72, 4)], [_n(74, 4)]],
        [[_n(64, 2), first], [second, _n(65, 3)]],  # G4 tied over the barline: beats 3-5
        [[_n(55, 4)], [_n(59, 4)]],
        [[_n(48, 4)], [_n(43, 4)]],
    ])
    grid = grid_from_score(score, source="tie")
    assert notes_of_voice(grid.tokens[:, A]) == [(0, 8, 64), (8, 20, 67), (20, 32, 65)]
    assert int(grid.tokens[16, A]) == HOLD  # the downbeat of bar 2 continues the tied note
    assert grid.report.snapped == grid.report.dropped == grid.report.chords == 0


def test_repeated_note_without_a_tie_is_struck_again():
    score = _score([
        [[_n(72, 4)], [_n(72, 4)]],
        [[_n(64, 4)], [_n(64, 4)]],
        [[_n(55, 4)], [_n(55, 4)]],
        [[_n(48, 4)], [_n(48, 4)]],
    ])
    grid = grid_from_score(score, source="repeat")
    assert onset_pitches(grid.tokens, 16) == [72, 64, 55, 48]


def test_ties_survive_a_musicxml_file(tmp_path):
    from music21 import tie

    from vqcpc.music.score import read_musicxml

    first, second = _n(60, 1), _n(60, 3)
    first.tie, second.tie = tie.Tie("start"), tie.Tie("stop")
    score = _score([
        [[_n(72, 4)], [_n(72, 4)]],
        [[_n(64, 4)], [_n(64, 4)]],
        [[_n(55, 3), first], [second, _n(57, 1)]],
        [[_n(48, 4)], [_n(48, 4)]],
    ])
    score.write("musicxml", fp=str(tmp_path / "tie.musicxml"))
    grid = read_musicxml(tmp_path / "tie.musicxml")
    assert notes_of_voice(grid.tokens[:, T]) == [(0, 12, 55), (12, 28, 60), (28, 32, 57)]


@pytest.mark.parametrize("lowest", [False, True])
def test_place_voice_unison_chord_is_not_a_reduction(lowest):
    report = Report()
    col = place_voice([Note(0, 1, 60), Note(0, 1, 60)], 4, lowest=lowest, report=report)
    assert int(col[0]) == pitch_token(60) and report.chords == 0
