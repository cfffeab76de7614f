#!/usr/bin/env bash
# README command 2: install everything and run the test suite.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python -m pytest tests "$@"
