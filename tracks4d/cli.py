"""The ``tracks4d`` command line."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points
import time
from pathlib import Path


from . import __version__
from .network.checkpoint import CheckpointError, default_checkpoint
from .tracking.cotracker import CoTrackerUnavailable
from .io.colmap import write_colmap_text
from .io.export import write_outputs
from .evaluation.metrics import evaluate_reconstruction
from .io.overlay import draw_tracks, save_contact_sheet, save_video
from .pipeline import ReconstructOptions, run_pipeline
from .tracking import TRACKERS, TrackerConfig, track_clip
from .io.video import VideoError, read_video
from .io.viewer import resolve_reconstruction
from .contracts import ContractError, Reconstruction, TrackSet, load_any
from .devices import resolve_device
from .network.inference import run_network
from .network.model import PRESETS, TracksTo4D
from .network.backends import BACKENDS, load_backend
from .network.onnx_backend import DEFAULT_OPSET, OnnxUnavailable, export_onnx


def _info(args: argparse.Namespace) -> int:
    print(f"tracks4d {__version__}")
    for name, cfg in PRESETS.items():
        print(f"preset {name:6s}: {TracksTo4D(cfg).num_parameters():>11,d} parameters  "
              f"(width {cfg.width}, {cfg.layers} layers, {cfg.heads}×{cfg.head_dim} heads, MLP {cfg.mlp_dim})")
    return 0


def _check(args: argparse.Namespace) -> int:
    """Validate a track set or reconstruction file and print a one-line summary."""
    path = Path(args.file)
    obj = load_any(path)
    if isinstance(obj, Reconstruction):
        rec = obj
        print(f"{path}: reconstruction, {rec.n_frames} frames, {rec.n_points} points, "
              f"{rec.bases.shape[0]} bases")
    else:
        ts = obj
        print(f"{path}: track set, {ts.n_frames} frames, {ts.n_points} tracks, "
              f"{ts.visible.mean():.1%} visible, intrinsics {'yes' if ts.intrinsics is not None else 'no'}, "
              f"ground truth {'yes' if ts.ground_truth is not None else 'no'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    """Run the network once on a track file and write reconstruction.npz (no BA, no fine-tuning)."""
    device = resolve_device(args.device)
    model, _ = load_backend(args.checkpoint or default_checkpoint(device), args.backend, device)
    rec = run_network(model, TrackSet.load(args.tracks), device)
    rec.save(args.output)
    print(f"wrote {args.output}: {rec.n_frames} frames, {rec.n_points} points, "
          f"network {rec.meta['timings']['network_s']:.2f} s")
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    """Checkpoint → fp32 ONNX graph (dynamic frames and tracks) with the model config in its metadata."""
    out = Path(args.output)
    if out.suffix != ".onnx":
        raise ValueError(f"{out}: the output must be a .onnx file")
    checkpoint = args.checkpoint or default_checkpoint("cpu")
    export_onnx(checkpoint, out, opset=args.opset)
    print(f"wrote {out}: {checkpoint} as ONNX opset {args.opset}, {out.stat().st_size / 2**20:.1f} MiB")
    return 0


def _export_colmap(args: argparse.Namespace) -> int:
    """OUT/reconstruction.npz (or the .npz) → a COLMAP text model in OUT/colmap/ (or --output)."""
    path = resolve_reconstruction(args.output)
    rec = Reconstruction.load(path)
    folder = write_colmap_text(rec, args.colmap_dir or path.parent / "colmap")
    n_cameras, n_points = (sum(1 for line in (folder / name).read_text().splitlines() if not line.startswith("#"))
                           for name in ("cameras.txt", "points3D.txt"))
    print(f"wrote {folder}/: COLMAP text model, {n_cameras} camera{'s' * (n_cameras != 1)}, {rec.n_frames} images, "
          f"{n_points} static points")
    return 0


def _track(args: argparse.Namespace) -> int:
    """Video or frame folder → track .npz (input pixels) plus an overlay mp4 and PNG contact sheet."""
    out = Path(args.output)
    if out.suffix != ".npz":
        raise ValueError(f"{out}: the output must be a .npz file")
    start = time.perf_counter()
    clip = read_video(args.video, stride=args.stride, max_frames=args.max_frames, long_side=args.long_side)
    decoded = time.perf_counter()
    config = TrackerConfig(grid=args.grid, query_every=args.query_every)
    ts = track_clip(clip, config, tracker=args.tracker, checkpoint=args.tracker_checkpoint, device=args.device,
                    progress=not args.no_progress)
    tracked = time.perf_counter()
    ts.save(out)
    fps = f"{clip.fps:.2f} fps" if clip.fps else "fps unknown"
    print(f"wrote {out}: {ts.n_frames} frames (source frames {clip.frame_indices[0]}–{clip.frame_indices[-1]}, "
          f"{fps}; {clip.size[0]}x{clip.size[1]} working, input {clip.source_size[0]}x{clip.source_size[1]}), "
          f"{ts.n_points} tracks, "
          f"{ts.visible.mean():.1%} visible; "
          f"decode {decoded - start:.2f} s, track {tracked - decoded:.2f} s")
    if not args.no_overlay:
        drawn = draw_tracks(clip.frames, clip.to_working_pixels(ts.tracks), ts.visible)
        video = save_video(drawn, out.with_suffix(".overlay.mp4"), clip.fps or 10.0)
        sheet = save_contact_sheet(drawn, out.with_suffix(".overlay.png"))
        print(f"overlay: {video} and {sheet}")
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    """INPUT (video, frame folder or track .npz) → OUT/ with reconstruction.npz and pictures."""
    refine_config = _refine_config(args) if args.refine else None
    if args.refine and Path(args.input).suffix == ".npz":
        raise ValueError("--refine needs the video: the input is a track file (reconstruct the video, or run "
                         "tracks4d refine OUT --video V)")
    opts = ReconstructOptions(
        checkpoint=args.checkpoint, device=resolve_device(args.device), fx=args.fx, fy=args.fy, cx=args.cx, cy=args.cy,
        fov_deg=args.fov_deg, tracker=args.tracker, tracker_checkpoint=args.tracker_checkpoint, grid=args.grid,
        query_every=args.query_every, stride=args.stride, max_frames=args.max_frames, long_side=args.long_side,
        max_memory_gb=args.max_memory, bundle_adjust=args.ba,
        ba_gamma=None if args.ba_gamma == "auto" else float(args.ba_gamma), camera_init=args.camera_init,
        finetune_steps=args.finetune, backend=args.backend, precision=args.precision,
        moving_checkpoint=args.moving_checkpoint, refine_moving=args.refine_moving, progress=not args.no_progress)
    result = run_pipeline(args.input, opts)
    rec, clip = result.reconstruction, None if result.clip is None else result.clip.decoded()
    frames = clip.frames if clip is not None else None
    frame_tracks = clip.to_working_pixels(rec.tracks) if clip is not None else None
    if Path(args.input).suffix != ".npz":
        rec.meta["input"] = str(Path(args.input).resolve())          # for a later `tracks4d refine OUT`
    fps = clip.fps if clip and clip.fps else 10.0
    paths = write_outputs(rec, args.output, frames, frame_tracks, fps=fps)
    stages = ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in result.timings.items())
    print(f"reconstructed {rec.n_frames} frames, {rec.n_points} tracks → {Path(args.output)}/ "
          f"({', '.join(p.name for p in paths.values())}); {stages}")
    if refine_config is not None:
        _run_refine(rec, frames, Path(args.output) / "refine", refine_config, args, fps)
    return 0


def _refine_config(args: argparse.Namespace):
    from .gaussians import RefineConfig

    for name in ("refine_minutes", "refine_long_side", "refine_bases", "refine_steps"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
    return RefineConfig(minutes=args.refine_minutes, steps=args.refine_steps, long_side=args.refine_long_side,
                        bases=args.refine_bases, motion=args.motion, backend=args.refine_backend,
                        device=resolve_device(args.device))


def _run_refine(rec: Reconstruction, frames, out: Path, config, args: argparse.Namespace, fps: float) -> None:
    from .gaussians import refine_gaussians, write_refine_outputs

    result = refine_gaussians(rec, frames, config, progress=not args.no_progress)
    paths = write_refine_outputs(out, result.scene, result.data, result.metrics, fps, args.refine_backend)
    m = result.metrics
    print(f"refined: {m['gaussians']} Gaussians ({m['moving_gaussians']} moving), {m['steps']} steps in "
          f"{m['seconds']['total']:.0f} s; held-out PSNR {m['held_out']['psnr']:.2f} dB, SSIM "
          f"{m['held_out']['ssim']:.3f} (frames {', '.join(map(str, m['held_out']['frames']))}) → {out}/ "
          f"({', '.join(p.name for p in paths.values())})")


def _refine(args: argparse.Namespace) -> int:
    """OUT (a reconstruction of a video) → OUT/refine/: a dynamic Gaussian scene fitted to the video."""
    config = _refine_config(args)
    path = resolve_reconstruction(args.output)
    rec = Reconstruction.load(path)
    video = args.video or rec.meta.get("input")
    if video is None:
        raise ValueError(f"{path}: no video recorded with this reconstruction: give --video")
    options = rec.meta.get("options", {})
    clip = read_video(video, stride=options.get("stride", 1), max_frames=options.get("max_frames"),
                      long_side=options.get("long_side", 640))
    if clip.frames.shape[0] != rec.n_frames:
        raise ValueError(f"{video}: decodes to {clip.frames.shape[0]} frames, the reconstruction has "
                         f"{rec.n_frames}: give the video it was made from")
    _run_refine(rec, clip.frames, Path(args.refine_dir) if args.refine_dir else path.parent / "refine", config,
                args, clip.fps or 10.0)
    return 0


def _add_refine_options(parser: argparse.ArgumentParser) -> None:
    """Options of the Gaussian refinement (``tracks4d refine``, and ``reconstruct --refine``)."""
    from .gaussians.optimize import MOTIONS

    parser.add_argument("--refine-minutes", type=float, default=10.0, help="time budget of the optimisation")
    parser.add_argument("--refine-steps", type=int, help="stop after this many steps (default: time only)")
    parser.add_argument("--refine-long-side", type=int,
                        help="working resolution, long side in px (default: 256 on the CPU, the video's on a GPU)")
    parser.add_argument("--refine-bases", type=int, default=10, help="motion bases B")
    parser.add_argument("--motion", choices=MOTIONS, default="flat",
                        help="moving Gaussians follow B shared bases (flat) or a tree of motion nodes (hierarchical)")
    parser.add_argument("--refine-backend", choices=("auto", "cpu", "torch", "gsplat"), default="auto",
                        help="rasteriser: numba on the CPU, the pure-torch reference, or gsplat on CUDA")


def _eval(args: argparse.Namespace) -> int:
    """Accuracy of a reconstruction against the ground truth carried by a track file."""
    rec = Reconstruction.load(args.prediction)
    gt_tracks = TrackSet.load(args.ground_truth)
    if gt_tracks.ground_truth is None:
        raise ValueError(f"{args.ground_truth}: has no ground truth (gt_* fields or the official Ms_all / "
                         f"GT_depth_tracks_all / GT_mask_tracks_all)")
    if (gt_tracks.n_frames, gt_tracks.n_points) != (rec.n_frames, rec.n_points):
        raise ValueError(f"prediction has {rec.n_frames} frames × {rec.n_points} tracks, ground truth "
                         f"{gt_tracks.n_frames} × {gt_tracks.n_points}")
    for name, value in evaluate_reconstruction(rec, gt_tracks.ground_truth).items():
        print(f"{name:24s} {value:.6g}")
    return 0


def _view(args: argparse.Namespace) -> int:
    """Serve the interactive 3D viewer of OUT (a folder holding reconstruction.npz, or the .npz) until Ctrl-C."""
    from .io.viewer import serve

    try:
        serve(args.output, host=args.host, port=args.port)
    except ImportError as exc:  # viser is an optional extra
        print(f"tracks4d: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _add_plugin_commands(sub) -> None:
    """Commands other packages register under the ``tracks4d.commands`` entry point (``serve`` from ``service``):
    each is ``register(subparsers)``. One whose package cannot be imported still appears and says what to
    install."""
    for entry in entry_points(group="tracks4d.commands"):
        try:
            entry.load()(sub)
        except ImportError as exc:
            message = f"'{entry.name}' needs an optional extra (pip install 'tracks4d[{entry.name}]'): {exc}"
            sub.add_parser(entry.name, help=f"unavailable: {message}").set_defaults(
                func=lambda args, message=message: print(f"tracks4d: error: {message}", file=sys.stderr) or 2)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracks4d", description=__doc__)
    p.add_argument("--version", action="version", version=f"tracks4d {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions and model presets").set_defaults(func=_info)
    c = sub.add_parser("check", help="validate a track set or reconstruction .npz")
    c.add_argument("file")
    c.set_defaults(func=_check)
    t = sub.add_parser("track", help="video or frame folder → tracks .npz with an overlay to judge them")
    t.add_argument("video", help="mp4/mov/avi/mkv/webm file or a folder of frames")
    t.add_argument("-o", "--output", required=True, help="tracks .npz to write")
    t.add_argument("--stride", type=int, default=1, help="use every k-th frame")
    t.add_argument("--max-frames", type=int, help="use at most this many frames (after --stride)")
    t.add_argument("--long-side", type=int, default=640, help="working resolution: long side in pixels")
    t.add_argument("--grid", type=int, default=15, help="G of the G×G query grid")
    t.add_argument("--query-every", type=int, default=20, help="frames between query grids")
    t.add_argument("--tracker", choices=TRACKERS, default="lk", help="built-in LK (default) or CoTracker")
    t.add_argument("--tracker-checkpoint", help="local CoTracker checkpoint (with --tracker cotracker)")
    t.add_argument("--device", default="cpu", help="device for CoTracker")
    t.add_argument("--no-overlay", action="store_true", help="skip the overlay mp4 and PNG")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_track)
    rc = sub.add_parser("reconstruct", help="video, frame folder or track .npz → reconstruction + pictures")
    rc.add_argument("input", help="video file, folder of frames, or track .npz")
    rc.add_argument("-o", "--output", required=True, help="output folder")
    rc.add_argument("--checkpoint", help="model checkpoint (.pt; default: the shipped one for --device)")
    rc.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    rc.add_argument("--backend", choices=("auto",) + BACKENDS, default="torch",
                    help="run the network in torch or ONNX Runtime (--checkpoint may then be a .onnx file); auto: "
                         "ONNX Runtime on the CPU unless fine-tuning (pays off in a warm process, not a one-shot run)")
    rc.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                    help="the torch network's precision; auto: bf16 where the CPU/GPU has native bf16 (1.5× faster "
                         "on an AVX-512 BF16 CPU), else fp32")
    for name in ("fx", "fy", "cx", "cy"):
        rc.add_argument(f"--{name}", type=float, help=f"intrinsics {name} in input pixels")
    rc.add_argument("--fov-deg", type=float, help="horizontal field of view (instead of --fx)")
    rc.add_argument("--tracker", choices=TRACKERS, default="lk")
    rc.add_argument("--tracker-checkpoint")
    rc.add_argument("--grid", type=int, default=15)
    rc.add_argument("--query-every", type=int, default=20)
    rc.add_argument("--stride", type=int, default=1)
    rc.add_argument("--max-frames", type=int)
    rc.add_argument("--long-side", type=int, default=640)
    rc.add_argument("--max-memory", type=float, metavar="GB",
                    help="read every k-th frame of a video whose estimated peak memory would pass GB (the stride "
                         "chosen is in meta['memory'] and the verdict)")
    rc.add_argument("--ba", action=argparse.BooleanOptionalAction, default=False, help="bundle adjustment")
    rc.add_argument("--ba-gamma", default="auto",
                    help="tracks with γ below this are static ('auto': 4 × the clip's noise level over the focal)")
    rc.add_argument("--camera-init", choices=("auto", "network"), default="auto",
                    help="camera seed: the network's or the tracks' cameras, whichever more tracks fit as static "
                         "(auto), or the network's only")
    rc.add_argument("--finetune", type=int, default=0, metavar="N", help="fine-tune N steps on this clip")
    rc.add_argument("--moving-checkpoint", help="geometry-conditioned network that places moving points (default: "
                                                "the shipped one; 'none': the first network's points)")
    rc.add_argument("--refine-moving", action=argparse.BooleanOptionalAction, default=True,
                    help="per-clip refinement of the moving points' trajectories (cameras fixed)")
    rc.add_argument("--refine", action="store_true",
                    help="then fit a dynamic Gaussian scene to the video (OUT/refine/; see tracks4d refine)")
    _add_refine_options(rc)
    rc.add_argument("--no-progress", action="store_true")
    rc.set_defaults(func=_reconstruct)
    rf = sub.add_parser("refine", help="reconstruction of a video → dense 4D Gaussians fitted to it (OUT/refine/)")
    rf.add_argument("output", metavar="OUT", help="output folder holding reconstruction.npz, or the .npz itself")
    rf.add_argument("--video", help="the video (or frame folder) it was made from (default: the recorded one)")
    rf.add_argument("-o", "--output", dest="refine_dir", metavar="DIR", help="folder to write (default: OUT/refine)")
    rf.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    _add_refine_options(rf)
    rf.add_argument("--no-progress", action="store_true")
    rf.set_defaults(func=_refine)
    ev = sub.add_parser("eval", help="ATE, RPE, depth AbsRel/δ of PRED.npz against GT.npz (track file with GT)")
    ev.add_argument("prediction")
    ev.add_argument("ground_truth")
    ev.set_defaults(func=_eval)
    v = sub.add_parser("view", help="interactive 3D viewer of a reconstruction in the browser (needs viser)")
    v.add_argument("output", metavar="OUT", help="output folder holding reconstruction.npz, or the .npz itself")
    v.add_argument("--host", default="127.0.0.1", help="address to serve on (default: loopback only)")
    v.add_argument("--port", type=int, default=8080)
    v.set_defaults(func=_view)
    r = sub.add_parser("predict", help="one network pass on a track .npz → reconstruction.npz")
    r.add_argument("tracks")
    r.add_argument("-o", "--output", required=True)
    r.add_argument("--checkpoint", help="model checkpoint (.pt; default: the shipped one for --device)")
    r.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    r.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="run the network in torch or ONNX Runtime (--checkpoint may then be a .onnx file)")
    r.set_defaults(func=_predict)
    x = sub.add_parser("export-onnx", help="checkpoint → ONNX model for the onnx backend (ONNX Runtime)")
    x.add_argument("checkpoint", nargs="?", help="model checkpoint (.pt; default: the shipped CPU one)")
    x.add_argument("-o", "--output", required=True, help=".onnx file to write")
    x.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset version (14–20)")
    x.set_defaults(func=_export_onnx)
    cm = sub.add_parser("export-colmap", help="reconstruction → COLMAP text model (cameras, images, static points)")
    cm.add_argument("output", metavar="OUT", help="output folder holding reconstruction.npz, or the .npz itself")
    cm.add_argument("-o", "--output", dest="colmap_dir", metavar="DIR", help="folder to write (default: OUT/colmap)")
    cm.set_defaults(func=_export_colmap)
    _add_plugin_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ContractError, CheckpointError, VideoError, CoTrackerUnavailable, OnnxUnavailable, ValueError) as exc:
        print(f"tracks4d: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
