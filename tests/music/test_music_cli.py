"""`vqcpc inspect`: showing a template, writing it back, never overwriting without --force."""
from __future__ import annotations

import numpy as np

from vqcpc.music import load
from vqcpc.music.midi import read_midi
from vqcpc.music.score import read_musicxml


def test_inspect_a_chorale(cli):
    r = cli("inspect", "bwv269")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("bwv269: ")
    assert "bar 1 " in r.stdout and "  S |" in r.stdout and "  B |" in r.stdout


def test_inspect_writes_midi_and_refuses_to_overwrite(tmp_path, cli, cli_error):
    out = tmp_path / "out.mid"
    r = cli("inspect", "bwv269", "-o", out)
    assert r.exit_code == 0, r.output
    assert out.is_file() and out.stat().st_size > 0
    assert f"wrote {out}" in r.stdout
    before = out.read_bytes()
    cli_error(cli("inspect", "bwv269", "-o", out), "out.mid", "already exists", "--force")
    assert out.read_bytes() == before
    out.write_bytes(b"something else")
    r = cli("inspect", "bwv269", "-o", out, "--force")
    assert r.exit_code == 0, r.output
    grid = load("bwv269")
    back = read_midi(out)
    assert np.array_equal(back.tokens, grid.tokens)
    assert (back.beats_per_bar, back.pickup_ticks) == (grid.beats_per_bar, grid.pickup_ticks)


def test_inspect_writes_musicxml(tmp_path, cli):
    out = tmp_path / "out.musicxml"
    r = cli("inspect", "bwv269", "-o", out)
    assert r.exit_code == 0, r.output
    grid = load("bwv269")
    back = read_musicxml(out)
    assert np.array_equal(back.tokens, grid.tokens)
    assert (back.beats_per_bar, back.pickup_ticks, back.key) == (grid.beats_per_bar, grid.pickup_ticks, grid.key)


def test_inspect_refuses_an_unknown_output_type(tmp_path, cli, cli_error):
    cli_error(cli("inspect", "bwv269", "-o", tmp_path / "out.wav"), "out.wav", "unknown output type")
    assert not (tmp_path / "out.wav").exists()


def test_inspect_reads_back_its_own_file(tmp_path, cli):
    out = tmp_path / "b.mid"
    assert cli("inspect", "bwv269", "-o", out).exit_code == 0
    r = cli("inspect", out)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("b.mid: ")
