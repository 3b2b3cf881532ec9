#!/usr/bin/env bash
# Set up and run the main job on a bundled example: a short self-supervised training run of the small preset on
# synthetic scenes (MINUTES, default 5), its held-out accuracy (ATE, AbsRel) against the untrained network, and one
# reconstruction of a synthetic clip with ground truth. Everything lands in runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
out=runs/demo
tracks4d info
tracks4d-train --data synthetic --preset small --out "$out" --minutes "${MINUTES:-5}" --steps 100000 \
  --curriculum-steps 100000 --batch-size 4 --val-every 0 --val-frames 22 --val-scenes 12 --val-tracks 100 "$@"
python benchmarks/eval_synthetic.py "$out/last.pt" --frames 22 50 --scenes 12
python -c "from training.synthetic import SceneConfig, generate_scene
generate_scene(2026, SceneConfig(n_frames=22)).tracks.save('$out/example_tracks.npz')"
tracks4d check "$out/example_tracks.npz"
tracks4d predict "$out/example_tracks.npz" -o "$out/reconstruction.npz" --checkpoint "$out/last.pt"
tracks4d check "$out/reconstruction.npz"
