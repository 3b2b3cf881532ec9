"""GLOMAP (pycolmap ≥ 4 global mapping) on a COLMAP database, run by ``bench_reconstruction.py`` in a child process.

    python benchmarks/glomap_peer.py DATABASE IMAGE_DIR OUTPUT_DIR

Runs ``pycolmap.global_mapping`` (rotation averaging → track establishment → global positioning → bundle adjustment
→ retriangulation) on DATABASE, which must already hold features and matches. The intrinsics are trusted (the
PINHOLE camera the extraction wrote, from the rendered K): no ``calibrate_view_graph``, and BA keeps focal length,
principal point and extra parameters fixed — the same as the incremental COLMAP peer. CPU only, seeded.

The models land in OUTPUT_DIR/0, OUTPUT_DIR/1, … (written by ``global_mapping`` itself) and OUTPUT_DIR/timing.json
holds ``{"map_s": seconds of global_mapping alone, "n_models": …}``. The caller gives it a copy of the shared
database (global_mapping opens it read-write; in pycolmap 4.2.1 the table contents come out unchanged, only the
SQLite file bytes differ). It runs in its own process because a failed native check in COLMAP aborts the process
rather than raising: the caller records that as a failed row.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def glomap_options(seed: int = 0):
    import pycolmap

    options = pycolmap.GlobalPipelineOptions()
    options.random_seed = seed
    options.mapper.random_seed = seed
    ba = options.mapper.bundle_adjustment
    ba.refine_focal_length = False  # default True in GLOMAP (unlike what a known K calls for)
    ba.refine_principal_point = False
    ba.refine_extra_params = False  # default True
    ba.ceres.use_gpu = False
    options.mapper.global_positioning.use_gpu = False
    return options


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    import pycolmap

    pycolmap.logging.minloglevel = 2  # errors only
    database, images, output = (Path(a) for a in argv)
    output.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    models = pycolmap.global_mapping(database, images, output, glomap_options())
    seconds = time.perf_counter() - t
    (output / "timing.json").write_text(json.dumps({"map_s": seconds, "n_models": len(models)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
