#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint the container files (scripts/check_docker.sh) and run the default test suite
# (slow tests deselected; -m slow runs them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
bash scripts/check_docker.sh
python -m pytest -q "$@"
