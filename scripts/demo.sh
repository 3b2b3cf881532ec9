#!/usr/bin/env bash
# Set up and run the main job: reconstruct the bundled example examples/rendered_room.mp4 (our own render,
# 50 frames) with bundle adjustment into runs/demo/rendered_room/ (reconstruction.npz, points.ply, cameras.json,
# summary.png, tracks.mp4) using the shipped checkpoint, then fits a dynamic Gaussian scene to it for REFINE_MINUTES
# (default 2; 0 skips it) into runs/demo/rendered_room/refine/ (videos from the input and novel cameras, held-out
# PSNR in metrics.json, a 3DGS PLY, contact_sheet.png). With TRAIN=1 (or when no checkpoint ships) it first trains
# the small preset self-supervised on synthetic scenes for MINUTES (default 5), prints its held-out accuracy against
# the untrained network, and reconstructs with that model instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
out=runs/demo
checkpoint=checkpoints/tracks4d-small.pt
tracks4d info
if [ "${TRAIN:-0}" = 1 ] || [ ! -f "$checkpoint" ]; then
  tracks4d-train --data synthetic --preset small --out "$out" --minutes "${MINUTES:-5}" --steps 100000 \
    --curriculum-steps 100000 --batch-size 4 --val-every 0 --val-frames 22 --val-scenes 12 --val-tracks 100 "$@"
  python benchmarks/eval_synthetic.py "$out/last.pt" --frames 22 50 --scenes 12
  checkpoint="$out/last.pt"
fi
refine=()
if [ "${REFINE_MINUTES:-2}" != 0 ]; then refine=(--refine --refine-minutes "${REFINE_MINUTES:-2}"); fi
tracks4d reconstruct examples/rendered_room.mp4 -o "$out/rendered_room" --checkpoint "$checkpoint" \
  --fx 511.103 --fy 511.103 --cx 321.836 --cy 240.850 --ba --ba-gamma auto "${refine[@]}"
echo "look at $out/rendered_room/summary.png, trajectories.png and tracks.mp4; 3D viewer: tracks4d view $out/rendered_room"
if [ ${#refine[@]} -gt 0 ]; then
  echo "dense 4D: $out/rendered_room/refine/contact_sheet.png, render_input_cameras.mp4, novel_orbit.mp4, metrics.json"
fi
