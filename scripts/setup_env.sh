#!/usr/bin/env bash
# Creates .venv (if missing) and installs benthicnet_hf with its test extra.
# torch/torchvision are pinned to the pair this project's machines carry on local disk.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# --no-cache-dir: where the pair is not on local disk, pip downloads torch's CUDA build (~3 GB of
# wheels) and would keep a second copy in its cache; a CI run once died of "No space left on device".
.venv/bin/python -m pip install -q --no-cache-dir "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q --no-cache-dir -e ".[test]"
