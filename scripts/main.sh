#!/usr/bin/env bash
# The main job: the live daemon on the default model, fed a real Bach chorale (a test chorale of the
# music21 corpus, never trained on) over real MIDI ports with MIDI clock, its output recorded.
# Starts a JACK server with the dummy driver when there is no MIDI system. No torch needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/jackd.sh
EXTRAS=cpu bash scripts/setup.sh
exec .venv/bin/vqcpc demo --bwv "${BWV:-269}" --bpm "${BPM:-120}" -o "${OUT:-demo-out}" --force --json
