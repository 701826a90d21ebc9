"""DP-SGD step time vs non-private step time (same model, same batch, same run), peak memory of both.

Each measurement runs in its own subprocess (so peak RSS is per mode), interleaved non-DP, DP,
non-DP, DP to share the box's noise; the ratio uses the medians. Last line: one JSON object with
``dp_over_nondp_step_time`` (target ≤ 2.0) and both peaks. CPU peak = process max RSS minus RSS
before the first step (torch's allocator is invisible to tracemalloc); CUDA: max_memory_allocated.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _rss_now_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def worker(a) -> dict:
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    dev = torch.device("cuda" if (a.device == "auto" and torch.cuda.is_available()) else (a.device if a.device != "auto" else "cpu"))
    from opacus.grad_sample.utils import wrap_model
    from opacus.optimizers import DPOptimizer

    from dmsfactory.training.config import HEAD_NAMES
    from dmsfactory.training.model import DMSNet, per_sample_loss, to_input

    heads = HEAD_NAMES
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (a.batch, 3, a.size, a.size), dtype=torch.uint8, generator=g).to(dev)
    y = torch.stack([torch.randint(0, 2, (a.batch,), generator=g) for _ in heads], 1).to(dev)
    torch.manual_seed(0)
    model = DMSNet(heads, a.width).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if a.mode == "dp":
        model = wrap_model(model, grad_sample_mode=a.grad_sample_mode)
        opt = DPOptimizer(opt, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=a.batch)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = _rss_now_mb()
    times = []
    for i in range(a.steps + 2):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = per_sample_loss(model(to_input(x)), y, heads).mean()
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - t)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 - base
    return {"times": times, "peak_mb": peak, "device": str(dev),
            "params": sum(p.numel() for p in DMSNet(heads, a.width).parameters())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--width", type=int, default=24)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--grad-sample-mode", default="hooks")
    ap.add_argument("--mode", choices=["dp", "nondp"], default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.mode:
        print(json.dumps(worker(a)))
        return
    base = [sys.executable, __file__] + [f"--{k.replace('_', '-')}={v}" for k, v in vars(a).items() if k != "mode" and v is not None]

    def run(mode: str) -> dict:
        r = subprocess.run(base + [f"--mode={mode}"], capture_output=True, text=True, check=True)
        return json.loads(r.stdout.strip().splitlines()[-1])

    res = {"nondp": [], "dp": []}
    for mode in ("nondp", "dp", "nondp", "dp"):
        res[mode].append(run(mode))
    tn = statistics.median([t for r in res["nondp"] for t in r["times"]])
    td = statistics.median([t for r in res["dp"] for t in r["times"]])
    out = {
        "benchmark": "dp_step",
        "device": res["dp"][0]["device"],
        "grad_sample_mode": a.grad_sample_mode,
        "batch": a.batch,
        "image_size": a.size,
        "width": a.width,
        "params": res["dp"][0]["params"],
        "threads": a.threads,
        "nondp_step_s": round(tn, 5),
        "dp_step_s": round(td, 5),
        "dp_over_nondp_step_time": round(td / tn, 3),
        "target_max_ratio": 2.0,
        "meets_target": td / tn <= 2.0,
        "peak_mem_mb_nondp": round(max(r["peak_mb"] for r in res["nondp"]), 1),
        "peak_mem_mb_dp": round(max(r["peak_mb"] for r in res["dp"]), 1),
    }
    out["dp_over_nondp_peak_mem"] = round(out["peak_mem_mb_dp"] / max(out["peak_mem_mb_nondp"], 1e-9), 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
