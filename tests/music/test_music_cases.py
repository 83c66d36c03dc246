"""The inputs from the real world (tests/data/cases, a copy of the project's case files; see its
README): each gives the right result, or a clear error and exit status 2 through the CLI."""
from __future__ import annotations

import mido
import numpy as np
import pytest

from vqcpc.music import HOLD, REST, InputError, load, pitch_token
from vqcpc.music.grid import notes_of_voice, validate_tokens
from vqcpc.music.midi import read_midi, write_midi
from vqcpc.music.score import read_musicxml


def assert_sane(grid):
    """Whole beats, token ids in the vocabulary, every HOLD continuing a note."""
    assert grid.ticks % 4 == 0 and grid.ticks > 0
    assert grid.tokens.min() >= 0
    validate_tokens(grid.tokens)


def test_case_files_are_present(cases):
    names = {p.name for p in cases.iterdir()}
    for n in ("pickup_4_4.mid", "vel0_noteoff.mid", "same_pitch_overlap.mid", "offgrid_triplets_32nds.mid",
              "tempo_on_track1.mid", "data_byte_over_127.mid", "truncated.mid", "smpte_division.mid",
              "no_notes.mid", "three_parts.musicxml"):
        assert n in names


def test_the_phrase_helper_matches_the_case_files(cases, phrase, tmp_path):
    """The phrase built here is the one the case files are made of (tempo_on_track1 aside)."""
    grid = read_midi(phrase.midi(tmp_path / "phrase.mid"))
    assert np.array_equal(grid.tokens, phrase.tokens(phrase.voices))
    assert (grid.beats_per_bar, grid.pickup_ticks) == (4, 0)


# --- pickup_4_4.mid ----------------------------------------------------------------------------

def test_pickup_is_the_last_beat_of_a_padded_first_bar(cases, phrase):
    grid = read_midi(cases / "pickup_4_4.mid")
    assert_sane(grid)
    assert grid.beats_per_bar == 4
    assert grid.pickup_ticks == 12
    assert (grid.tokens[:12] == REST).all()
    assert [int(t) for t in grid.tokens[12]] == [pitch_token(p) for p in phrase.pickup_chord]
    # the first full chord lands on the downbeat of bar 2
    assert [int(t) for t in grid.tokens[16]] == [pitch_token(v[0]) for v in phrase.voices]
    assert grid.ticks == 48
    full = np.concatenate([np.array([pitch_token(p) for p in phrase.pickup_chord])[None],
                           np.full((3, 4), HOLD)])
    assert np.array_equal(grid.tokens[12:16], full)
    assert np.array_equal(grid.tokens[16:], phrase.tokens(phrase.voices))
    assert any("pickup" in n for n in grid.report.notes), grid.report.notes  # the assumption is reported


def test_pickup_round_trips_through_midi(cases, tmp_path):
    grid = read_midi(cases / "pickup_4_4.mid")
    out = write_midi(grid, tmp_path / "out.mid")
    back = read_midi(out)
    assert np.array_equal(back.tokens, grid.tokens)
    assert (back.beats_per_bar, back.pickup_ticks) == (4, 12)
    # written back as a partial first bar: 1/4 at the start, then 4/4 one beat later
    sigs, now = [], 0
    for msg in mido.MidiFile(str(out)).tracks[0]:
        now += msg.time
        if msg.type == "time_signature":
            sigs.append((now, msg.numerator, msg.denominator))
    assert sigs == [(0, 1, 4), (480, 4, 4)]


def test_pickup_given_explicitly(cases):
    assumed = read_midi(cases / "pickup_4_4.mid")
    given = read_midi(cases / "pickup_4_4.mid", pickup=1)
    assert np.array_equal(given.tokens, assumed.tokens) and given.pickup_ticks == 12
    assert any("--pickup" in n for n in given.report.notes)


def test_pickup_through_the_cli(cases, cli):
    r = cli("inspect", cases / "pickup_4_4.mid")
    assert r.exit_code == 0, r.output
    assert "pickup of 1 beats" in r.stdout
    assert "[pickup padded]" in r.stdout


# --- vel0_noteoff.mid -------------------------------------------------------------------------

def test_velocity0_note_on_is_a_note_off(cases, phrase, tmp_path):
    raw = (cases / "vel0_noteoff.mid").read_bytes()
    # the case really uses running status: fewer status bytes 0x9n than note events
    assert raw.count(b"\x90") < 16
    grid = read_midi(cases / "vel0_noteoff.mid")
    with_note_off = read_midi(phrase.midi(tmp_path / "note_off.mid", vel0_release=False))
    assert np.array_equal(grid.tokens, with_note_off.tokens)
    assert (grid.beats_per_bar, grid.pickup_ticks) == (with_note_off.beats_per_bar, with_note_off.pickup_ticks)
    assert np.array_equal(grid.tokens, phrase.tokens(phrase.voices))
    assert grid.report.snapped == grid.report.dropped == 0


def test_velocity0_files_written_by_mido_too(phrase, tmp_path):
    a = read_midi(phrase.midi(tmp_path / "a.mid", vel0_release=True))
    b = read_midi(phrase.midi(tmp_path / "b.mid", vel0_release=False))
    assert np.array_equal(a.tokens, b.tokens)


# --- same_pitch_overlap.mid -------------------------------------------------------------------

def test_same_pitch_overlap_pairs_first_in_first_out(cases, phrase):
    grid = read_midi(cases / "same_pitch_overlap.mid")
    assert_sane(grid)
    soprano = notes_of_voice(grid.tokens[:, 0])
    # C5 struck at tick 0 and again at tick 2, released at ticks 4 and 6: FIFO pairs (0-4) and (2-6);
    # the first ends where the second starts; the second keeps its own release (LIFO would end it at 4)
    assert soprano[:2] == [(0, 2, 72), (2, 6, 72)]
    assert (grid.tokens[6:8, 0] == REST).all()
    assert soprano[2:] == [(8 + 4 * i, 12 + 4 * i, p) for i, p in enumerate(phrase.voices[0][2:])]
    assert all(e > s for s, e, _ in soprano)  # no zero-length note
    assert not any("never released" in n for n in grid.report.notes)  # no hanging note
    assert grid.ticks == 32
    assert np.array_equal(grid.tokens[:, 1:], phrase.tokens(phrase.voices)[:, 1:])


def test_unreleased_note_is_ended_and_reported(phrase, tmp_path):
    mid = mido.MidiFile(type=0, ticks_per_beat=480)
    mid.tracks.append(mido.MidiTrack([
        mido.Message("note_on", channel=0, note=72, velocity=80, time=0),
        mido.Message("note_on", channel=0, note=72, velocity=80, time=480),
        mido.Message("note_off", channel=0, note=72, velocity=0, time=480),
        mido.MetaMessage("end_of_track", time=960),
    ]))
    mid.save(str(tmp_path / "hanging.mid"))
    grid = read_midi(tmp_path / "hanging.mid")
    assert any("never released" in n for n in grid.report.notes)
    notes = [n for v in range(4) for n in notes_of_voice(grid.tokens[:, v])]
    assert len(notes) == 2 and all(e > s for s, e, _ in notes)


# --- offgrid_triplets_32nds.mid ---------------------------------------------------------------

def test_offgrid_onsets_snap_and_are_counted(cases, phrase):
    grid = read_midi(cases / "offgrid_triplets_32nds.mid")
    assert_sane(grid)
    assert grid.report.snapped >= 4  # at least the four triplet onsets off the grid
    soprano = notes_of_voice(grid.tokens[:, 0])
    assert all(e > s for s, e, _ in soprano)
    # beats 1-2: triplet eighths C5 C#5 D5: three notes each, none lost (a free tick for each)
    assert soprano[:6] == [(0, 1, 72), (1, 3, 73), (3, 4, 74), (4, 5, 72), (5, 7, 73), (7, 8, 74)]
    # beat 3: eight 32nd notes on four ticks: four placed, one per tick, the others dropped and counted
    assert soprano[6:10] == [(8, 9, 74), (9, 10, 74), (10, 11, 74), (11, 12, 74)]
    assert grid.report.dropped == 8 - 4
    raw_soprano = sum(1 for m in mido.MidiFile(str(cases / "offgrid_triplets_32nds.mid")).tracks[1]
                      if m.type == "note_on" and m.velocity > 0)
    assert len(soprano) + grid.report.dropped == raw_soprano
    assert soprano[10:] == [(12 + 4 * i, 16 + 4 * i, p) for i, p in enumerate(phrase.voices[0][3:])]
    assert np.array_equal(grid.tokens[:, 1:], phrase.tokens(phrase.voices)[:, 1:])


def test_offgrid_counts_shown_by_the_cli(cases, cli):
    r = cli("inspect", cases / "offgrid_triplets_32nds.mid")
    assert r.exit_code == 0, r.output
    assert "snapped to the 16th grid" in r.stdout and "dropped" in r.stdout


# --- tempo_on_track1.mid ----------------------------------------------------------------------

def test_tempo_changes_on_a_note_track_do_not_move_beats(cases, phrase):
    mid = mido.MidiFile(str(cases / "tempo_on_track1.mid"))
    assert sum(m.type == "set_tempo" for m in mid.tracks[2]) >= 2  # the case: tempo on a note track
    grid = read_midi(cases / "tempo_on_track1.mid")
    assert_sane(grid)
    assert np.array_equal(grid.tokens, phrase.tokens(phrase.voices))
    for v in range(4):
        assert [s for s, _, _ in notes_of_voice(grid.tokens[:, v])] == [4 * b for b in range(8)]


# --- data_byte_over_127.mid -------------------------------------------------------------------

def test_data_byte_over_127_is_clipped_with_a_warning(cases, phrase, tmp_path):
    grid = read_midi(cases / "data_byte_over_127.mid")
    assert grid.report.clipped == 1
    assert any("0xFF" in n for n in grid.report.notes), grid.report.notes
    clean = read_midi(phrase.midi(tmp_path / "clean.mid"))
    assert np.array_equal(grid.tokens, clean.tokens)
    assert np.array_equal(grid.tokens, phrase.tokens(phrase.voices))


def test_data_byte_warning_in_the_cli(cases, cli):
    r = cli("inspect", cases / "data_byte_over_127.mid")
    assert r.exit_code == 0, r.output
    assert "0xFF" in r.stdout and "clipped" in r.stdout


def test_clipping_does_not_leak_into_later_reads(cases):
    read_midi(cases / "data_byte_over_127.mid")
    assert read_midi(cases / "tempo_on_track1.mid").report.clipped == 0


# --- files that must be refused: a clear error, exit status 2, no traceback -------------------

REFUSED = [
    ("truncated.mid", ("truncated",)),
    ("smpte_division.mid", ("SMPTE", "25 frames/s", "40 ticks/frame")),
    ("no_notes.mid", ("no notes",)),
    ("three_parts.musicxml", ("3 parts", "--parts")),
]


@pytest.mark.parametrize("name,needles", REFUSED, ids=[n for n, _ in REFUSED])
def test_refused_with_an_input_error(cases, name, needles):
    with pytest.raises(InputError) as info:
        load(cases / name)
    msg = str(info.value)
    assert name in msg  # names the file
    for n in needles:
        assert n.lower() in msg.lower(), msg
    assert "\n" not in msg


@pytest.mark.parametrize("name,needles", REFUSED, ids=[n for n, _ in REFUSED])
def test_refused_through_the_cli(cases, cli, cli_error, name, needles):
    r = cli("inspect", cases / name)
    cli_error(r, name, *needles)
    assert r.stdout == ""


def test_smpte_never_gives_a_grid(cases):
    with pytest.raises(InputError):
        read_midi(cases / "smpte_division.mid")


def test_missing_and_unknown_inputs(tmp_path, cli, cli_error):
    cli_error(cli("inspect", tmp_path / "nothing.mid"), "nothing.mid", "no such file")
    (tmp_path / "notes.txt").write_text("C E G")
    cli_error(cli("inspect", tmp_path / "notes.txt"), "notes.txt", "unknown file type")
    (tmp_path / "garbage.mid").write_bytes(b"not a midi file at all")
    cli_error(cli("inspect", tmp_path / "garbage.mid"), "garbage.mid")
    cli_error(cli("inspect", "bwv99999"), "bwv99999")


# --- three_parts.musicxml and --parts ----------------------------------------------------------

def test_three_parts_error_says_what_was_found_and_how_to_map(cases):
    with pytest.raises(InputError) as info:
        read_musicxml(cases / "three_parts.musicxml")
    msg = str(info.value)
    assert "3 parts found" in msg and "four voices" in msg and "--parts 1,2,3,4" in msg


def test_three_parts_cannot_be_mapped(cases, cli, cli_error):
    with pytest.raises(InputError, match="3 parts"):
        read_musicxml(cases / "three_parts.musicxml", parts=[0, 1, 2, 3])
    cli_error(cli("inspect", cases / "three_parts.musicxml", "--parts", "1,2,3,4"),
              "three_parts.musicxml", "part 4", "3 parts")
    cli_error(cli("inspect", cases / "three_parts.musicxml", "--parts", "1,2,3"), "four different part numbers")
    cli_error(cli("inspect", cases / "three_parts.musicxml", "--parts", "1,1,2,3"), "four different part numbers")
    cli_error(cli("inspect", cases / "three_parts.musicxml", "--parts", "a,b,c,d"), "four part numbers")


def _five_part_score(path):
    """Five parts in the order bass, tenor, alto, soprano, extra; two chords each, in 4/4."""
    from music21 import meter, note, stream

    music = {"bass": (48, 55), "tenor": (55, 59), "alto": (64, 62), "soprano": (72, 71), "flute": (84, 83)}
    score = stream.Score()
    for name, pitches in music.items():
        part = stream.Part()
        part.partName = name
        m = stream.Measure(number=1)
        m.append(meter.TimeSignature("4/4"))
        for p in pitches:
            m.append(note.Note(midi=p, quarterLength=2))
        part.append(m)
        score.insert(0, part)
    score.write("musicxml", fp=str(path))
    return path


def test_parts_mapping_picks_four_distinct_parts(tmp_path, cli, cli_error):
    path = _five_part_score(tmp_path / "five.musicxml")
    with pytest.raises(InputError, match="5 parts found"):
        read_musicxml(path)
    grid = read_musicxml(path, parts=[3, 2, 1, 0])
    assert [[p for _, _, p in notes_of_voice(grid.tokens[:, v])] for v in range(4)] == \
        [[72, 71], [64, 62], [55, 59], [48, 55]]
    assert grid.ticks == 16
    r = cli("inspect", path, "--parts", "4,3,2,1")
    assert r.exit_code == 0, r.output
    assert "C5" in r.stdout and "C3" in r.stdout and "C6" not in r.stdout
    cli_error(cli("inspect", path), "5 parts found", "--parts")
    cli_error(cli("inspect", path, "--parts", "4,3,2,6"), "part 6", "5 parts")


def test_parts_option_is_refused_for_midi(cases, cli, cli_error):
    cli_error(cli("inspect", cases / "tempo_on_track1.mid", "--parts", "1,2,3,4"), "--parts")


def _midi_with_meters(path, sigs, beats=12):
    """One track: the given (beat, numerator, denominator) signatures, then a quarter note a beat."""
    track = mido.MidiTrack()
    events = [(b * 480, mido.MetaMessage("time_signature", numerator=n, denominator=d)) for b, n, d in sigs]
    for i in range(beats):
        events += [(i * 480, mido.Message("note_on", note=60 + i % 5, velocity=80)),
                   (i * 480 + 480, mido.Message("note_off", note=60 + i % 5, velocity=0))]
    now = 0
    for t, msg in sorted(events, key=lambda e: (e[0], e[1].type != "note_off")):
        track.append(msg.copy(time=t - now))
        now = t
    mid = mido.MidiFile(ticks_per_beat=480)
    mid.tracks.append(track)
    mid.save(str(path))
    return path


def test_compound_meter_is_read_in_quarter_beats_and_says_so(tmp_path):
    grid = read_midi(_midi_with_meters(tmp_path / "six8.mid", [(0, 6, 8)]))
    assert grid.beats_per_bar == 3
    assert any("6/8 read as 3/4" in n and "dotted-quarter" in n for n in grid.report.notes)


def test_a_later_meter_change_keeps_the_first_meter_and_says_so(tmp_path):
    grid = read_midi(_midi_with_meters(tmp_path / "change.mid", [(0, 4, 4), (8, 3, 4)]))
    assert grid.beats_per_bar == 4 and grid.pickup_ticks == 0
    assert any("changes to 3/4 at beat 8" in n and "read in 4/4" in n for n in grid.report.notes)
    # a first bar of its own signature is still a pickup, and a change after it is still reported
    grid = read_midi(_midi_with_meters(tmp_path / "pick.mid", [(0, 1, 4), (1, 4, 4), (9, 3, 4)], beats=13))
    assert (grid.beats_per_bar, grid.pickup_ticks) == (4, 12)
    assert any("changes to 3/4 at beat 9" in n for n in grid.report.notes)


def test_pickup_option_is_refused_for_scores(cases, cli, cli_error):
    with pytest.raises(InputError, match="--pickup applies to MIDI files"):
        load("bwv269", pickup=1)
    r = cli("inspect", cases / "three_parts.musicxml", "--pickup", "1")
    cli_error(r, "--pickup applies to MIDI files")


def test_no_pickup_guess_when_the_meter_changes_or_the_music_starts_late(tmp_path):
    # 4/4, then 5/4 from beat 8: the last note ends 2 beats into a 4/4 bar, which says nothing of a pickup
    grid = read_midi(_midi_with_meters(tmp_path / "m44_54.mid", [(0, 4, 4), (8, 5, 4)], beats=14))
    assert grid.pickup_ticks == 0 and not any("assumed a pickup" in n for n in grid.report.notes)
    # the first note at beat 13 (silence before it): the file's bar lines stand
    track = mido.MidiTrack([mido.MetaMessage("time_signature", numerator=4, denominator=4),
                            mido.Message("note_on", note=60, velocity=80, time=13 * 480),
                            mido.Message("note_off", note=60, velocity=0, time=480)])
    mid = mido.MidiFile(ticks_per_beat=480)
    mid.tracks.append(track)
    mid.save(str(tmp_path / "late.mid"))
    grid = read_midi(tmp_path / "late.mid")
    assert grid.pickup_ticks == 0 and not any("assumed a pickup" in n for n in grid.report.notes)


def test_bad_numbers_and_unwritable_outputs_are_one_line_errors(cases, cli, cli_error, tmp_path):
    f = cases / "pickup_4_4.mid"
    for value in ("nan", "inf", "-1"):
        cli_error(cli("inspect", f, "--pickup", value), "--pickup")
    cli_error(cli("inspect", f, "--pickup", "4"), "--pickup 4", "under one bar")
    cli_error(cli("inspect", f, "-o", tmp_path / "no" / "such" / "x.mid"), "no folder")
    cli_error(cli("codes", f, "--plot", tmp_path / "x.txt"), ".png")
    cli_error(cli("codes", f, "--plot", tmp_path / "no" / "x.png"), "no folder")
    for opt, value in (("--temperature", "nan"), ("--seed", "-5"), ("--top-p", "inf")):
        cli_error(cli("vary", f, "-o", tmp_path / "v", opt, value), opt)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cli_error(cli("vary", f, "-o", blocker / "sub", "-n", "1"), str(blocker))


def test_not_midi_type_2_and_drums(tmp_path):
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="not a MIDI file .empty"):
        read_midi(empty)
    text = tmp_path / "text.mid"
    text.write_text("hello")
    with pytest.raises(InputError, match="does not start with MThd"):
        read_midi(text)
    mid = mido.MidiFile(type=2, ticks_per_beat=480)
    for p in (60, 64):
        mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=p, velocity=80),
                                          mido.Message("note_off", note=p, velocity=0, time=480)]))
    mid.save(str(tmp_path / "type2.mid"))
    with pytest.raises(InputError, match="type 2"):
        read_midi(tmp_path / "type2.mid")
    drums = mido.MidiFile(ticks_per_beat=480)
    drums.tracks.append(mido.MidiTrack([mido.Message("note_on", channel=9, note=36, velocity=80),
                                        mido.Message("note_off", channel=9, note=36, velocity=0, time=1920)]))
    drums.save(str(tmp_path / "drums.mid"))
    assert any("channel 10" in n for n in read_midi(tmp_path / "drums.mid").report.notes)
