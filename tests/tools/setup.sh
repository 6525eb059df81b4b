#!/usr/bin/env bash
# Creates tests/tools/.venv with the pinned protocol peers the end-to-end
# service tests run (aioquic). Needs python3 with the venv module.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
echo "test tools venv ready: $here/.venv"
