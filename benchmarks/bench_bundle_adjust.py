"""Bundle-adjustment speed on CPU: 50 frames × 300 static (+ 50 dynamic) points, fixed K and refined focal.

    python benchmarks/bench_bundle_adjust.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_bundle_adjust import F, make_scene  # noqa: E402

from tracks4d.geometry.bundle_adjust import bundle_adjust  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cases = [
        ("fixed K", make_scene(n_outliers=20)[0], {"max_initial_error_px": 20.0}),
        ("refine focal (+10 %)", make_scene(focal_error=0.10)[0],
         {"refine_focal": True, "max_initial_error_px": 60.0}),
    ]
    for name, rec, kwargs in cases:
        for i in range(args.repeats):
            _, r = bundle_adjust(rec, **kwargs)
            focal = f"  f {r.focal_px:.1f} (true {F:.0f})" if r.refined_focal else ""
            print(f"{name:22s} run {i + 1}: {r.seconds:.3f} s  RMS {r.initial_rms_px:.2f} → {r.final_rms_px:.3f} px  "
                  f"{r.n_frames} frames × {r.n_points} points, {r.n_inliers}/{r.n_observations} obs, "
                  f"{r.iterations} it{focal}")


if __name__ == "__main__":
    main()
