"""Procedural renderer throughput on one core at 256x256 (cv2/torch threads = 1).

    python benchmarks/renderer_speed.py [--n 200] [--ids 10] [--size 256]

Identities are cached (as in a dataset run: many images per identity); the identity build time
(shape + texture atlas) is reported separately. Throughput is given in wall-clock and in process
CPU time (the machine is shared; CPU time is what one dedicated core would take). Baseline in the
same run: the same renders with the pure-numpy rasteriser (``--baseline-n`` images), reported as a
speed-up ratio. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from dmsfactory.conditions import ACCESSORIES, LIGHTING  # noqa: E402
from dmsfactory.generators.procedural import ProceduralConfig, example_plan_entry, render  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--ids", type=int, default=10)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--supersample", type=int, default=1)
    ap.add_argument("--baseline-n", type=int, default=50)
    a = ap.parse_args()
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:
        pass
    rng = np.random.default_rng(0)
    cfg = ProceduralConfig(supersample=a.supersample)
    entries = []
    for i in range(a.n):
        k = i % a.ids
        entries.append(example_plan_entry(
            identity_seed=1000 + k, sample_seed=i, lighting=LIGHTING[i % len(LIGHTING)], accessory=ACCESSORIES[i % len(ACCESSORIES)],
            identity_params={"sex": ("female", "male")[k % 2], "age": 20 + 5 * k, "skin_tone": 1 + k % 6},
            camera={"image_size": a.size}, head_pose_car={"yaw": float(rng.uniform(-45, 45)), "pitch": float(rng.uniform(-15, 15))},
            state={"eye_openness_left": float(rng.uniform(0, 1)), "eye_openness_right": float(rng.uniform(0, 1)), "mouth_open": float(rng.uniform(0, 1))},
            phone=({"hand": "left", "use": "call"} if i % 7 == 0 else None)))
    t0 = time.perf_counter()
    for e in entries[: a.ids]:
        render(e, cfg)
    t_ids = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    for e in entries:
        render(e, cfg)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    res = {"size": a.size, "supersample": a.supersample, "images": a.n,
           "images_per_s_cpu_one_core": round(a.n / dc, 1), "images_per_s_wall": round(a.n / dt, 1),
           "ms_cpu_per_image": round(1000 * dc / a.n, 2), "identity_build_s_each_incl_first_render": round(t_ids / a.ids, 3),
           "target_images_per_s": 100}
    if a.baseline_n > 0:
        import dmsfactory.generators.procedural.raster as RA

        R = sys.modules["dmsfactory.generators.procedural.render"]
        fast = R.rasterize
        R.rasterize = RA.rasterize_numpy
        try:
            c0 = time.process_time()
            for e in entries[: a.baseline_n]:
                render(e, cfg)
            dcb = time.process_time() - c0
        finally:
            R.rasterize = fast
        res["baseline_numpy_raster_images_per_s_cpu"] = round(a.baseline_n / dcb, 1)
        res["speedup_vs_numpy_raster"] = round((a.n / dc) / (a.baseline_n / dcb), 2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
