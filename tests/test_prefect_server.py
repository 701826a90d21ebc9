"""prefect.yaml on a real local Prefect server: deploy, schedule, a worker runs a deployment run.

No mocks: ``prefect server start --host 127.0.0.1`` on a free port with a temporary PREFECT_HOME,
``prefect deploy --all`` from prefect.yaml, ``prefect worker start --run-once`` on the process pool.
"""

import copy
import json
import time

import pytest
import yaml

from dmsfactory.datasets import iter_records, load_manifest
from dmsfactory.flows.deploy import DEFAULT_PREFECT_FILE, LocalServer, shared_deployments, shared_server, work_pools
from dmsfactory.plan import make_plan
from dmsfactory.spec import parse_spec

pytestmark = pytest.mark.timeout(400)


def tiny_spec():
    from conftest import TINY_SPEC

    return copy.deepcopy(TINY_SPEC)


@pytest.fixture(scope="module")
def server():
    srv = shared_server()
    shared_deployments(srv)
    return srv


def client(srv: LocalServer):
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def wait_final(c, flow_run_id, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fr = c.read_flow_run(flow_run_id)
        if fr.state is not None and fr.state.is_final():
            return fr
        time.sleep(0.5)
    raise TimeoutError(f"flow run {flow_run_id} not finished after {timeout} s (state {fr.state})")


def test_prefect_yaml_is_consistent():
    data = yaml.safe_load(DEFAULT_PREFECT_FILE.read_text())
    names = {d["name"]: d for d in data["deployments"]}
    assert {"factory-nightly", "factory-gpu", "shards", "report", "publish"} <= set(names)
    for d in data["deployments"]:  # module-path entrypoints: deployable from any directory
        mod, _, fn = d["entrypoint"].partition(":")
        assert "/" not in mod and not mod.endswith(".py") and fn, d["entrypoint"]
    assert work_pools()["dmsfactory-process"] == "process" and "dmsfactory-gpu" in work_pools()
    assert names["factory-nightly"]["schedules"][0]["cron"] == "0 2 * * *"


def test_deployments_and_nightly_schedule_registered(server):
    from prefect.settings import temporary_settings

    with temporary_settings(updates=server.settings()), client(server) as c:
        d = c.read_deployment_by_name("dmsfactory-factory/factory-nightly")
        assert d.entrypoint == "dmsfactory.flows.factory:factory_flow"
        assert d.work_pool_name == "dmsfactory-process"
        assert d.parameters["spec_path"] == "specs/demo.yaml"
        crons = [(s.schedule.cron, s.schedule.timezone, s.active) for s in d.schedules]
        assert crons == [("0 2 * * *", "UTC", True)]
        # prefect deploy recorded where relative spec paths resolve on the worker
        assert d.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(DEFAULT_PREFECT_FILE.parent)}}]
        for name in ("dmsfactory-shards/shards", "dmsfactory-report/report", "dmsfactory-publish/publish",
                     "dmsfactory-factory/factory-gpu"):
            assert c.read_deployment_by_name(name).entrypoint.startswith("dmsfactory.flows.")
        assert c.read_deployment_by_name("dmsfactory-factory/factory-gpu").work_pool_name == "dmsfactory-gpu"
        pools = {p.name: p.type for p in c.read_work_pools()}
        assert pools["dmsfactory-process"] == "process" and pools["dmsfactory-gpu"] == "process"


def test_worker_runs_a_deployment_run(server, tmp_path):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import temporary_settings

    spec_dict = tiny_spec()
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump(spec_dict))
    out = tmp_path / "ds"
    with temporary_settings(updates=server.settings()), client(server) as c:
        fr = run_deployment(
            "dmsfactory-factory/factory-nightly",
            parameters={"spec_path": str(spec_path), "out": str(out)},
            timeout=0,
        )
        assert fr.state.is_scheduled()
        worker = server.start_worker("dmsfactory-process", run_once=True, cwd=tmp_path)
        fr = wait_final(c, fr.id, 300)
        assert fr.state.is_completed(), f"{fr.state}: {server.log_tail()}"
        assert fr.deployment_id is not None
        worker.wait(60)
        assert worker.returncode == 0

        # the shards, manifest and card exist and hold every planned key exactly once
        spec = parse_spec(spec_dict)
        m = load_manifest(out)
        assert m["spec_hash"] == spec.content_hash()
        keys = [doc["key"] for doc, _ in iter_records(out, include_quarantine=True)]
        assert sorted(keys) == sorted(e["key"] for e in make_plan(spec))
        assert (out / "README.md").is_file() and list(out.glob("train-*.tar"))

        # the artifacts of this run: counts table, summary, stage reports, sample grid, card link
        arts = c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[fr.id])))
        by_key = {a.key: a for a in arts}
        counts = by_key["dmsfactory-tiny-counts"]
        assert counts.type == "table"
        rows = json.loads(counts.data) if isinstance(counts.data, str) else counts.data
        got = {r["split"]: r["images"] for r in rows}
        assert got == {k: m["counts"][k] for k in ("train", "val", "test", "quarantined")}
        assert f"from {m['counts']['planned']} planned renders" in counts.description
        assert by_key["dmsfactory-tiny"].type == "markdown" and "| train |" in by_key["dmsfactory-tiny"].data
        grid = by_key["dmsfactory-tiny-sample-grid"]
        assert grid.type == "image" and grid.data.startswith("data:image/jpeg;base64,")
        assert "README.md" in by_key["dmsfactory-tiny-card"].data
        # every stage report of the card (agreement, privacy, ...) is an artifact of its own
        card = (out / "README.md").read_text()
        stage_keys = set(by_key) - {"dmsfactory-tiny", "dmsfactory-tiny-counts", "dmsfactory-tiny-sample-grid",
                                    "dmsfactory-tiny-card"}
        assert stage_keys, "no stage report artifacts"
        for k in stage_keys:
            assert by_key[k].data.split("\n", 1)[0].lstrip("# ").strip() in card

        # the task runs: one make-shard per batch (never per image), all completed
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        trs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id])))
        shard_runs = [t for t in trs if t.name.startswith("make-shard")]
        from dmsfactory.pipeline import plan_jobs

        assert len(shard_runs) == len(plan_jobs(spec)) < len(keys)
        assert all(t.state.is_completed() for t in shard_runs)


def test_stage_flows_shards_then_report_then_publish(server, tmp_path):
    """The stage deployments' flows chained: shards -> report (reuses every batch) -> publish."""
    from prefect.settings import temporary_settings

    from dmsfactory.flows.stages import publish_flow, report_flow, shards_flow

    spec_dict = tiny_spec()
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump(spec_dict))
    out = tmp_path / "ds"
    with temporary_settings(updates=server.settings()):
        with pytest.raises(RuntimeError, match="not finished"):
            report_flow(spec_path=str(spec_path), out=str(out))
        s = shards_flow(spec_path=str(spec_path), out=str(out))
        assert not (out / "manifest.json").exists() and s["cached"] == 0
        r = report_flow(spec_path=str(spec_path), out=str(out))
        assert r["reused"] == r["batches"] == len(s["batches"])
        assert sum(v["accepted"] + v["quarantined"] for v in s["batches"].values()) == r["counts"]["planned"]
        p = publish_flow(dataset_dir=str(out), url=(tmp_path / "pub").as_uri())
    assert p["batches"] == r["batches"]
    assert json.loads((tmp_path / "pub" / "manifest.json").read_text())["counts"] == r["counts"]
