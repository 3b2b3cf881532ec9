"""Render the bundled example clip (examples/rendered_room.mp4): 50 frames at 640×480 of a textured room with a
sliding box and a flying card, filmed by a handheld camera (tracks4d.evaluation.render, seed 0). Ours to redistribute
(Apache-2.0). Prints the true intrinsics, to pass as --fx/--fy/--cx/--cy.

    python examples/make_example.py [--out examples/rendered_room.mp4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tracks4d.io.overlay import save_video
from tracks4d.evaluation.render import render_scene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).with_name("rendered_room.mp4")))
    args = ap.parse_args()
    scene = render_scene(0, n_frames=50, size=(640, 480), noise_std=2.0)
    save_video(scene.frames, args.out, fps=10)
    k = scene.intrinsics
    print(f"wrote {args.out}: --fx {k[0, 0]:.3f} --fy {k[1, 1]:.3f} --cx {k[0, 2]:.3f} --cy {k[1, 2]:.3f}")


if __name__ == "__main__":
    main()
