#!/usr/bin/env bash
# CI step: build the wheel, install it into a fresh venv and fine-tune from outside the clone, so
# that everything the package reads at run time (model-card templates, schemes, evaluate modules)
# is proven to ship as package data. Needs .venv (scripts/setup_env.sh).
#
# The fresh venv reuses .venv's installed dependencies (torch and friends) through a plain path in a
# .pth file: such paths are added to sys.path after the venv's own site-packages and their own .pth
# files are not processed, so .venv's editable install of benthicnet_hf is invisible there and
# `import benthicnet_hf` finds the wheel. Takes about a minute on 2 cores.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PY="$REPO/.venv/bin/python"

# build from a copy of the tracked (and not ignored) files: no build/ folder in the clone (files
# deleted but not yet committed are skipped)
mkdir "$WORK/src"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar cf - --ignore-failed-read) | tar xf - -C "$WORK/src"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" "$WORK/src"

"$PY" -m venv --without-pip "$WORK/venv"
SITE=$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$PY" -m pip install -q --no-deps --no-index --target "$SITE" "$WORK"/dist/benthicnet_hf-*.whl
"$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$SITE/reuse_dev_venv.pth"

cd "$WORK"  # outside the clone: nothing can be read from the source tree
BENTHICNET_WHEEL_PYTHON="$WORK/venv/bin/python" HF_HUB_OFFLINE=1 \
  "$PY" -m pytest "$REPO/tests/test_installed_wheel.py" -p no:cacheprovider -q --rootdir "$REPO"
