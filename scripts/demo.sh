#!/usr/bin/env bash
# Install salience into .venv and run the case study: `salience demo` (extra args pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_install.sh pretrained
exec .venv/bin/salience demo "$@"
