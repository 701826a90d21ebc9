"""Restartability on a real Prefect server: a deployment run killed mid-way and retried.

The flow-run process a worker started is SIGKILLed after some batches finished; the worker reports
the run as crashed; the run is rescheduled (what the UI's "Retry" does) and the same worker runs it
again. The retried run must reuse every batch finished before the kill (Prefect marks the ones
whose result was persisted ``Cached``), rewrite none of them and end with every planned key exactly
once.
"""

import copy
import json
import os
import signal
import time
from collections import Counter

import pytest
import yaml

from dmsfactory.datasets import iter_records, load_manifest
from dmsfactory.flows.deploy import prefect_bin, shared_deployments, shared_server, stop_process
from dmsfactory.flows.factory import RESULTS_DIR, batch_cache_key, resolve_target
from dmsfactory.pipeline import plan_jobs
from dmsfactory.plan import make_plan
from dmsfactory.spec import parse_spec

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def server():
    srv = shared_server()
    shared_deployments(srv)
    return srv


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(what)


def test_batch_cache_key_depends_on_spec_batch_keys_and_output(tmp_path):
    from conftest import TINY_SPEC

    spec = parse_spec(TINY_SPEC)
    jobs = plan_jobs(spec)
    h = spec.content_hash()
    k = batch_cache_key(h, "/a", jobs[0])
    assert k == batch_cache_key(h, "/a", jobs[0]) and h[:12] in k and jobs[0].name in k
    assert k != batch_cache_key(h, "/a", jobs[1]) and k != batch_cache_key(h, "/b", jobs[0])
    other = parse_spec({**copy.deepcopy(TINY_SPEC), "seed": 8})
    assert k != batch_cache_key(other.content_hash(), "/a", plan_jobs(other)[0])
    # --limit shortens the last batch of a split under the same name: a different key
    short = [j for j in plan_jobs(spec, limit=5) if j.name == jobs[0].name][0]
    assert len(short.entries) < len(jobs[0].entries) and batch_cache_key(h, "/a", short) != k


def test_killed_deployment_run_retried_reuses_finished_batches(server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment
    from prefect.settings import temporary_settings
    from prefect.states import Scheduled

    from conftest import TINY_SPEC

    spec_dict = copy.deepcopy(TINY_SPEC)
    spec_dict.update({"identities": {"count": 40, "images_per_identity": 2}, "shards": {"size": 4}})
    spec = parse_spec(spec_dict)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec_dict))
    out = tmp_path / "ds"
    progress = out / ".progress"
    n_jobs = len(plan_jobs(spec))
    assert n_jobs >= 12

    with temporary_settings(updates=server.settings()), get_client(sync_client=True) as c:
        fr = run_deployment("dmsfactory-factory/factory-nightly", timeout=0,
                            parameters={"spec_path": str(spec_path), "out": str(out)})
        worker = server.popen(
            [prefect_bin(), "--no-prompt", "worker", "start", "--pool", "dmsfactory-process", "--type", "process",
             "--install-policy", "never"],
            "worker-resume.log", cwd=tmp_path, PREFECT_WORKER_QUERY_SECONDS="1",
        )
        _wait(lambda: progress.is_dir() and len(list(progress.glob("*.json"))) >= 3, 240, "no batch finished")
        pid = c.read_flow_run(fr.id).infrastructure_pid
        assert pid, "the worker did not record the flow-run process id"
        os.kill(int(str(pid).rsplit(":", 1)[-1]), signal.SIGKILL)
        crashed = _wait(lambda: (s := c.read_flow_run(fr.id).state) and s.is_final() and s, 120, "kill not reported")
        assert crashed.is_crashed(), crashed
        assert not (out / "manifest.json").exists(), "the run finished before it was killed"

        done = {p.stem: json.loads(p.read_text()) for p in progress.glob("*.json")}
        assert 3 <= len(done) < n_jobs
        mtimes = {n: (out / r["shard"]["path"]).stat().st_mtime_ns for n, r in done.items() if r.get("shard")}
        target = resolve_target(str(out))
        jobs = {j.name: j for j in plan_jobs(spec)}
        persisted = {n for n in done
                     if (out / RESULTS_DIR / batch_cache_key(spec.content_hash(), target.out, jobs[n])).is_file()}
        assert persisted, "no batch result was persisted before the kill"

        # the machine is gone: stop its worker (it reports the crash once more on its own schedule), then
        # retry the same flow run (what the UI's Retry does) and let a fresh worker run it
        stop_process(worker)
        assert c.set_flow_run_state(fr.id, Scheduled(), force=True).state.is_scheduled()
        server.start_worker("dmsfactory-process", run_once=True, cwd=tmp_path)
        final = _wait(lambda: (f := c.read_flow_run(fr.id)).state.is_final() and f, 300, "retry did not finish")
        assert final.state.is_completed(), (final.state, (server.home / "worker-resume.log").read_text()[-4000:])
        assert final.run_count >= 2

        trs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])))
        shard_runs = [t for t in trs if t.name.startswith("make-shard-")]
        # the retry's task runs: a Cached one for every batch whose result was persisted before the kill
        cached = {t.name.removeprefix("make-shard-") for t in shard_runs if t.state.name == "Cached"}
        assert cached == persisted

    for n, mtime in mtimes.items():  # finished shards were reused, not rewritten
        assert (out / done[n]["shard"]["path"]).stat().st_mtime_ns == mtime
    keys = Counter(doc["key"] for doc, _ in iter_records(out, include_quarantine=True))
    assert sorted(keys) == sorted(e["key"] for e in make_plan(spec)) and set(keys.values()) == {1}
    m = load_manifest(out)
    assert m["counts"]["planned"] == len(keys) and len({s["path"] for s in m["shards"]}) == len(m["shards"])
    assert not list(out.rglob("*.partial"))
