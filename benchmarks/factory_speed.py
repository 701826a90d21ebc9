"""The factory at the speed of its renderer: end-to-end throughput, scaling and memory (issue 19).

    python benchmarks/factory_speed.py [--renders 400] [--workers 1,2] [--stages 60] [--steady 1200]
                                       [--rss 10000,100000] [--rss-workers 2] [--spec specs/demo.yaml]

Every figure comes from this run, on the demo spec (privacy gate on, against the demo's reference
gallery of :mod:`dmsfactory.privacy.testgallery`, written once to ``$TMPDIR/dmsfactory-bench-gallery``:
one path for every checkout, so that two checkouts benchmark the same samples):

* ``renderer_alone``: the procedural renderer on the same plan entries (identity builds included,
  as in a run), one process, after one untimed render (the rasteriser's numba kernel compiles and
  caches itself on a fresh checkout's first call): the baseline every ratio is taken against.
* ``stages_ms_per_render`` (``--stages N``): CPU ms per planned render of each stage on the first N
  renders of the plan (whole identities, as a batch holds them), in this process (generate, label,
  augment, verify, privacy, encode + write).
* ``end_to_end``: ``dmsfactory run --no-prefect --workers W`` in a fresh process on the spec cut to
  ``--renders`` renders (fewer identities, a whole plan; not a ``--limit`` preview), wall clock from start to the card (model setup, gallery load and finalize
  included): renders/s, renders/s per core, and the ratio to the renderer alone. Before the timed
  runs, one untimed 20-render run (``warmup_s``) pays what only a machine's first run pays (the
  gallery's descriptor cache, cold file reads): every run after it is what a user's runs cost.
* ``steady_state`` (``--steady N2``, one worker): the run again at N2 > ``--renders`` renders (the spec
  grown to that many by more identities, where ``--renders`` only cuts it); the
  difference between the two runs is the work that grows with the dataset, without what every run pays
  once (imports, model setup, gallery load, the card's plots): marginal renders/s (wall and per CPU
  second, each also over the renderer alone) and the fixed seconds the shorter run spent (docs/orchestration-log.md:
  at 400 and 1,200 demo renders the marginal rate was within 3 % of the whole-run rate). With more
  than one ``--workers``, the N2 run is made again at the largest W: ``steady_state.scaling`` gives
  W over W = 1 at N2 renders and at the margin (the work that grows with the dataset).
  ``audited_images``: the images the verify audit checked in each run (6-7 ms of CPU each). The audit
  is sized on the whole plan and stops growing near 5,900 images on the demo spec (707 at 400
  renders, 2,401 at 2,000, 4,002 at 6,000): part of the margin between two small runs is the audit
  growing, which a large run does not pay per render.
  ``--repeats K`` (K > 1) makes the one-worker pair K times in a row, each pair after its own
  renderer-alone measurement: ``steady_state.repeats`` lists every pair's marginal rate and ratio and
  their medians. The two-core boxes here drift: the same 2,000-render run took 111-113 s in one hour
  and 82-89 s in the next (docs/orchestration-log.md), so one pair can land in a slow spell.
* ``scaling``: renders/s with the largest W over W = 1 (wall clock: needs the cores to be free), and
  the CPU time per render with W over W = 1 (the parallel overhead: model setup per process, views
  made again where a batch lacks them), which a shared machine does not distort.
* ``plan_rss`` (``--plan-rss N,M``): resident memory a fresh process adds by planning the run as the
  flow process does (plan index, lazy batches, audit sample) at N and M samples, next to what its
  imports take: quick, no rendering.
* ``rss`` (``--rss N,M``): peak resident memory of the run's main process and of its largest worker
  at N and M *samples* (images written: 2 per render on the demo spec), from a psutil sampler;
  ``ratio`` = peak at the largest N over the smallest. Long: run it once, niced.

The machine may be shared: the JSON says how many CPUs there were and the load average at the start
and end, so a scaling figure can be read against the load. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import yaml  # noqa: E402


def _spec_dict(path: str, gallery: Path, images: int | None = None, renders: int | None = None) -> dict:
    """The spec with the benchmark's gallery; ``images`` / ``renders``: fewer identities, so that the spec
    plans that many (a whole plan, never a ``--limit`` preview, whose renders spread over identities)."""
    d = yaml.safe_load(Path(path).read_text())
    d.setdefault("privacy", {})["galleries"] = [str(gallery)]
    if renders is not None:
        d["identities"]["count"] = max(1, min(d["identities"]["count"], renders // d["identities"]["images_per_identity"]))
    if images is not None:
        per = d["identities"]["images_per_identity"] * (
            (1 if d.get("augment", {}).get("keep_originals", True) else 0) + d.get("augment", {}).get("views_per_image", 1)
            if d.get("augment", {}).get("enabled") else 1)
        d["identities"]["count"] = max(1, images // per)
    return d


GALLERY = Path(tempfile.gettempdir()) / "dmsfactory-bench-gallery"


def _gallery(tmp: Path) -> Path:
    """The reference gallery at one fixed path: the spec names it, so its path is part of the spec hash
    and with it of every key and seeded draw. A path inside the checkout (or a fresh temporary
    directory) made two checkouts, or two runs, render different samples (40 vs 42 quarantined)."""
    if not (GALLERY / "astronaut.png").is_file():
        from dmsfactory.privacy.testgallery import write_reference_gallery

        write_reference_gallery(GALLERY)
    return GALLERY


def renderer_alone(spec, n: int) -> dict:
    from dmsfactory.generators import get_generator
    from dmsfactory.planindex import plan_index

    idx = plan_index(spec)
    entries = [idx.entry(i) for i in range(min(n, len(idx)))]  # whole identities, as the run's batches
    gen = get_generator(spec)
    gen.setup()
    gen.generate(entries[:1])  # untimed: the rasteriser's numba kernel compiles on a fresh checkout's first call
    # every identity built inside the timed call, as a run builds it (also for --repeats, whose later
    # measurements would otherwise find every identity in the renderer's cache)
    sys.modules["dmsfactory.generators.procedural.render"]._CACHE.clear()
    t, c = time.perf_counter(), time.process_time()
    gen.generate(entries)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"renders": len(entries), "renders_per_s_wall": round(len(entries) / wall, 2),
            "renders_per_s_cpu": round(len(entries) / cpu, 2)}


def stage_times(spec, n: int) -> dict:
    import cv2

    cv2.setNumThreads(1)
    from dmsfactory.datasets.shards import write_batch
    from dmsfactory.pipeline import get_worker
    from dmsfactory.sample import run_stages

    import dmsfactory.generators.procedural  # noqa: F401

    R = sys.modules["dmsfactory.generators.procedural.render"]  # the package re-exports the render() function
    # the first n renders of the full plan, as a run's batches hold them (whole identities, one split):
    # a --limit preview spreads n renders over many identities, whose views the gate would make again
    from dmsfactory.planindex import plan_index

    idx = plan_index(spec)
    entries = [idx.entry(i) for i in range(min(n, len(idx)))]
    w = get_worker(spec)
    R._CACHE.clear()  # identities built by the renderer-alone run would make generate look cheaper
    out: dict[str, float] = {}
    c = time.process_time()
    samples = w.generator.generate(entries)
    out["generate"] = time.process_time() - c
    for st in w.stages:
        c = time.process_time()
        samples = run_stages([st], samples)
        out[st.name] = time.process_time() - c
    with tempfile.TemporaryDirectory() as d:
        c = time.process_time()
        write_batch(Path(d), "train-000000", samples, spec_hash="x", planned_keys=[e["key"] for e in entries],
                    fmt=spec.image.format, quality=spec.image.jpeg_quality)
        out["encode_and_write"] = time.process_time() - c
    res = {k: round(1000 * v / len(entries), 1) for k, v in out.items()}
    res["total"] = round(sum(res.values()), 1)
    res["images_per_render"] = round(len(samples) / len(entries), 2)
    return res


class _Sampler(threading.Thread):
    """Peak RSS of a process and, separately, of its largest descendant (psutil, every 0.2 s)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        import psutil

        self.p = psutil.Process(pid)
        self.main = self.child = self.tree = 0
        self.stop = False

    def run(self) -> None:
        import psutil

        while not self.stop:
            try:
                m = self.p.memory_info().rss
                kids = [k.memory_info().rss for k in self.p.children(recursive=True)]
            except psutil.Error:
                break
            self.main = max(self.main, m)
            self.child = max(self.child, max(kids, default=0))
            self.tree = max(self.tree, m + sum(kids))
            time.sleep(0.2)


def run_cli(spec_dict: dict, out: Path, workers: int, limit: int | None, nice: int = 0) -> dict:
    sp = out.parent / f"{out.name}.yaml"
    sp.write_text(yaml.safe_dump(spec_dict))
    cmd = [sys.executable, "-m", "dmsfactory.cli", "run", str(sp), "--out", str(out), "--no-prefect", "--workers", str(workers)]
    if limit:
        cmd += ["--limit", str(limit)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    import resource

    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)
    samp = _Sampler(proc.pid)
    samp.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the run and the worker processes it waited for
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    samp.stop = True
    samp.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {stderr[-3000:]}")
    m = json.loads((out / "manifest.json").read_text())
    vr = out / "verify_report.json"
    audited = (json.loads(vr.read_text()).get("audit") or {}).get("audited_images") if vr.is_file() else None
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "counts": m["counts"], "audited_images": audited,
            "peak_rss_main_mb": round(samp.main / 2**20),
            "peak_rss_largest_worker_mb": round(samp.child / 2**20), "peak_rss_tree_mb": round(samp.tree / 2**20)}


_PLAN_RSS = """
import gc, json, sys
sys.path.insert(0, sys.argv[3])
import psutil
from dmsfactory.spec import parse_spec
from dmsfactory.labelers.audit import audit_selection
from dmsfactory.pipeline import plan_jobs
spec = parse_spec(json.loads(sys.argv[1]))
gc.collect()
me = psutil.Process()
base = me.memory_info().rss
jobs = plan_jobs(spec)  # what the run's flow process holds: the plan index and lazy batches
sel = audit_selection(spec)
gc.collect()
print(json.dumps({"renders": spec.total_samples, "batches": len(jobs), "audited": sel.target,
                  "modules_mb": round(base / 2**20), "planning_mb": round((me.memory_info().rss - base) / 2**20, 1)}))
"""


def plan_rss(spec_dict: dict) -> dict:
    """Peak RSS of a fresh process that plans the run as its flow process does (plan index, lazy batches,
    audit sample): the part of the main process's memory that depends on the dataset's size."""
    import json as _j

    r = subprocess.run([sys.executable, "-c", _PLAN_RSS, _j.dumps(spec_dict), "", str(ROOT / "src")],
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    return _j.loads(r.stdout.strip().splitlines()[-1])


def e2e_run(sd: dict, out: Path, workers: int) -> dict:
    """``run_cli`` plus the renders it made (the spec's whole plan)."""
    r = run_cli(sd, out, workers, None)
    r["renders"] = sd["identities"]["count"] * sd["identities"]["images_per_identity"]
    return r


def steady_specs(a, gal: Path) -> tuple[dict, dict]:
    """The ``--renders`` spec (cut) and the ``--steady`` one (grown: more identities of the same spec);
    an error before anything runs when the second does not plan more renders."""
    cut = _spec_dict(a.spec, gal, renders=a.renders)
    sd = _spec_dict(a.spec, gal)
    sd["identities"]["count"] = max(1, a.steady // sd["identities"]["images_per_identity"])
    if sd["identities"]["count"] <= cut["identities"]["count"]:
        raise SystemExit(f"--steady {a.steady} must plan more renders than --renders {a.renders}")
    return cut, sd


def _margin(short: dict, long: dict) -> tuple[float, float, float, float]:
    """The renders and wall seconds the longer run added, and renders per wall second and per CPU
    second at that margin."""
    dn = long["renders"] - short["renders"]
    dw, dc = long["wall_s"] - short["wall_s"], long["cpu_s"] - short["cpu_s"]
    return dn, dw, dn / dw, dn / dc


def repeated_margins(a, spec, cut: dict, sd: dict, first: dict, alone: dict, tmp: Path) -> dict:
    """The one-worker pair of specs ``cut`` and ``sd`` ``--repeats`` times (the first pair is ``first``,
    measured after ``alone``), each later pair after its own renderer-alone run: every pair's marginal
    renders/s, its ratio to that renderer-alone rate, and the medians."""
    per_s, ratio, rend = [first["marginal_renders_per_s"]], [first["of_renderer_alone"]], [alone["renders_per_s_wall"]]
    for k in range(1, a.repeats):
        al = renderer_alone(spec, min(a.renders, spec.total_samples))
        short = e2e_run(cut, tmp / f"rep{k}-short", 1)
        long = e2e_run(sd, tmp / f"rep{k}-long", 1)
        m = _margin(short, long)[2]
        per_s.append(round(m, 2))
        ratio.append(round(m / al["renders_per_s_wall"], 3))
        rend.append(al["renders_per_s_wall"])
        print(json.dumps({"repeat": k + 1, "renderer_alone": al["renders_per_s_wall"], "wall_s": [short["wall_s"], long["wall_s"]],
                          "marginal_renders_per_s": per_s[-1]}), file=sys.stderr)
    return {"pairs": len(per_s), "renderer_alone_per_s": rend, "marginal_renders_per_s": per_s, "of_renderer_alone": ratio,
            "median_marginal_renders_per_s": round(statistics.median(per_s), 2),
            "median_of_renderer_alone": round(statistics.median(ratio), 3)}


def steady_state(a, gal: Path, spec, alone: dict, e2e: dict, tmp: Path) -> dict:
    """Marginal throughput between a one-worker run at ``--renders`` and one at ``--steady`` renders;
    with more than one ``--workers``, the ``--steady`` run again at the largest W (scaling there, and
    at the margin); with ``--repeats`` K > 1, the one-worker pair K times in all (``repeats``)."""
    cut, sd = steady_specs(a, gal)
    short = e2e.get("1") or e2e_run(cut, tmp / "e2e-w1", 1)
    long = e2e_run(sd, tmp / "steady-w1", 1)
    _, dw, per_s, per_cpu_s = _margin(short, long)
    res = {"renders": [short["renders"], long["renders"]], "wall_s": [short["wall_s"], long["wall_s"]],
           "cpu_s": [short["cpu_s"], long["cpu_s"]], "audited_images": [short["audited_images"], long["audited_images"]],
           "marginal_renders_per_s": round(per_s, 2), "of_renderer_alone": round(per_s / alone["renders_per_s_wall"], 3),
           "marginal_renders_per_cpu_s": round(per_cpu_s, 2),
           "of_renderer_alone_cpu": round(per_cpu_s / alone["renders_per_s_cpu"], 3),
           "fixed_wall_s": round(short["wall_s"] - short["renders"] / per_s, 2),
           "fixed_cpu_s": round(short["cpu_s"] - short["renders"] / per_cpu_s, 2)}
    hi = max((int(k) for k in e2e), default=1)
    if hi > 1:
        long_hi = e2e_run(sd, tmp / f"steady-w{hi}", hi)
        short_hi = e2e[str(hi)]
        res[f"workers_{hi}"] = {"wall_s": [short_hi["wall_s"], long_hi["wall_s"]], "cpu_s": [short_hi["cpu_s"], long_hi["cpu_s"]]}
        res["scaling"] = {f"{hi}_over_1": round(long["wall_s"] / long_hi["wall_s"], 3),
                          f"marginal_{hi}_over_1": round(dw / (long_hi["wall_s"] - short_hi["wall_s"]), 3)}
    if a.repeats > 1:
        res["repeats"] = repeated_margins(a, spec, cut, sd, res, alone, tmp)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default=str(ROOT / "specs" / "demo.yaml"))
    ap.add_argument("--renders", type=int, default=400)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--stages", type=int, default=60)
    ap.add_argument("--rss", default="", help="comma-separated sample (image) counts, e.g. 10000,100000")
    ap.add_argument("--rss-workers", type=int, default=2)
    ap.add_argument("--plan-rss", default="", help="comma-separated sample (image) counts: peak RSS of planning alone")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--steady", type=int, default=0,
                    help="renders of a second one-worker run (> --renders): per-render throughput without fixed costs")
    ap.add_argument("--repeats", type=int, default=1,
                    help="with --steady: make the one-worker pair this many times (medians in steady_state.repeats)")
    a = ap.parse_args()
    from dmsfactory.spec import parse_spec

    res: dict = {"cpus": os.cpu_count(), "load_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        gal = _gallery(tmp)
        if a.steady and not a.skip_e2e:
            steady_specs(a, gal)  # a bad --steady fails now, not after the runs before it
        spec = parse_spec(_spec_dict(a.spec, gal))
        res["spec"] = {"name": spec.name, "renders": min(a.renders, spec.total_samples), "image_size": spec.image.size}
        res["renderer_alone"] = renderer_alone(spec, min(a.renders, spec.total_samples))
        print(json.dumps({"renderer_alone": res["renderer_alone"]}), file=sys.stderr)
        if a.stages:
            res["stages_ms_per_render"] = stage_times(spec, a.stages)
            print(json.dumps({"stages": res["stages_ms_per_render"]}), file=sys.stderr)
        if not a.skip_e2e:
            # untimed: what only a machine's first run pays (the gallery's descriptor cache, cold file reads);
            # on a fresh box the first timed run took ~4 s longer without it
            t0 = time.perf_counter()
            run_cli(_spec_dict(a.spec, gal, renders=20), tmp / "warmup", 1, None)
            res["warmup_s"] = round(time.perf_counter() - t0, 2)
            e2e = {}
            for w in [int(x) for x in a.workers.split(",") if x]:
                r = e2e_run(_spec_dict(a.spec, gal, renders=a.renders), tmp / f"e2e-w{w}", w)
                n = r["renders"]
                r["renders_per_s"] = round(n / r["wall_s"], 2)
                r["renders_per_s_per_core"] = round(n / r["wall_s"] / w, 2)
                r["of_renderer_alone"] = round(r["renders_per_s"] / w / res["renderer_alone"]["renders_per_s_wall"], 3)
                # on a shared machine the CPU time a run used is the steadier figure: renders per CPU second is
                # the renders/s one dedicated core would give (setup and finalize included)
                r["renders_per_cpu_s"] = round(n / r["cpu_s"], 2)
                r["of_renderer_alone_cpu"] = round(r["renders_per_cpu_s"] / res["renderer_alone"]["renders_per_s_cpu"], 3)
                e2e[str(w)] = r
                print(json.dumps({f"workers_{w}": r}), file=sys.stderr)
            res["end_to_end"] = e2e
            if a.steady:
                res["steady_state"] = steady_state(a, gal, spec, res["renderer_alone"], e2e, tmp)
                print(json.dumps({"steady_state": res["steady_state"]}), file=sys.stderr)
            ws = sorted(int(k) for k in e2e)
            if len(ws) > 1:
                hi, lo = e2e[str(ws[-1])], e2e[str(ws[0])]
                res["scaling"] = {f"{ws[-1]}_over_{ws[0]}": round(hi["renders_per_s"] / lo["renders_per_s"], 3),
                                  "cpu_per_render_ratio": round(hi["cpu_s"] / lo["cpu_s"], 3)}
        if a.plan_rss:
            pr = {}
            for n in [int(x) for x in a.plan_rss.split(",") if x]:
                pr[str(n)] = plan_rss(_spec_dict(a.spec, gal, images=n))
                print(json.dumps({f"plan_rss_{n}": pr[str(n)]}), file=sys.stderr)
            ks = sorted(int(k) for k in pr)
            if len(ks) > 1:
                lo, hi = pr[str(ks[0])], pr[str(ks[-1])]
                pr["ratio_process"] = round((hi["modules_mb"] + hi["planning_mb"]) / (lo["modules_mb"] + lo["planning_mb"]), 3)
            res["plan_rss"] = pr
        if a.rss:
            rss = {}
            for n in [int(x) for x in a.rss.split(",") if x]:
                r = run_cli(_spec_dict(a.spec, gal, images=n), tmp / f"rss-{n}", a.rss_workers, None, nice=10)
                rss[str(n)] = r
                print(json.dumps({f"rss_{n}": r}), file=sys.stderr)
            ks = sorted(int(k) for k in rss)
            if len(ks) > 1:
                lo, hi = rss[str(ks[0])], rss[str(ks[-1])]
                rss["ratio_main"] = round(hi["peak_rss_main_mb"] / lo["peak_rss_main_mb"], 3)
                rss["ratio_largest_worker"] = round(hi["peak_rss_largest_worker_mb"] / max(1, lo["peak_rss_largest_worker_mb"]), 3)
                rss["ratio_tree"] = round(hi["peak_rss_tree_mb"] / lo["peak_rss_tree_mb"], 3)
            res["rss"] = rss
    res["load_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
