#!/usr/bin/env bash
# Create .venv (if needed) and install tracks4d with its CPU extras. Torch is installed first, pinned to the
# local CPU wheel, so the project's torch range never pulls the multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
python -m pip install -q -e ".[cpu,view,service,dev]"
