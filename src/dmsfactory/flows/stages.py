"""The factory's stages as separate Prefect flows, for deployments that run them on their own.

* ``dmsfactory-shards``  (:func:`shards_flow`): spec -> shards (generate, label, augment, verify,
  privacy per batch); no card. Same tasks, cache keys and resume rules as the factory flow, so a
  later ``dmsfactory-report`` or ``dmsfactory-factory`` run reuses its batches.
* ``dmsfactory-report``  (:func:`report_flow`): finished shards -> manifest, dataset card, stage
  reports (agreement, privacy) and the run's artifacts. Needs every batch of the plan finished.
* ``dmsfactory-publish`` (:func:`publish_flow`): upload a finished local dataset to an fsspec URL
  (shards first, ``manifest.json`` last).

The end-to-end ``dmsfactory-factory`` flow (flows/factory.py) runs shards + report in one flow run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from dmsfactory import pipeline
from dmsfactory.datasets.remote import upload_dataset
from dmsfactory.datasets.shards import finished_record
from dmsfactory.flows.factory import finalize_task, in_flight_limit, prepare, resolve_target, run_batches
from dmsfactory.spec import load_spec


@flow(name="dmsfactory-shards", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=4))
def shards_flow(
    spec_path: str,
    out: str | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    staging: str | None = None,
    gpu: bool | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Spec -> one shard (+ quarantine shard) per batch; returns per-batch counts."""
    spec = load_spec(spec_path)
    target = prepare(spec, out or spec.output.dir, overwrite, staging)
    jobs = pipeline.plan_jobs(spec, limit)
    n = in_flight_limit(workers, spec)
    with pipeline.shard_pool(n or 1):
        records = run_batches(spec, target, jobs, gpu, n)
    cached = sum(1 for r in records if r.get("cached"))
    print(f"{spec.name}: {len(records)} batches written to {target.out}, {cached} reused from Prefect's result cache")
    return {
        "out": target.out,
        "batches": {r["name"]: r["counts"] for r in records},
        "cached": cached,
    }


@task(name="read-batch-records", cache_policy=NO_CACHE)
def read_records_task(spec_path: str, local: str, limit: int | None) -> list[dict[str, Any]]:
    spec = load_spec(spec_path)
    h = spec.content_hash()
    records, missing = [], []
    for job in pipeline.plan_jobs(spec, limit):
        rec = finished_record(Path(local), job.name, h, job.keys)
        if rec is None:
            missing.append(job.name)
        else:
            rec["resumed"] = True
            records.append(rec)
    if missing:
        raise RuntimeError(
            f"{local}: {len(missing)} batches of this spec are not finished (e.g. {missing[:3]}); "
            "run the dmsfactory-shards flow first"
        )
    return records


@flow(name="dmsfactory-report", log_prints=True)
def report_flow(spec_path: str, out: str | None = None, limit: int | None = None, staging: str | None = None) -> dict[str, Any]:
    """Finished shards -> manifest.json, README.md (card), reports and artifacts."""
    spec = load_spec(spec_path)
    target = prepare(spec, out or spec.output.dir, False, staging)
    records = read_records_task(spec_path, target.local, limit)
    return finalize_task(spec, target, records, limit)


@flow(name="dmsfactory-publish", log_prints=True)
def publish_flow(dataset_dir: str, url: str) -> dict[str, Any]:
    """Upload a finished local dataset directory to ``url`` (s3://…, file:///…, memory://…)."""
    if not Path(dataset_dir).is_dir():
        raise FileNotFoundError(f"dataset_dir: {dataset_dir} is not a directory")
    resolve_target(url)  # validates the URL and the fsspec backend
    names = upload_dataset(dataset_dir, url)
    manifest = json.loads((Path(dataset_dir) / "manifest.json").read_text())
    print(f"published {len(names)} batches of {manifest['name']} to {url}")
    return {"url": url, "batches": len(names), "counts": manifest["counts"]}
