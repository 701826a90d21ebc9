"""Orchestration overhead: the Prefect factory flow vs the same stages in a plain loop.

Both variants make the same dataset (default 2,000 images at 256², demo-like conditions, 200 per
batch) in fresh Python processes, interleaved (plain, flow, plain, flow, ...), each timed inside its
process from the call to the finished manifest + card (imports excluded, model setup included in
both). The flow runs against a real local Prefect server (as a deployment would), one batch in
flight (``workers=1``, like the plain loop). A second measurement gives Prefect's cost per task:
N no-op tasks with the same options as ``make-shard`` (persisted JSON result, cache key) vs N calls.

Prints one JSON object on its last line; ``flow_over_plain`` = flow time / plain time (target
≤ 1.05, i.e. overhead ≤ 5 %).

    python benchmarks/flow_overhead.py            # 2,000 images, 2 interleaved pairs
    python benchmarks/flow_overhead.py --n 300 --pairs 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dmsfactory.flows.deploy import LocalServer  # noqa: E402


def bench_spec(n: int, size: int, shard: int) -> dict:
    demo = yaml.safe_load((ROOT / "specs" / "demo.yaml").read_text())
    per = 10
    demo.update({
        "name": "bench-overhead",
        "identities": {"count": max(3, -(-n // per)), "images_per_identity": per, "mixup_fraction": 0.1},
        "image": {"size": size, "format": "jpg", "jpeg_quality": 95},
        "shards": {"size": shard},
    })
    demo.pop("output", None)
    return demo


PLAIN = """
import json, sys, time
from dmsfactory import pipeline
from dmsfactory.spec import load_spec
pipeline.default_threads()
spec = load_spec(sys.argv[1])
t = time.perf_counter()
res = pipeline.run_plain(spec, sys.argv[2], limit=int(sys.argv[3]))
dt = time.perf_counter() - t
m = res["manifest"]
print(json.dumps({"seconds": dt, "counts": m["counts"], "shards": sorted(s["sha256"] for s in m["shards"])}))
"""

FLOW = """
import json, sys, time
from dmsfactory import pipeline
from dmsfactory.flows.factory import run_factory
pipeline.default_threads()
t = time.perf_counter()
res = run_factory(sys.argv[1], sys.argv[2], int(sys.argv[3]), False, 1, False)
dt = time.perf_counter() - t
m = json.load(open(res["manifest_path"]))
print(json.dumps({"seconds": dt, "counts": m["counts"], "shards": sorted(s["sha256"] for s in m["shards"])}))
"""

TASKS = """
import json, sys, time
from pathlib import Path
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner
n, base = int(sys.argv[1]), sys.argv[2]

def key(ctx, p):
    return f"bench-{p['i']}"

def body(i):
    return {"i": i, "planned_keys": [str(i)]}

noop = task(body, name="noop", cache_key_fn=key, persist_result=True, result_serializer="json",
            refresh_cache=True, result_storage=Path(base))

@flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
def many(n: int):
    for i in range(n):
        noop.submit(i).result()

many(2)  # warm: flow engine, client, server tables
t = time.perf_counter(); many(n); t_flow = time.perf_counter() - t
t = time.perf_counter()
for i in range(n):
    body(i)
t_plain = time.perf_counter() - t
print(json.dumps({"per_task_ms": (t_flow - t_plain) / n * 1000, "n": n}))
"""


def run_py(code: str, args: list[str], env: dict) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000, help="renders per run (--limit; each also gets one augmented view)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--shard", type=int, default=200, help="shards.size: images per shard (one Prefect task each)")
    ap.add_argument("--pairs", type=int, default=2, help="interleaved plain/flow pairs")
    ap.add_argument("--tasks", type=int, default=50, help="no-op tasks for the per-task cost")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="dmsf-bench-") as tmp, LocalServer() as srv:
        tmp = Path(tmp)
        spec_path = tmp / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(bench_spec(a.n, a.size, a.shard)))
        env = dict(srv.env, PREFECT_LOGGING_LEVEL="ERROR", OMP_NUM_THREADS="1", GLOG_minloglevel="2",
                   TF_CPP_MIN_LOG_LEVEL="2")
        plain, flow, counts = [], [], []
        for i in range(a.pairs):
            p = run_py(PLAIN, [str(spec_path), str(tmp / f"plain{i}"), str(a.n)], env)
            f = run_py(FLOW, [str(spec_path), str(tmp / f"flow{i}"), str(a.n)], env)
            plain.append(p["seconds"])
            flow.append(f["seconds"])
            counts.append((p["shards"], f["shards"]))
            print(f"pair {i}: plain {p['seconds']:.1f} s, flow {f['seconds']:.1f} s", file=sys.stderr)
        same = all(pc == fc for pc, fc in counts)  # byte-identical shards from both variants
        t = run_py(TASKS, [str(a.tasks), str(tmp / "task-results")], env)
    ratios = [f / p for p, f in zip(plain, flow)]
    p_med, f_med = statistics.median(plain), statistics.median(flow)
    n_tasks = -(-a.n // a.shard)
    res = {
        "benchmark": "flow_overhead",
        "images": a.n,
        "size": a.size,
        "batches_approx": n_tasks,
        "pairs": a.pairs,
        "plain_img_per_s": round(a.n / p_med, 2),
        "flow_img_per_s": round(a.n / f_med, 2),
        "flow_over_plain": round(f_med / p_med, 4),
        "flow_over_plain_per_pair": [round(r, 4) for r in ratios],
        "overhead_pct": round((f_med / p_med - 1) * 100, 2),
        "target_overhead_pct": 5.0,
        "target_met": f_med / p_med <= 1.05,
        "per_task_overhead_ms": round(t["per_task_ms"], 2),
        "same_shards": same,
        "cpus": os.cpu_count(),
        "loadavg_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
