#!/usr/bin/env bash
# The test command: installs everything the tests need (jackd2 from Debian, vqcpc with the cpu,
# train and dev extras, CPU torch) and runs the whole suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v jackd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else SUDO="none"; fi
  if [ "$SUDO" = none ]; then
    echo "jackd is missing and this user cannot install it: apt-get install --no-install-recommends jackd2" >&2
    exit 1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends jackd2 >/dev/null
fi
EXTRAS="cpu,train,dev" bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
