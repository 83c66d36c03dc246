#!/usr/bin/env bash
# Installs Debian's jackd2 (no recommends, no questions) when jackd is missing.
set -euo pipefail
command -v jackd >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
  echo "jackd is missing and this user cannot install it: apt-get install --no-install-recommends jackd2" >&2
  echo "(without root: see 'jackd without root' in README.md)" >&2
  exit 1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends jackd2 >/dev/null
