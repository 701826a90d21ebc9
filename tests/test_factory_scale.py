"""All cores, identity verdicts across batches, resume with workers, constant-memory finalize (issue 19)."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dmsfactory import pipeline, workerserver
from dmsfactory.datasets import iter_records
from dmsfactory.plan import make_plan
from dmsfactory.spec import parse_spec


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    from dmsfactory.privacy.testgallery import write_reference_gallery

    return write_reference_gallery(tmp_path_factory.mktemp("gal") / "g", lfw_faces=4)


def _spec_dict(tiny, gallery, cache):
    d = dict(tiny)
    d.update({
        "identities": {"count": 16, "images_per_identity": 2, "mixup_fraction": 0.2},
        "shards": {"size": 3},  # identities span batches: their views are made again where a batch lacks them
        "augment": {"enabled": True, "policy": "geometric", "views_per_image": 1},
        "verify": {"enabled": True},
        "privacy": {"galleries": [str(gallery)], "cache_dir": str(cache)},
    })
    return d


@pytest.fixture(scope="module")
def runs(tmp_path_factory, gallery):
    from conftest import TINY_SPEC

    tmp = tmp_path_factory.mktemp("runs")
    spec = parse_spec(_spec_dict(TINY_SPEC, gallery, tmp / "cache"))
    one = pipeline.run_plain(spec, tmp / "w1", workers=1)
    recs: list = []
    two = pipeline.run_plain(spec, tmp / "w2", workers=2, on_shard=recs.append)
    return spec, tmp, one, two, recs


def _shas(m):
    return {s["path"]: s["sha256"] for s in m["shards"] + m["quarantine"]}


@pytest.mark.slow
def test_one_and_two_workers_give_byte_identical_shards(runs):
    spec, tmp, one, two, recs = runs
    assert len({r["worker"] for r in recs if not r.get("resumed")}) == 2  # both processes made batches
    a, b = _shas(one["manifest"]), _shas(two["manifest"])
    assert a and a == b
    keys = Counter(d["key"] for d, _ in iter_records(tmp / "w2"))
    assert set(keys.values()) == {1} and {k.split("_a")[0] for k in keys} == {e["key"] for e in make_plan(spec)}
    # the reports come from the same records: the same privacy and verification figures
    for name in ("privacy_report.json", "verify_report.json"):
        x, y = json.loads((tmp / "w1" / name).read_text()), json.loads((tmp / "w2" / name).read_text())
        x.pop("models", None), y.pop("models", None)
        assert x == y, name


@pytest.mark.slow
def test_every_image_of_an_identity_carries_one_verdict_and_mixup_identities_are_their_own(runs):
    spec, tmp, *_ = runs
    docs = [d for d, _ in iter_records(tmp / "w1")]
    by_ident: dict = {}
    for d in docs:
        by_ident.setdefault(d["identity"], []).append(d)
    mixed = [i for i in by_ident if i.startswith("mx")]
    assert mixed, "the spec makes mixed identities"
    for ident, ds in by_ident.items():
        verdicts = {json.dumps([v for v in d["verdicts"] if v["check"] == "leakage"][0]["scores"]["views"], sort_keys=True)
                    for d in ds}
        assert len(verdicts) == 1, ident  # the same views decide for every image, across batches
        views = [v["key"] for v in json.loads(verdicts.pop())]
        own = {d["key"] for d in ds}
        assert 1 <= len(views) <= spec.privacy.identity_views and set(views) <= own, (ident, views)
    # a mixed identity is judged on its own renders, never on its parents'
    entries = {e["identity"]: e for e in make_plan(spec)}
    for ident in mixed:
        mix = entries[ident]["identity_params"]["mixup"]
        parents = {d["key"] for p in (mix["a"], mix["b"]) for d in by_ident.get(p, [])}
        sc = [v for v in by_ident[ident][0]["verdicts"] if v["check"] == "leakage"][0]["scores"]
        assert sc["identity"] == ident and not {v["key"] for v in sc["views"]} & parents


@pytest.mark.slow
def test_a_pool_that_never_gets_a_batch_ends_its_workers():
    """A resumed run with every shard done opens the pool and submits nothing: its started workers must
    still end with the pool (they once waited for work forever, and the process's exit waited for them)."""
    from dmsfactory.pipeline import shard_pool

    with shard_pool(2) as pool:
        procs = list(pool._ex._processes.values())
        assert len(procs) == 2 and all(p.is_alive() for p in procs)
    assert not any(p.is_alive() for p in procs)
    assert all(p.exitcode == 0 for p in procs)  # told to stop, not terminated


@pytest.mark.slow
def test_a_released_pool_ends_its_workers_while_the_block_still_runs():
    """``release()`` (before ``finalize``) lets the workers exit alongside the work that follows it in
    the block, instead of the block's end waiting for their exit."""
    from dmsfactory.pipeline import shard_pool

    with shard_pool(2) as pool:
        procs = list(pool._ex._processes.values())
        pool.release()
        pool.release()  # idempotent
        deadline = time.monotonic() + 60
        while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(p.is_alive() for p in procs), "the released workers did not exit while the block ran"
    assert all(p.exitcode == 0 for p in procs)  # told to stop, not terminated


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc (Linux)")
def test_the_fork_server_preload_imports_the_workers_modules_and_starts_no_thread():
    """The fork server imports :mod:`dmsfactory.preload` and then forks every worker: a thread started
    by that import would be forked mid-work (a lock it holds stays locked in the child)."""
    code = ("import os, sys, dmsfactory.preload; "
            "print(len(os.listdir('/proc/self/task')), all(m in sys.modules for m in ('torch', 'mediapipe', 'dlib', "
            "'albumentations', 'dmsfactory.privacy.stage')))")
    r = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **workerserver.SERVER_ENV), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[-2:] == ["1", "True"], r.stdout


@pytest.mark.slow
def test_pool_workers_are_forked_from_the_server_with_the_runs_environment_and_directory(tmp_path, monkeypatch):
    """The fork server starts early (its environment and directory are the run's at that moment);
    a worker forked later still gets the run's current environment and working directory."""
    from multiprocessing import forkserver

    if workerserver.pool_context().get_start_method() != "forkserver":  # pragma: no cover - Windows
        pytest.skip("no forkserver on this platform: workers are spawned")
    workerserver.start_pool_server(2)
    monkeypatch.setenv("DMSFACTORY_TEST_MARK", "set after the server started")
    monkeypatch.chdir(tmp_path)
    with pipeline.shard_pool(2) as pool:
        ppid = pool._ex.submit(os.getppid).result(timeout=600)
        env = pool._ex.submit(os.getenv, "DMSFACTORY_TEST_MARK").result(timeout=60)
        cwd = pool._ex.submit(os.getcwd).result(timeout=60)
    assert ppid == forkserver._forkserver._forkserver_pid != os.getpid()
    assert env == "set after the server started"
    assert Path(cwd).resolve() == tmp_path.resolve()


def test_the_fork_server_ends_with_the_process_that_started_it():
    """No process outlives the run: the fork server is stopped and reaped at exit, even while it is
    still importing (its CPU time then counts to the run)."""
    import psutil

    if workerserver.pool_context().get_start_method() != "forkserver":  # pragma: no cover - Windows
        pytest.skip("no forkserver on this platform: workers are spawned")
    code = ("from multiprocessing import forkserver; from dmsfactory import workerserver; workerserver.start_pool_server(2); "
            "print(forkserver._forkserver._forkserver_pid, flush=True)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    server = int(r.stdout.split()[-1])
    assert not psutil.pid_exists(server) or psutil.Process(server).status() == psutil.STATUS_ZOMBIE


def test_a_fork_server_started_on_a_guess_can_be_stopped_and_started_again():
    """``dmsfactory run`` starts the server before the spec says how many workers it wants; when the
    answer is one, it stops the server (and a later pool starts a new one)."""
    import psutil
    from multiprocessing import forkserver

    if workerserver.pool_context().get_start_method() != "forkserver":  # pragma: no cover - Windows
        pytest.skip("no forkserver on this platform: workers are spawned")
    workerserver.start_pool_server(2)
    pid = forkserver._forkserver._forkserver_pid
    assert pid is not None and psutil.pid_exists(pid)
    workerserver.stop_pool_server()
    assert forkserver._forkserver._forkserver_pid is None and not psutil.pid_exists(pid)
    workerserver.start_pool_server(2)
    assert forkserver._forkserver._forkserver_pid not in (None, pid)


def test_parallel_workers_take_the_larger_batches_first():
    from dmsfactory.plan import ShardJob

    jobs = [ShardJob("train", 0, (1,) * 5), ShardJob("train", 1, (1,) * 2), ShardJob("val", 0, (1,) * 4),
            ShardJob("test", 0, (1,) * 5)]
    order = [j.name for j in pipeline.parallel_order(jobs)]
    assert order == ["train-000000", "test-000000", "val-000000", "train-000001"]  # ties keep plan order


def test_a_process_freezes_what_its_first_worker_setup_made_and_only_then(monkeypatch, tiny_spec_dict):
    """``gc.freeze`` after the first worker's setup (imports and models out of every full collection's
    walk), not again for a second spec's worker: a later freeze would also pin that process's garbage."""
    frozen = []
    monkeypatch.setattr(pipeline, "_FROZEN", False)
    monkeypatch.setattr(pipeline.gc, "freeze", lambda: frozen.append(len(pipeline._LOCAL.workers)))
    for seed in (1101, 1102):  # two specs: two workers in this process
        pipeline.get_worker(parse_spec(dict(tiny_spec_dict, seed=seed)))
    assert frozen == [len(pipeline._LOCAL.workers) - 1]  # once, right after the first of the two


def test_kill_during_a_multi_worker_run_resumes_without_duplicates(tmp_path, tiny_spec_dict, write_spec):
    import psutil

    tiny_spec_dict.update({"identities": {"count": 24, "images_per_identity": 5}, "image": {"size": 96}, "shards": {"size": 4}})
    p = write_spec(tiny_spec_dict)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dmsfactory.cli", "run", str(p), "--out", str(out), "--workers", "2"]
    env = dict(os.environ, PREFECT_LOGGING_LEVEL="ERROR")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    progress = out / ".progress"
    deadline = time.time() + 300
    kids: list = []
    while time.time() < deadline:
        if progress.is_dir() and len(list(progress.glob("*.json"))) >= 3:
            kids = psutil.Process(proc.pid).children(recursive=True)
            break
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    assert kids, "no worker processes"
    os.kill(proc.pid, signal.SIGKILL)  # the main process only: its workers must not live on as orphans
    proc.wait()
    # the fork server and the workers forked from it (or spawned workers, where there is no fork server)
    pool = [k for k in kids if any(w in " ".join(_cmdline(k)) for w in ("forkserver", "spawn"))]
    assert len(pool) >= 2, [_cmdline(k) for k in kids]
    gone, alive = psutil.wait_procs(pool, timeout=15)
    assert not alive, f"worker processes outlived their killed parent: {alive}"
    os.killpg(proc.pid, signal.SIGKILL) if _group_alive(proc.pid) else None
    assert not (out / "manifest.json").exists(), "the run finished before the kill"
    done = {q.stem: json.loads(q.read_text()) for q in progress.glob("*.json")}
    kept = {n: (out / r["shard"]["path"]).stat().st_mtime_ns for n, r in done.items() if r.get("shard")}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    for n, mtime in kept.items():
        assert (out / done[n]["shard"]["path"]).stat().st_mtime_ns == mtime
    keys = Counter(doc["key"] for doc, _ in iter_records(out))
    assert sorted(keys) == sorted(e["key"] for e in make_plan(parse_spec(tiny_spec_dict))) and set(keys.values()) == {1}
    assert not list(out.rglob("*.partial"))


def _cmdline(p):
    try:
        return p.cmdline()
    except Exception:
        return []


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


# ------------------------------------------------------------------ finalize in constant memory
FIN_SPEC = {"identities": {"count": 1000, "images_per_identity": 10}, "augment": {"enabled": True},
            "verify": {"enabled": True}, "shards": {"size": 200}}


def _fixture(spec, out: Path, renders: int, shard: int = 200) -> list:
    """``renders`` plan entries as written records (source + one augmented view each) carrying what an
    identity-mode run writes (labels, params, verify and privacy verdicts, descriptors on 3 images per
    identity, pHashes; landmarks on every 50th): written straight to tars, as write_batch lays them out."""
    import cv2

    from dmsfactory.datasets.shards import progress_path, write_json_atomic, write_tar
    from dmsfactory.labelers.params import make_labels

    rng = np.random.default_rng(0)
    plan = make_plan(spec, renders)
    # batches never mix splits (shard_jobs' layout): split by split, in index order
    entries = [e for sp in ("train", "val", "test") for e in plan if e["split"] == sp]
    jpg = cv2.imencode(".jpg", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))[1].tobytes()
    lm = {"format": "mediapipe_refined_478", "xy": np.round(rng.random((478, 2)) * 16, 3).tolist(), "visible": [True] * 478}
    recs = []
    starts = []
    for sp in ("train", "val", "test"):
        idx = [i for i, e in enumerate(entries) if e["split"] == sp]
        starts += [(sp, n, idx[b : b + shard]) for n, b in enumerate(range(0, len(idx), shard))]
    for split, n, pos in starts:
        group = [entries[i] for i in pos]
        name = f"{split}-{n:06d}"

        def docs():
            for e in group:
                labels = make_labels(e)
                views = [{"key": f"{e['identity']}-v{v}", "sha256": "0" * 64, "faces": 1, "distance": 0.7} for v in range(3)]
                for j, key in enumerate((e["key"], e["key"] + "_a0")):
                    verdicts = [{"stage": "privacy", "check": "presence", "verdict": "keep", "reason": "face present",
                                 "scores": {"detected_by": ["mediapipe"], "run": ["mediapipe"], "expected": True, "mode": "identity"}},
                                {"stage": "privacy", "check": "leakage", "verdict": "keep", "reason": "identity ok",
                                 "scores": {"mode": "identity", "identity": e["identity"], "views": views, "deciding_view": views[0]["key"],
                                            "distance": float(0.6 + rng.random()), "margin": -0.1, "gallery": "g", "file": "f.png",
                                            "leaked": False, "gallery_distances": {"g": 0.7}}}]
                    if rng.random() < 0.4:
                        verdicts += [{"stage": "verify", "check": c, "verdict": "agree" if rng.random() < 0.8 else "disagree",
                                      "reason": "", "scores": {}} for c in ("face", "landmarks", "mouth", "head_pose", "gaze")]
                    doc = {"key": key, "index": e["index"], "split": split, "identity": e["identity"],
                           "source_key": e["key"] if j else None, "labels": labels, "params": e, "aug": [], "verdicts": verdicts,
                           "bbox": [2.0, 2.0, 14.0, 14.0],
                           "arrays": {"phash": (rng.random(64) > 0.5).astype(float).tolist()}}
                    if e["index"] % 10 < 3 and not j:
                        doc["arrays"]["face_descriptor"] = np.round(rng.normal(size=128) * 0.1, 5).tolist()
                    if e["index"] % 50 == 0:
                        doc["landmarks"] = lm
                    yield {"__key__": key, "json": json.dumps(doc).encode(), "jpg": jpg}

        info = write_tar(out / f"{name}.tar", docs(), 1 << 30, "")
        info["path"] = f"{name}.tar"
        rec = {"name": name, "split": split, "spec_hash": spec.content_hash(), "planned_keys": [e["key"] for e in group],
               "shard": info, "quarantine": None, "counts": {"accepted": 2 * len(group), "quarantined": 0}, "quarantine_reasons": {}}
        write_json_atomic(progress_path(out, name), rec)
        recs.append(rec)
    return recs


_FINALIZE = """
import json, resource, sys
from pathlib import Path
from dmsfactory import pipeline
from dmsfactory.spec import parse_spec
spec = parse_spec(json.loads(sys.argv[1]))
out = Path(sys.argv[2])
recs = [json.loads(p.read_text()) for p in sorted((out / ".progress").glob("*.json"))]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pipeline.finalize(spec, out, recs, None)
print(json.dumps({"before_kb": before, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _finalize_rss(spec_dict: dict, out: Path) -> dict:
    """Run finalize in a fresh process; its peak resident memory (what a run's finalize costs)."""
    r = subprocess.run([sys.executable, "-c", _FINALIZE, json.dumps(spec_dict), str(out)], capture_output=True, text=True,
                       timeout=900, env=dict(os.environ))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_finalize_of_20000_records_stays_under_a_memory_bound(tmp_path, tiny_spec_dict):
    tiny_spec_dict.update(FIN_SPEC)
    spec = parse_spec(tiny_spec_dict)
    _fixture(spec, tmp_path / "small", 1000)  # 2,000 records
    _fixture(spec, tmp_path / "big", 10000)  # 20,000 records
    small = _finalize_rss(tiny_spec_dict, tmp_path / "small")
    big = _finalize_rss(tiny_spec_dict, tmp_path / "big")
    m = json.loads((tmp_path / "big" / "manifest.json").read_text())
    assert sum(m["counts"][k] for k in ("train", "val", "test")) == 20000
    rep = json.loads((tmp_path / "big" / "privacy_report.json").read_text())
    assert rep["samples"] == 20000 and rep["leakage_mode"]["identities_judged"] == 1000
    assert json.loads((tmp_path / "big" / "verify_report.json").read_text())["images"] == 20000
    grown = (big["peak_kb"] - small["peak_kb"]) / 1024
    # holding the 18,000 extra documents as parsed JSON would take hundreds of MB; the one-pass reports
    # keep ~50 bytes per image (hash, keys) and the descriptors of the judged views
    assert grown < 32, f"finalize peak grew by {grown:.0f} MB from 2,000 to 20,000 records ({small} -> {big})"
