"""Network latency: torch eager against ONNX Runtime, for one checkpoint (default: the shipped CPU one).

    python benchmarks/bench_onnx.py [--checkpoint model.pt] [--sizes 50x100 50x300 50x600] [--repeats 5]
                                    [--device cpu|cuda]

Both backends run :func:`tracks4d.network.inference.predict` (forward, points, depth, copy to numpy) on the same random
inputs (1, N, P, 3); after ``--warmup`` calls, the median of ``--repeats`` is reported with the speed-up
torch / onnx and the largest output difference. ``--device cuda`` uses CUDAExecutionProvider when onnxruntime-gpu
offers it. Prints a table; no asserts.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tracks4d.network.checkpoint import default_checkpoint, load_model
from tracks4d.network.inference import predict
from tracks4d.network.onnx_backend import OnnxNetwork, export_onnx


def median_seconds(network, inputs: torch.Tensor, warmup: int, repeats: int) -> float:
    """Median wall time of ``predict(network, inputs)`` (its copy to numpy synchronises CUDA)."""
    for _ in range(warmup):
        predict(network, inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(network, inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, help="default: the shipped checkpoint for --device")
    ap.add_argument("--sizes", nargs="+", default=["50x100", "50x300", "50x600"], help="N x P")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    checkpoint = args.checkpoint or default_checkpoint(args.device)
    model, _ = load_model(checkpoint, args.device)
    with tempfile.TemporaryDirectory() as tmp:
        net = OnnxNetwork(export_onnx(checkpoint, Path(tmp) / "model.onnx"), args.device)
    import onnxruntime

    print(f"{checkpoint.name}: torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
          f"{onnxruntime.__version__} ({net.providers[0]}), device {args.device}")
    print(f"{'N':>3s} {'P':>4s} {'torch ms':>9s} {'onnx ms':>9s} {'torch/onnx':>10s} {'max |diff|':>10s}")
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for size in args.sizes:
            n, p = (int(v) for v in size.split("x"))
            inputs = torch.randn(1, n, p, 3, generator=gen)
            inputs[..., 2] = (torch.rand(1, n, p, generator=gen) < 0.8).float()
            inputs[..., :2] *= inputs[..., 2:]
            inputs = inputs.to(args.device)
            t_torch = median_seconds(model, inputs, args.warmup, args.repeats)
            t_onnx = median_seconds(net, inputs, args.warmup, args.repeats)
            diff = max(float(np.abs(a - b).max()) for a, b in zip(predict(model, inputs), predict(net, inputs)))
            print(f"{n:3d} {p:4d} {1e3 * t_torch:9.1f} {1e3 * t_onnx:9.1f} {t_torch / t_onnx:10.2f} {diff:10.1e}",
                  flush=True)


if __name__ == "__main__":
    main()
