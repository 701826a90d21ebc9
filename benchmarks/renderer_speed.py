"""Procedural renderer throughput on one core at 256x256 (cv2/torch threads = 1), against a baseline
renderer measured in the same run.

    python benchmarks/renderer_speed.py [--n 200] [--ids 10] [--size 256] [--rounds 3]
                                        [--baseline-src /work/main/src] [--baseline-n 0]

Identities are cached (as in a dataset run: many images per identity); the identity build time (face
model shape + texture atlas + hair) is reported separately. Throughput is process CPU time (the
machine is shared; CPU time is what one dedicated core would take) and wall clock.

Same-run baseline: with ``--baseline-src`` (another checkout's ``src``, e.g. the renderer before the
face model), each round runs this checkout's renderer and the baseline's in fresh worker processes
one after the other on the same plan entries, so load on a shared machine hits both alike; the ratio
is per round (median over rounds). ``--baseline-n`` additionally times this renderer with the pure-numpy
rasteriser. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve()
SRC = str(HERE.parents[1] / "src")


def entries(n: int, ids: int, size: int):
    import numpy as np

    from dmsfactory.conditions import ACCESSORIES, LIGHTING
    from dmsfactory.generators.procedural import example_plan_entry

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        k = i % ids
        out.append(example_plan_entry(
            identity_seed=1000 + k, sample_seed=i, lighting=LIGHTING[i % len(LIGHTING)], accessory=ACCESSORIES[i % len(ACCESSORIES)],
            identity_params={"sex": ("female", "male")[k % 2], "age": 20 + 5 * k, "skin_tone": 1 + k % 6},
            camera={"image_size": size}, head_pose_car={"yaw": float(rng.uniform(-45, 45)), "pitch": float(rng.uniform(-15, 15))},
            state={"eye_openness_left": float(rng.uniform(0, 1)), "eye_openness_right": float(rng.uniform(0, 1)), "mouth_open": float(rng.uniform(0, 1))},
            phone=({"hand": "left", "use": "call"} if i % 7 == 0 else None)))
    return out


def worker(a) -> dict:
    """Time one renderer (the ``--src`` tree) in this process."""
    sys.path.insert(0, a.src)
    import cv2

    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:
        pass
    import importlib

    from dmsfactory.generators.procedural import ProceduralConfig, render

    R = importlib.import_module("dmsfactory.generators.procedural.render")
    cfg = ProceduralConfig(supersample=a.supersample)
    es = entries(a.n, a.ids, a.size)
    t0 = time.perf_counter()
    for e in es[: a.ids]:
        render(e, cfg)
    t_ids = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    for e in es:
        render(e, cfg)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    res = {"renderer_version": R.RENDERER_VERSION, "src": a.src, "images": a.n, "cpu_s": dc, "wall_s": dt,
           "identity_build_s_each_incl_first_render": round(t_ids / a.ids, 3)}
    if a.baseline_n > 0:
        import dmsfactory.generators.procedural.raster as RA

        fast = R.rasterize
        R.rasterize = RA.rasterize_numpy
        try:
            c0 = time.process_time()
            for e in es[: a.baseline_n]:
                render(e, cfg)
            res["numpy_raster_cpu_s"] = time.process_time() - c0
        finally:
            R.rasterize = fast
    return res


def run_worker(src: str, a) -> dict:
    cmd = [sys.executable, str(HERE), "--worker", "--src", src, "--n", str(a.n), "--ids", str(a.ids), "--size", str(a.size),
           "--supersample", str(a.supersample), "--baseline-n", str(a.baseline_n if src == SRC else 0)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": src}).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--ids", type=int, default=10)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--supersample", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline-src", default=None, help="another checkout's src: its renderer is timed in the same run")
    ap.add_argument("--baseline-n", type=int, default=0, help="also time this renderer with the numpy rasteriser on N images")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--src", default=SRC, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a)))
        return
    import numpy as np

    rounds = []
    for _ in range(max(1, a.rounds)):
        r = {"this": run_worker(SRC, a)}
        if a.baseline_src:
            r["baseline"] = run_worker(a.baseline_src, a)
        rounds.append(r)
    ips = [a.n / r["this"]["cpu_s"] for r in rounds]
    res = {"size": a.size, "supersample": a.supersample, "images_per_round": a.n, "rounds": len(rounds),
           "renderer_version": rounds[0]["this"]["renderer_version"],
           "images_per_s_cpu_one_core": round(float(np.median(ips)), 1), "images_per_s_cpu_each_round": [round(x, 1) for x in ips],
           "images_per_s_wall_each_round": [round(a.n / r["this"]["wall_s"], 1) for r in rounds],
           "ms_cpu_per_image": round(1000 / float(np.median(ips)), 2),
           "identity_build_s_each_incl_first_render": rounds[0]["this"]["identity_build_s_each_incl_first_render"],
           "target_images_per_s": 100}
    if a.baseline_src:
        bips = [a.n / r["baseline"]["cpu_s"] for r in rounds]
        ratio = [x / y for x, y in zip(ips, bips)]
        res.update({"baseline_src": a.baseline_src, "baseline_renderer_version": rounds[0]["baseline"]["renderer_version"],
                    "baseline_images_per_s_cpu_each_round": [round(x, 1) for x in bips],
                    "baseline_images_per_s_cpu_one_core": round(float(np.median(bips)), 1),
                    "ratio_vs_baseline_each_round": [round(x, 3) for x in ratio], "ratio_vs_baseline": round(float(np.median(ratio)), 3)})
    if a.baseline_n > 0:
        nb = [a.baseline_n / r["this"]["numpy_raster_cpu_s"] for r in rounds]
        res["numpy_raster_images_per_s_cpu"] = round(float(np.median(nb)), 1)
        res["speedup_vs_numpy_raster"] = round(float(np.median(ips)) / float(np.median(nb)), 2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
