"""End-to-end throughput of the factory flow on Dask: 1 vs 2 workers (``DaskTaskRunner``).

For each worker count a fresh ``LocalCluster`` (processes, one thread each, pointed at a real local
Prefect server through ``PREFECT_API_URL``) runs the same demo-like spec into a fresh directory;
the time covers the whole flow run (worker model setup, every batch, manifest, card, artifacts).
The worker counts alternate (1, 2, 1, 2, ...) for ``--reps`` rounds; medians are reported.

Prints one JSON object on its last line; ``speedup_2_over_1`` is images/s with 2 workers over
images/s with 1 worker in the same run (ideal 2.0 on a machine with 2 free cores).

    python benchmarks/dask_scaling.py --n 120 --shard 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dmsfactory.flows.deploy import LocalServer  # noqa: E402


def bench_spec(n: int, size: int, shard: int) -> dict:
    demo = yaml.safe_load((ROOT / "specs" / "demo.yaml").read_text())
    per = 10
    demo.update({
        "name": "bench-dask",
        "identities": {"count": max(3, -(-n // per)), "images_per_identity": per, "mixup_fraction": 0.1},
        "image": {"size": size, "format": "jpg", "jpeg_quality": 95},
        "shards": {"size": shard},
    })
    demo.pop("output", None)
    return demo


def one_run(srv: LocalServer, spec_path: Path, out: Path, n_workers: int, limit: int) -> tuple[float, dict]:
    from distributed import Client, LocalCluster
    from prefect.settings import temporary_settings

    from dmsfactory.flows.factory import run_factory

    env = {k: v for k, v in srv.env.items() if k.startswith(("PREFECT_", "DO_NOT_TRACK", "HF_", "ORT_"))}
    env.update(OMP_NUM_THREADS="1", GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="2", PREFECT_LOGGING_LEVEL="ERROR")
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1", env=env) as lc:
        with Client(lc.scheduler_address) as c:
            c.wait_for_workers(n_workers, timeout=120)
        with temporary_settings(updates=srv.settings()):
            t = time.perf_counter()
            res = run_factory(str(spec_path), str(out), limit, False, 1, False, cluster=lc.scheduler_address)
            dt = time.perf_counter() - t
    return dt, res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=120, help="images per run")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--shard", type=int, default=20, help="shards.size: images per shard (renders + augmented views; one task each)")
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    times: dict[int, list[float]] = {1: [], 2: []}
    spread: dict[int, int] = {}
    counts = []
    with tempfile.TemporaryDirectory(prefix="dmsf-dask-") as tmp, LocalServer() as srv:
        tmp = Path(tmp)
        spec_path = tmp / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(bench_spec(a.n, a.size, a.shard)))
        for r in range(a.reps):
            for k in (1, 2):
                dt, res = one_run(srv, spec_path, tmp / f"w{k}-{r}", k, a.n)
                times[k].append(dt)
                spread[k] = len(set(res["workers"].values()))
                counts.append(res["counts"])
                print(f"round {r}: {k} worker(s) {dt:.1f} s ({a.n / dt:.2f} img/s)", file=sys.stderr)
    t1, t2 = statistics.median(times[1]), statistics.median(times[2])
    print(json.dumps({
        "benchmark": "dask_scaling",
        "images": a.n,
        "size": a.size,
        "batch": a.shard,
        "reps": a.reps,
        "img_per_s_1_worker": round(a.n / t1, 3),
        "img_per_s_2_workers": round(a.n / t2, 3),
        "speedup_2_over_1": round(t1 / t2, 3),
        "ideal_speedup": 2.0,
        "workers_used": spread,
        "same_counts": all(c == counts[0] for c in counts),
        "counts": counts,
        "cpus": os.cpu_count(),
        "loadavg_end": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
