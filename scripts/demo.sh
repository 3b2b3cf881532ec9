#!/usr/bin/env bash
# Set up and run the main job on the bundled example. No trained checkpoint ships yet, so it first trains the small
# preset self-supervised on synthetic scenes for MINUTES (default 5) and prints its held-out accuracy against the
# untrained network; then it reconstructs examples/rendered_room.mp4 (our own render, 50 frames) with bundle
# adjustment and writes reconstruction.npz, points.ply, cameras.json, summary.png and tracks.mp4 to
# runs/demo/rendered_room/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
out=runs/demo
tracks4d info
tracks4d-train --data synthetic --preset small --out "$out" --minutes "${MINUTES:-5}" --steps 100000 \
  --curriculum-steps 100000 --batch-size 4 --val-every 0 --val-frames 22 --val-scenes 12 --val-tracks 100 "$@"
python benchmarks/eval_synthetic.py "$out/last.pt" --frames 22 50 --scenes 12
tracks4d reconstruct examples/rendered_room.mp4 -o "$out/rendered_room" --checkpoint "$out/last.pt" \
  --fx 511.103 --fy 511.103 --cx 321.836 --cy 240.850 --ba --ba-gamma auto
echo "open $out/rendered_room/summary.png and tracks.mp4; tracks4d view $out/rendered_room for the 3D viewer"
