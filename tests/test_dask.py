"""Scale-out on Dask (prefect-dask DaskTaskRunner) against the real test server.

A ``LocalCluster`` with one worker that offers the resource ``GPU=1``, plus a second worker that
joins it from the command line (``dask worker tcp://…``, the same way a worker on another machine
joins a scheduler). Both worker processes get ``PREFECT_API_URL`` of the test server.
"""

import copy
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dmsfactory.datasets import iter_records, load_manifest
from dmsfactory.flows.deploy import shared_server, stop_process
from dmsfactory.plan import make_plan
from dmsfactory.spec import parse_spec

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def server():
    return shared_server()


@pytest.fixture(scope="module")
def cluster(server, tmp_path_factory):
    from distributed import Client, LocalCluster

    env = {k: v for k, v in server.env.items() if k.startswith(("PREFECT_", "DO_NOT_TRACK", "OMP_", "HF_", "ORT_"))}
    env["OMP_NUM_THREADS"] = "1"
    lc = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, resources={"GPU": 1},
                      dashboard_address=None, host="127.0.0.1", env=env)
    log = open(tmp_path_factory.mktemp("dask") / "cpu-worker.log", "wb")
    cpu = subprocess.Popen(
        [str(Path(sys.executable).with_name("dask")), "worker", lc.scheduler_address, "--nthreads", "1",
         "--nworkers", "1", "--no-dashboard", "--name", "cpu-worker", "--host", "127.0.0.1"],
        env=server.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        with Client(lc.scheduler_address) as c:
            c.wait_for_workers(2, timeout=120)
            info = c.scheduler_info(n_workers=-1)["workers"]
        gpu = [a for a, w in info.items() if w.get("resources", {}).get("GPU")]
        assert len(gpu) == 1
        yield {"address": lc.scheduler_address, "gpu_worker": gpu[0], "workers": set(info)}
    finally:
        stop_process(cpu)
        log.close()
        lc.close()


def _spec(tmp_path):
    from conftest import TINY_SPEC

    d = copy.deepcopy(TINY_SPEC)
    d.update({"identities": {"count": 12, "images_per_identity": 3}, "shards": {"size": 6}})
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(d))
    return p, parse_spec(d)


def _run(server, spec_path, out, cluster, gpu):
    from prefect.settings import temporary_settings

    from dmsfactory.flows.factory import run_factory

    with temporary_settings(updates=server.settings()):
        return run_factory(str(spec_path), str(out), None, False, 1, False, cluster=cluster, gpu=gpu)


def test_two_dask_workers_share_batches_gpu_batches_go_to_gpu_worker_and_reruns_are_cached(server, cluster, tmp_path):
    spec_path, spec = _spec(tmp_path)
    t0 = time.monotonic()
    res = _run(server, spec_path, tmp_path / "a", cluster["address"], gpu=False)
    used = set(res["workers"].values())
    assert used <= cluster["workers"]
    assert len(used) == 2, f"batches ran on {used}, expected both workers"
    keys = sorted(doc["key"] for doc, _ in iter_records(tmp_path / "a", include_quarantine=True))
    assert keys == sorted(e["key"] for e in make_plan(spec))
    t_cpu = time.monotonic() - t0

    # GPU-annotated batches (dask resources GPU=1) run only on the worker that offers a GPU
    res_gpu = _run(server, spec_path, tmp_path / "b", cluster["address"], gpu=True)
    assert set(res_gpu["workers"].values()) == {cluster["gpu_worker"]}, res_gpu["workers"]

    # the same spec gives the same shards wherever its batches ran
    a = {s["path"]: s["sha256"] for s in load_manifest(tmp_path / "a")["shards"]}
    b = {s["path"]: s["sha256"] for s in load_manifest(tmp_path / "b")["shards"]}
    assert a == b and a
    print(f"2-worker dask run: {t_cpu:.1f} s for {len(keys)} images")

    # a rerun on the cluster is served entirely from the persisted results (Cached task runs)
    assert res["cached"] == 0
    again = _run(server, spec_path, tmp_path / "a", cluster["address"], gpu=False)
    assert again["cached"] == again["batches"] == res["batches"] and again["counts"] == res["counts"]


def test_cluster_option_is_validated():
    from dmsfactory.flows.factory import task_runner

    with pytest.raises(ValueError, match="run.cluster"):
        task_runner("not a scheduler")
    assert task_runner("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    assert task_runner("local:2").cluster_kwargs["n_workers"] == 2


def test_flow_with_cluster_parameter_runs_batches_in_a_dask_subflow(server, cluster, tmp_path):
    """How a deployment (whose flow runs on the thread pool) scales out: the ``cluster`` parameter."""
    from prefect.settings import temporary_settings

    from dmsfactory.flows.factory import factory_flow

    spec_path, spec = _spec(tmp_path)
    with temporary_settings(updates=server.settings()):
        res = factory_flow(spec_path=str(spec_path), out=str(tmp_path / "d"), cluster=cluster["address"])
    assert set(res["workers"].values()) <= cluster["workers"]
    assert res["counts"]["planned"] == len(make_plan(spec))
