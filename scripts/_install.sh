#!/usr/bin/env bash
# Shared by scripts/demo.sh and scripts/test.sh: create .venv and install salience into it.
# Usage: source scripts/_install.sh EXTRAS   (e.g. "pretrained" or "dev")
set -euo pipefail
extras=${1:-}
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
quiet() { grep -v "is ignored: it is neither" || true; }
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | quiet
# torch first, pinned to the releases this project is tested with
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" 2>&1 | quiet
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}" 2>&1 | quiet
# torchattacks pins requests~=2.25, which drags the rest of the dev set (mlflow) back to releases
# that no longer import; its real needs (torch, numpy, scipy, requests) are already installed.
case ",$extras," in
  *,dev,*) .venv/bin/python -m pip install -q --no-deps "torchattacks>=3.5" 2>&1 | quiet ;;
esac
