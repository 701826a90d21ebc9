"""Procedural renderer throughput on one core at 256x256 (cv2/torch threads = 1), against a baseline
renderer measured in the same run, image by image.

    python benchmarks/renderer_speed.py [--n 200] [--ids 10] [--size 256] [--rounds 2]
                                        [--baseline-src /work/main/src] [--baseline-n 0]

Identities are cached (as in a dataset run: many images per identity); the identity build time (face
model shape + texture atlas + hair) is reported separately. Throughput is process CPU time (the
machine is shared; CPU time is what one dedicated core would take).

Same-run baseline: ``--baseline-src`` names another checkout's ``src`` (e.g. the renderer before the
face model); its ``generators/procedural`` package is copied to a temporary directory and imported
under another name in this process, and the two renderers render the same plan entries alternately,
image by image (who goes first alternates too), so a shared machine's load hits both alike. The
baseline package may import only modules whose code both trees share (``dmsfactory.conditions``,
``dmsfactory.sample``, ...). ``--baseline-n`` additionally times this renderer with the pure-numpy
rasteriser. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from dmsfactory.conditions import ACCESSORIES, LIGHTING  # noqa: E402
from dmsfactory.generators.procedural import ProceduralConfig, example_plan_entry, render  # noqa: E402


def entries(n: int, ids: int, size: int) -> list[dict]:
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


def baseline_renderer(src: str):
    """The ``render`` function of another tree's procedural package, imported under another name."""
    pkg = Path(src) / "dmsfactory" / "generators" / "procedural"
    if not (pkg / "__init__.py").is_file():
        raise SystemExit(f"--baseline-src {src}: no dmsfactory/generators/procedural package there")
    tmp = Path(tempfile.mkdtemp(prefix="renderer_baseline_"))
    shutil.copytree(pkg, tmp / "procedural_baseline", ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(tmp))
    mod = importlib.import_module("procedural_baseline")
    version = importlib.import_module("procedural_baseline.render").RENDERER_VERSION
    return mod.render, version


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--ids", type=int, default=10)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--supersample", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline-src", default=None, help="another checkout's src: its renderer is timed in the same run")
    ap.add_argument("--baseline-n", type=int, default=0, help="also time this renderer with the numpy rasteriser on N images")
    a = ap.parse_args()
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:
        pass
    R = importlib.import_module("dmsfactory.generators.procedural.render")
    cfg = ProceduralConfig(supersample=a.supersample)
    es = entries(a.n, a.ids, a.size)
    renderers = {"this": lambda e: render(e, cfg)}
    base_version = None
    if a.baseline_src:
        base_render, base_version = baseline_renderer(a.baseline_src)
        renderers["baseline"] = lambda e: base_render(e, cfg)
    t_ids = {}
    for k, fn in renderers.items():  # identity builds (and numba compilation) outside the timing
        t0 = time.perf_counter()
        for e in es[: a.ids]:
            fn(e)
        t_ids[k] = (time.perf_counter() - t0) / a.ids
    cpu = {k: [] for k in renderers}
    for _ in range(max(1, a.rounds)):
        tot = {k: 0.0 for k in renderers}
        for i, e in enumerate(es):
            order = list(renderers) if i % 2 == 0 else list(renderers)[::-1]
            for k in order:
                c0 = time.process_time()
                renderers[k](e)
                tot[k] += time.process_time() - c0
        for k in renderers:
            cpu[k].append(tot[k])
    ips = [a.n / c for c in cpu["this"]]
    res = {"size": a.size, "supersample": a.supersample, "images_per_round": a.n, "rounds": len(ips),
           "renderer_version": R.RENDERER_VERSION, "images_per_s_cpu_one_core": round(float(np.median(ips)), 1),
           "images_per_s_cpu_each_round": [round(x, 1) for x in ips], "ms_cpu_per_image": round(1000 / float(np.median(ips)), 2),
           "identity_build_s_each_incl_first_render": round(t_ids["this"], 3), "target_images_per_s": 100}
    if a.baseline_src:
        bips = [a.n / c for c in cpu["baseline"]]
        ratio = [x / y for x, y in zip(ips, bips)]
        res.update({"baseline_src": a.baseline_src, "baseline_renderer_version": base_version,
                    "baseline_images_per_s_cpu_each_round": [round(x, 1) for x in bips],
                    "baseline_images_per_s_cpu_one_core": round(float(np.median(bips)), 1),
                    "ratio_vs_baseline_each_round": [round(x, 3) for x in ratio], "ratio_vs_baseline": round(float(np.median(ratio)), 3)})
    if a.baseline_n > 0:
        import dmsfactory.generators.procedural.raster as RA

        fast = R.rasterize
        R.rasterize = RA.rasterize_numpy
        try:
            c0 = time.process_time()
            for e in es[: a.baseline_n]:
                render(e, cfg)
            dcb = time.process_time() - c0
        finally:
            R.rasterize = fast
        res["numpy_raster_images_per_s_cpu"] = round(a.baseline_n / dcb, 1)
        res["speedup_vs_numpy_raster"] = round(float(np.median(ips)) / (a.baseline_n / dcb), 2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
