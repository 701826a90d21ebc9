"""Speed (and headline figures) of the whole `dmsfactory transfer` report.

    python benchmarks/sim2real.py --shards out/sim2real-dev --real /work/realfmt/yawn --max-synthetic 10000
    python benchmarks/sim2real.py --shards out/sim2real-dev --real /work/realfmt/eyes --real /work/realfmt/yawn

Target (issue 17): the whole report on 10,000 synthetic samples and ~1,500 real images in <= 15 min
on a 2-core CPU. One report per --real folder (the synthetic models are retrained for each: that is
what a user's run costs). Baseline measured in the same run: one pass that only reads and crops the
same synthetic samples (the floor of any report on them); the JSON gives the report time as a ratio
to it and to the 900 s target. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", required=True, help="a dataset made by `dmsfactory run`")
    ap.add_argument("--real", action="append", required=True, help="real folder(s) in the transfer layout")
    ap.add_argument("--max-synthetic", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--jobs", type=int, default=None,
                    help="processes for the report's independent trainings (default: every usable core)")
    ap.add_argument("--out", default="out/bench-sim2real")
    a = ap.parse_args(argv)

    import torch

    from dmsfactory.env import available_cores
    from dmsfactory.transfer.models import TASKS
    from dmsfactory.transfer.run import run_transfer
    from dmsfactory.transfer.synth import read_synthetic

    torch.set_num_threads(a.threads)
    jobs = a.jobs or available_cores()
    t0 = time.perf_counter()
    syn = read_synthetic(a.shards, "train", tuple(TASKS), a.max_synthetic)
    read_s = time.perf_counter() - t0
    per = {}
    total = 0.0
    images = 0
    for i, real in enumerate(a.real):
        t0 = time.perf_counter()
        rep = run_transfer(a.shards, real, Path(a.out) / f"r{i}", seed=a.seed, max_synthetic=a.max_synthetic,
                           threads=a.threads, jobs=jobs, link_card=False,
                           log=lambda s: print(f"[{time.perf_counter() - t0:7.1f}] {s}", file=sys.stderr, flush=True))
        dt = time.perf_counter() - t0
        total += dt
        n_img = sum(s.get("images", 0) for s in rep["sets"].values())
        images += n_img
        heads = {}
        for name, s in rep["sets"].items():
            m = s.get("methods") or {}
            if "synthetic_only" not in m:
                continue
            so, rk = m["synthetic_only"], m["real_kfold"]
            key = "auc" if "auc" in so else ("inner51" if "inner51" in so else ("mean_mae" if "mean_mae" in so else "angular_error"))
            heads[name] = {f"synthetic_only_{key}": round(so[key], 4), f"real_kfold_{key}": round(rk[key], 4),
                           "rows": s.get("rows")}
            if "accuracy" in so:
                heads[name].update(synthetic_only_accuracy=round(so["accuracy"], 4), real_kfold_accuracy=round(rk["accuracy"], 4))
            if "synthetic_only_cv" in m:  # the same scores with a threshold from the real training folds
                heads[name]["synthetic_only_cv_accuracy"] = round(m["synthetic_only_cv"]["accuracy"], 4)
        per[real] = {"seconds": round(dt, 1), "real_images": n_img, "within_900s": dt <= 900, "timings": rep["timings"],
                     "figures": heads}
    res = {
        "benchmark": "sim2real", "synthetic_samples": syn.samples, "real_images": images, "threads": a.threads, "jobs": jobs,
        "read_synthetic_baseline_s": round(read_s, 1), "report_seconds": round(total, 1),
        "ratio_to_read_baseline": round(total / max(read_s, 1e-9), 2), "target_s_per_report": 900,
        "ratio_to_target_worst_report": round(max(p["seconds"] for p in per.values()) / 900, 3), "per_report": per,
    }
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
