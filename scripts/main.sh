#!/usr/bin/env bash
# The main job on the default model: install vqcpc (no torch needed) and write four variations of a
# real Bach chorale from the music21 corpus (a test chorale: the model never trained on it).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=cpu bash scripts/setup.sh
exec .venv/bin/vqcpc vary "${1:-bwv269}" -n 4 -o "${2:-out/main}" --force --json
