#!/usr/bin/env bash
# Shared set-up: a virtual environment in .venv with vqcpc installed from this checkout.
#   EXTRAS: pip extras to install (default "cpu"); "train" brings torch, pinned to the CPU build
#   by constraints/cpu.txt (a bare torch requirement would pull a several-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${EXTRAS:-cpu}
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints/cpu.txt -e ".[${EXTRAS}]"
