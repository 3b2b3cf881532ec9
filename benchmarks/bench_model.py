"""Forward latency and peak memory of each model preset (CPU; CUDA too when available).

    python benchmarks/bench_model.py [--presets paper small] [--sizes 24x225 50x300 50x900] [--repeats 3]

Each (preset, N, P) runs in a fresh subprocess so peak resident memory is its own. Prints a table; no asserts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def measure(preset: str, n: int, p: int, repeats: int, device: str, overrides: dict) -> dict:
    import resource

    import torch

    from tracks4d.network.model import ModelConfig, TracksTo4D

    torch.manual_seed(0)
    model = TracksTo4D(ModelConfig.preset(preset, **overrides)).to(device).eval()
    x = torch.randn(1, n, p, 3, device=device)
    x[..., 2] = 1.0
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times = []
    with torch.inference_mode():
        model(x[:, : min(n, 4), : min(p, 8)])  # warm-up
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for _ in range(repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            model(x)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"preset": preset, "N": n, "P": p, "device": device, "params": model.num_parameters(),
           "latency_s": min(times), "peak_rss_mb": peak, "forward_extra_mb": peak - base_rss}
    if device == "cuda":
        row["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["paper", "small"])
    ap.add_argument("--sizes", nargs="+", default=["24x225", "50x300", "50x900"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    ap.add_argument("--override", default="{}", help="JSON of ModelConfig fields to override, e.g. '{\"width\": 192}'")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        preset, n, p, repeats, device, overrides = json.loads(args.child)
        print(json.dumps(measure(preset, n, p, repeats, device, overrides)))
        return
    import torch

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'preset':7s} {'device':6s} {'N':>3s} {'P':>4s} {'params':>11s} {'latency s':>10s} {'peak RSS MB':>12s} "
          f"{'fwd extra MB':>12s} {'CUDA MB':>8s}")
    for device in devices:
        for preset in args.presets:
            for size in args.sizes:
                n, p = (int(v) for v in size.split("x"))
                child = json.dumps([preset, n, p, args.repeats if n * p < 40000 else 1, device,
                                    json.loads(args.override)])
                res = subprocess.run([sys.executable, __file__, "--child", child], capture_output=True, text=True)
                if res.returncode:
                    print(f"{preset:7s} {device:6s} {n:3d} {p:4d} failed: {res.stderr.strip().splitlines()[-1]}")
                    continue
                r = json.loads(res.stdout.strip().splitlines()[-1])
                print(f"{preset:7s} {device:6s} {n:3d} {p:4d} {r['params']:11,d} {r['latency_s']:10.3f} "
                      f"{r['peak_rss_mb']:12.0f} {r['forward_extra_mb']:12.0f} {r.get('cuda_peak_mb', 0):8.0f}",
                      flush=True)


if __name__ == "__main__":
    main()
