#!/usr/bin/env bash
# Install salience with its test dependencies into .venv and run the test suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_install.sh dev
# Browser tests drive Debian's chromium; install it when missing (skipped cleanly otherwise).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "could not install chromium with apt-get; browser tests will be skipped"
fi
exec .venv/bin/python -m pytest -n 2 "$@"
