#!/usr/bin/env bash
# The test command: installs everything the tests need (jackd2 from Debian, vqcpc with the cpu,
# train and dev extras, CPU torch) and runs the whole suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/jackd.sh
EXTRAS="cpu,train,dev" bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
