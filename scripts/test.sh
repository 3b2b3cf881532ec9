#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the default test suite (slow tests deselected; -m slow runs them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
python -m pytest -q "$@"
