"""ε → accuracy tables for DP-SGD and PATE, and synthetic-only vs synthetic+real vs domain mixup.

All rows are measured in this run on the same data and seed; figures are accuracies on the private
domain's identity-disjoint test split (``real_test``) and ratios against the **synthetic-only**
baseline (no private data, ε = 0) measured here. Data:
- ``--synthetic DIR --private DIR``: shard directories (e.g. out/dp-demo and out/dp-demo-private:
  our renders; the private "real" stand-in is renders in another style: night-IR, rear-view mirror);
- without them: the drawn toy stand-in of dmsfactory.training.toy (says so in the JSON).
The public pretraining is done once and shared by every row (same config and seed).
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic")
    ap.add_argument("--private")
    ap.add_argument("--epsilons", default="0.5,1,2,4,8,inf")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--teachers", type=int, default=8)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--skip", default="", help="comma list of: dp,pate,mixup")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--crop-scale", type=float, default=1.6)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--private-lr", type=float, default=2e-3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import warnings

    warnings.filterwarnings("ignore")
    from dmsfactory.training.config import TrainConfig
    from dmsfactory.training.data import load_split
    from dmsfactory.training.train import run_training

    data = "shards"
    if not a.synthetic:
        from dmsfactory.training.toy import make_toy_dataset

        syn, real = make_toy_dataset(tempfile.mkdtemp(), seed=0, size=64, syn_ids=40, real_ids=24, per_id=10)
        data = "toy drawn stand-in (dmsfactory.training.toy)"
    else:
        syn, real = Path(a.synthetic), Path(a.private)
    base = dict(image_size=a.image_size, width=a.width, pretrain_epochs=a.pretrain_epochs, epochs=a.epochs,
                batch_size=64, lr=a.lr, private_lr=a.private_lr, private_data=str(real), crop_scale=a.crop_scale)
    heads = TrainConfig(method="synthetic_only").heads
    t0 = time.perf_counter()
    ld = lambda d, split: load_split(d, split, heads, a.image_size, "face", None, a.crop_scale)  # noqa: E731
    syn_train, real_train = ld(syn, "train"), ld(real, "train")
    tests = {"real_test": ld(real, "test"), "synthetic_test": ld(syn, "test")}
    eps_list = [float(e) for e in a.epsilons.split(",")]
    skip = set(filter(None, a.skip.split(",")))
    seeds = [int(s) for s in a.seeds.split(",")]

    def row(method, eps, seed, state, **kw):
        cfg = TrainConfig(method=method, epsilon=eps if method in ("dp_sgd", "pate") else 4.0, **{**base, **kw})
        t = time.perf_counter()
        s = run_training(cfg, syn_train, None if method == "synthetic_only" else real_train, tests, None,
                         seed=seed, pretrained_state=state)
        rt, st = s["metrics"]["real_test"], s["metrics"]["synthetic_test"]
        other = [v for k, v in rt.items() if k.endswith("_acc") and k not in ("class_acc", "class_balanced_acc")]
        r = {"method": method + ("+mixup" if kw.get("mixup") else ""), "epsilon_target": eps if method in ("dp_sgd", "pate") else None,
             "epsilon": s["privacy"].get("epsilon"), "seed": seed,
             "real_class_acc": round(rt.get("class_acc", float("nan")), 4),
             "real_class_bal_acc": round(rt.get("class_balanced_acc", float("nan")), 4),
             "real_mean_head_acc": round(sum(other) / len(other), 4) if other else None,
             "syn_class_acc": round(st.get("class_acc", float("nan")), 4),
             "seconds": round(time.perf_counter() - t, 1)}
        p = s["privacy"]
        for k in ("noise_multiplier", "sigma", "epsilon_data_dependent", "answered", "label_agreement_with_synthetic_truth", "steps"):
            if k in p and p[k] is not None:
                r[k] = round(p[k], 4) if isinstance(p[k], float) else p[k]
        print(json.dumps(r), file=sys.stderr, flush=True)
        return r, s

    rows = []
    for seed in seeds:
        r0, s0 = row("synthetic_only", None, seed, None)
        state = s0["_state"]
        rows.append(r0)
        rows.append(row("non_private", math.inf, seed, None, pretrain_epochs=0)[0] | {"method": "real_only"})
        rows.append(row("non_private", math.inf, seed, state)[0])
        if "mixup" not in skip:
            rows.append(row("non_private", math.inf, seed, state, mixup={"enabled": True, "lam_max": 0.5})[0])
        for eps in eps_list:
            if math.isinf(eps):
                continue  # ε = ∞ for DP-SGD is the non_private row
            if "dp" not in skip:
                rows.append(row("dp_sgd", eps, seed, state)[0])
                if "mixup" not in skip and eps == 4.0:
                    rows.append(row("dp_sgd", eps, seed, state, mixup={"enabled": True, "lam_max": 0.5})[0])
        if "pate" not in skip:
            for eps in eps_list:
                rows.append(row("pate", eps, seed, state,
                                pate={"teachers": a.teachers, "queries": a.queries, "teacher_epochs": a.epochs,
                                      "student_epochs": a.epochs})[0])
    # real_only: no synthetic pretraining at all (random init, real data only, no DP)
    base_acc = {sd: next(r["real_class_acc"] for r in rows if r["method"] == "synthetic_only" and r["seed"] == sd) for sd in seeds}
    for r in rows:
        b = base_acc[r["seed"]]
        r["ratio_vs_synthetic_only"] = round(r["real_class_acc"] / b, 3) if b else None

    def table(method):
        out = {}
        for r in rows:
            if r["method"] == method:
                key = "inf" if r["epsilon_target"] is None or math.isinf(r["epsilon_target"]) else f"{r['epsilon_target']:g}"
                out.setdefault(key, []).append(r["real_class_acc"])
        return {k: round(sum(v) / len(v), 4) for k, v in out.items()}

    dp_tab = table("dp_sgd")
    np_acc = table("non_private").get("inf")
    if np_acc is not None:
        dp_tab["inf"] = np_acc
    summary = {
        "benchmark": "dp_tables",
        "data": data,
        "synthetic_train": len(syn_train), "private_train": len(real_train),
        "real_test": len(tests["real_test"]), "synthetic_test": len(tests["synthetic_test"]),
        "metric": "class accuracy (6 DMS classes) on the private domain's identity-disjoint test split",
        "baseline": "synthetic_only", "baseline_acc": base_acc,
        "dp_sgd_eps_to_acc": dp_tab, "pate_eps_to_acc": table("pate"),
        "settings": vars(a), "rows": rows, "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
