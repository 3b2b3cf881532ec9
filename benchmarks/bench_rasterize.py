"""Rasteriser speed: forward + backward of :func:`tracks4d.splat.rasterize` per backend, in one run (issue 15).

    python benchmarks/bench_rasterize.py [--gaussians 20000] [--size 256x192] [--repeats 5] [--backends cpu,torch]

A random scene in front of the camera (means spread over the view, scales 0.5–3 % of the depth, colour + 3 more
feature channels like the refinement renders), loss = a weighted sum of every output. Prints the median seconds of
forward and of forward + backward after one warm-up call (numba compiles then), the ratio to the ``torch``
reference, and the largest difference of the image and the gradients from it. Timings swing on a busy machine:
run it alone, threads ≤ cores. On a GPU add ``gsplat``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracks4d.splat import rasterize  # noqa: E402


def scene(count: int, width: int, height: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    depth = 2 + 4 * torch.rand(count, generator=g)
    focal = 0.9 * width
    x = (torch.rand(count, generator=g) - 0.5) * width / focal * depth
    y = (torch.rand(count, generator=g) - 0.5) * height / focal * depth
    means = torch.stack([x, y, depth], 1)
    quats = torch.randn(count, 4, generator=g)
    scales = depth[:, None] * (0.005 + 0.025 * torch.rand(count, 3, generator=g))
    opacities = 0.1 + 0.85 * torch.rand(count, generator=g)
    features = torch.rand(count, 6, generator=g)
    k = torch.tensor([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1.0]])
    return [t.to(device) for t in (means, quats, scales, opacities, features)], k.to(device), torch.eye(4).to(device)


def run(backend: str, params, k, w2c, width: int, height: int):
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    t0 = time.perf_counter()
    out = rasterize(*leaves, k, w2c, width, height, backend=backend)
    forward = time.perf_counter() - t0
    weights = torch.linspace(0.5, 1.5, out.features.shape[-1], device=out.features.device)
    loss = (out.features * weights).sum() + out.alpha.sum() + 0.1 * out.depth.sum()
    loss.backward()
    if leaves[0].is_cuda:
        torch.cuda.synchronize()
    return forward, time.perf_counter() - t0, out, [p.grad for p in leaves]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gaussians", type=int, default=20000)
    ap.add_argument("--size", default="256x192")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backends", default="cpu,torch")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    params, k, w2c = scene(args.gaussians, width, height, args.device)
    print(f"{args.gaussians} Gaussians, {width}x{height}, {torch.get_num_threads()} torch threads, "
          f"device {args.device}")
    results = {}
    for backend in args.backends.split(","):
        run(backend, params, k, w2c, width, height)                   # warm-up (compilation, caches)
        times = [run(backend, params, k, w2c, width, height) for _ in range(args.repeats)]
        results[backend] = (statistics.median(t[0] for t in times), statistics.median(t[1] for t in times),
                            times[-1][2], times[-1][3])
    base = results.get("torch")
    print(f"{'backend':>8s} {'forward s':>10s} {'fwd+bwd s':>10s} {'× torch':>8s} {'max |Δimage|':>13s} "
          f"{'max |Δgrad| / max |grad|':>25s}")
    for backend, (fwd, total, out, grads) in results.items():
        if base is None or backend == "torch":
            print(f"{backend:>8s} {fwd:10.3f} {total:10.3f} {'':>8s}")
            continue
        diff = float((out.features - base[2].features).detach().abs().max())
        rel = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)) for a, b in zip(grads, base[3]))
        print(f"{backend:>8s} {fwd:10.3f} {total:10.3f} {base[1] / total:8.1f} {diff:13.2e} {rel:25.2e}")


if __name__ == "__main__":
    main()
