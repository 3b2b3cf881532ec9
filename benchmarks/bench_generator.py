"""Throughput of the synthetic scene generator (training.synthetic) on ONE CPU core.

    python benchmarks/bench_generator.py [--seconds 3] [--no-pin]

Prints windows/s of generate_window at (N, P) = (50, 100) and (22, 100), and scenes/s of generate_scene at N = 50
(all seeded tracks), each with its median time per call. BLAS/OpenMP thread counts are set to 1 before numpy is
imported and the process is pinned to one CPU (Linux; --no-pin leaves it free). No asserts on time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402  (after the thread settings)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from training.synthetic import generate_scene, generate_window  # noqa: E402


def rate(call, seconds: float) -> tuple[float, float, int]:
    """Run ``call(i)`` for i = 0, 1, … for about ``seconds`` → (calls per second, median ms per call, calls)."""
    call(10**6)                                                    # warm-up
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        call(len(times))
        times.append(time.perf_counter() - t)
    return len(times) / sum(times), 1e3 * float(np.median(times)), len(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="time spent on each measurement")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    args = ap.parse_args()
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cases = [
        ("generate_window N=50 P=100", "windows/s", lambda i: generate_window(i, 50, 100)),
        ("generate_window N=22 P=100", "windows/s", lambda i: generate_window(i, 22, 100)),
        ("generate_scene  N=50 (all)", "scenes/s ", lambda i: generate_scene(i)),
    ]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"numpy {np.__version__}, CPUs in use: {cpus}")
    for name, unit, call in cases:
        per_second, median_ms, count = rate(call, args.seconds)
        print(f"{name}: {per_second:7.1f} {unit}  (median {median_ms:.2f} ms, {count} calls)")


if __name__ == "__main__":
    main()
