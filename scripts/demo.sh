#!/usr/bin/env bash
# Set up and run the main job on a bundled example: a short self-supervised training run of the small preset on
# synthetic scenes, evaluated on fixed held-out scenes (ATE, AbsRel) before and after. Outputs in runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
tracks4d info
tracks4d-train --data synthetic --preset small --out runs/demo --steps "${STEPS:-300}" --curriculum-steps 100 \
  --batch-size 4 --val-every 0 --val-scenes 4 --pretrain-max-steps 300 "$@"
