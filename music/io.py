"""One entry point for every template a user can name: a corpus chorale, a MIDI or MusicXML file."""
from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .grid import Grid, fold_grid, load_ranges
from .midi import read_midi, write_midi
from .score import chorale_name, load_chorale, read_musicxml, write_musicxml

MIDI_SUFFIXES = {".mid", ".midi", ".smf"}
XML_SUFFIXES = {".xml", ".musicxml", ".mxl"}


def load(spec: str | Path, *, parts: list[int] | None = None, pickup: float | None = None,
         fold: bool = False) -> Grid:
    """'bwv269', 'song.mid' or 'score.musicxml' -> Grid; ``fold`` folds pitches into the voice ranges."""
    path = Path(spec)
    if pickup is not None and path.suffix.lower() not in MIDI_SUFFIXES:
        raise InputError(f"{spec}: --pickup applies to MIDI files; a score's pickup is its first measure")
    if not path.exists() and chorale_name(str(spec)):
        grid = load_chorale(str(spec), parts=parts)
    elif not path.exists():
        raise InputError(f"{spec}: no such file (nor a chorale name such as bwv269)")
    elif path.is_dir():
        raise InputError(f"{spec}: is a folder, not a MIDI or MusicXML file")
    elif path.suffix.lower() in MIDI_SUFFIXES:
        if parts is not None:
            raise InputError(f"{spec}: --parts applies to MusicXML scores; a MIDI file's voices "
                             f"come from its four channels or tracks, else from pitch order")
        grid = read_midi(path, pickup=pickup)
    elif path.suffix.lower() in XML_SUFFIXES:
        grid = read_musicxml(path, parts=parts)
    else:
        raise InputError(f"{spec}: unknown file type {path.suffix or '(none)'}; expected .mid or .musicxml")
    return fold_grid(grid, load_ranges()) if fold else grid


def save(grid: Grid, path: str | Path, *, force: bool = False, **kw) -> Path:
    """Write a grid as MIDI or MusicXML by the suffix; never overwrites without ``force``."""
    path = check_output(path, force=force)
    if path.suffix.lower() in MIDI_SUFFIXES:
        return write_midi(grid, path, **kw)
    return write_musicxml(grid, path)


def check_output(path: str | Path, *, force: bool = False) -> Path:
    """Where ``save`` may write (checked before any work): a known type, a folder that exists, not
    an existing file unless ``force``."""
    path = Path(path)
    if path.exists() and not force:
        raise InputError(f"{path}: already exists (use --force to overwrite)")
    suffix = path.suffix.lower()
    if suffix not in MIDI_SUFFIXES and suffix not in XML_SUFFIXES - {".mxl"}:
        raise InputError(f"{path}: unknown output type {suffix or '(none)'}; expected .mid or .musicxml")
    if not path.resolve().parent.is_dir():
        raise InputError(f"{path}: no folder {path.parent} to write it in")
    return path
