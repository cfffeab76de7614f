#!/usr/bin/env bash
# The main job on the bundled demo data, from a fresh clone, on a CPU in a few minutes:
# install → demo dataset → SSL smoke run → fine-tune + evaluate (vs. the label prior) → save →
# reload → pipeline → benthicnet-hf predict.
#   bash demo.sh                      # creates .venv (scripts/setup_env.sh) then runs the demo
#   SKIP_SETUP=1 PYTHON=python bash demo.sh -- --epochs 5   # use an existing environment
set -euo pipefail
cd "$(dirname "$0")"
if [ "${SKIP_SETUP:-0}" != "1" ]; then
  bash scripts/setup_env.sh
  PYTHON=.venv/bin/python
fi
PYTHON=${PYTHON:-.venv/bin/python}
[ "${1:-}" = "--" ] && shift
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}   # nothing in the demo needs the network
exec "$PYTHON" scripts/run_demo.py "$@"
