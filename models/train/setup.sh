#!/usr/bin/env bash
# Creates models/train/.venv with the pinned training requirements.
# Needs python3 with the venv module (Debian: apt-get install python3-venv).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
echo "training venv ready: $here/.venv (run: $here/.venv/bin/python $here/train.py)"
