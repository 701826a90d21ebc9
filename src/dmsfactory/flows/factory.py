"""The end-to-end factory as a Prefect flow: one task per shard-sized batch (never per image).

Wiring only: every task calls :mod:`dmsfactory.pipeline` (no Prefect there) and, for URL outputs,
:mod:`dmsfactory.datasets.remote`.

Restartability has two layers:

* **Files** (datasets/shards.py): a batch is finished when its ``.progress/<shard>.json`` record
  exists and its tars hash to the recorded sha256; ``pipeline.process_shard`` skips such batches.
* **Prefect results**: ``make-shard`` persists its record (JSON) under ``<out>/.prefect-results``
  with the cache key :func:`batch_cache_key` = spec hash + batch name + digest of the planned keys
  + output location. A rerun (or a retried flow run) finds the key and marks the batch ``Cached``
  without running it, so the UI shows which batches were reused. Before submitting, the flow checks
  each batch's files; a batch whose files are missing or corrupt is submitted with
  ``refresh_cache=True``, so a cached result never stands in for a shard that is not there.

Scale-out: ``cluster`` (or ``run.cluster`` in the spec) names an existing Dask scheduler
(``tcp://host:8786``) and the batches run there through ``prefect_dask.DaskTaskRunner``;
``local:N`` starts a temporary ``LocalCluster`` of N single-threaded workers. GPU-bound batches
(the diffusion backend on cuda/auto) are submitted under ``dask.annotate(resources={"GPU": 1})``
so they only run on workers started with ``--resources GPU=1``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import (
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from dmsfactory import pipeline
from dmsfactory.datasets.remote import RemoteDataset, is_url
from dmsfactory.datasets.shards import finished_record
from dmsfactory.plan import ShardJob
from dmsfactory.spec import DatasetSpec, load_spec

RESULTS_DIR = ".prefect-results"
GPU_RESOURCES = {"GPU": 1}


# ---------------------------------------------------------------- output locations
@dataclass(frozen=True)
class Target:
    """Where a run writes: ``out`` as the user named it; ``local`` where shards are written."""

    out: str
    local: str
    remote: bool

    def remote_dataset(self) -> RemoteDataset:
        return RemoteDataset(self.out, staging=self.local)


def resolve_target(out: str, staging: str | None = None) -> Target:
    if is_url(out):
        if out.startswith("file://") and not out.startswith("file:///"):
            raise ValueError(f"output.dir: {out!r}: file URLs need an absolute path (file:///abs/path)")
        rd = RemoteDataset(out, staging=staging)
        return Target(rd.url, str(rd.staging.resolve()), True)
    return Target(str(Path(out).resolve()), str(Path(out).resolve()), False)


def batch_cache_key(spec_hash: str, out: str, job: ShardJob) -> str:
    """The Prefect cache key of one batch: spec hash + batch name + planned keys + output location.

    The planned keys are in it because ``--limit`` makes the last batch of a split shorter under the
    same name; the location because two outputs of one spec are two datasets.
    """
    keys = job.keys
    digest = hashlib.sha256(json.dumps([spec_hash, out, job.name, keys]).encode()).hexdigest()
    return f"dmsf-{spec_hash[:12]}-{job.name}-{digest[:16]}"


def _cache_key(context: Any, parameters: dict[str, Any]) -> str:
    spec: DatasetSpec = parameters["spec"]
    target: Target = parameters["target"]
    return batch_cache_key(spec.content_hash(), target.out, parameters["job"])


def _where() -> str:
    """Which worker ran a batch: the Dask worker address, else host:pid."""
    try:
        from distributed import get_worker  # heavy: distributed (the Dask worker's address)

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def wants_gpu(spec: DatasetSpec) -> bool:
    """Batches that need a GPU: the diffusion backend unless it is pinned to the CPU."""
    return spec.backend == "diffusion" and spec.diffusion is not None and spec.diffusion.device != "cpu"


# ---------------------------------------------------------------- tasks
@task(
    name="make-shard",
    task_run_name="make-shard-{job.name}",
    retries=2,
    retry_delay_seconds=1,
    cache_key_fn=_cache_key,
    persist_result=True,
    result_serializer="json",
)
def shard_task(spec: DatasetSpec, job: ShardJob, target: Target) -> dict[str, Any]:
    """Generate, label, check and write one batch (in the flow's worker-process pool when it has one);
    upload it when the output is a URL."""
    rec = pipeline.run_shard(spec, job, target.local)
    if target.remote:
        rec["uploaded"] = target.remote_dataset().push_batch(rec)
    rec["worker"] = rec.get("worker") or _where()
    return rec


@task(
    name="make-clip-shard",
    task_run_name="make-clip-shard-{name}",
    retries=2,
    retry_delay_seconds=1,
    cache_policy=NO_CACHE,
)
def clip_shard_task(spec: DatasetSpec, name: str, clips: list[dict[str, Any]], target: Target) -> dict[str, Any]:
    """Render one batch of driver-state clips into ``DIR/clips/<name>.tar`` (resumes from intact files)."""
    rec = pipeline.process_clip_shard(spec, name, clips, target.local)
    rec["worker"] = _where()
    return rec


def run_clip_batches(spec: DatasetSpec, target: Target, limit: int | None, progress: bool) -> list[dict[str, Any]]:
    jobs = pipeline.clip_jobs(spec, limit)
    if not jobs:
        return []
    t = clip_shard_task.with_options(retries=spec.run.retries)
    futures = [t.submit(spec, name, batch, target) for name, batch in jobs]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(futures), unit="shard", desc=f"{spec.name} clips", file=sys.stderr)
    records = []
    for fut in as_completed(futures):
        records.append(dict(fut.result()))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return sorted(records, key=lambda r: r["name"])


@task(name="finalize-dataset", cache_policy=NO_CACHE)
def finalize_task(
    spec: DatasetSpec,
    target: Target,
    records: list[dict[str, Any]],
    limit: int | None,
    clip_records: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Manifest, card and stage reports; the run's artifacts; the final upload for URL outputs."""
    rd = target.remote_dataset() if target.remote else None
    if rd is not None:
        rd.pull_records(records)  # batches written by workers on other machines
    res = pipeline.finalize(spec, target.local, records, limit, clip_records)
    prune_results(spec, target, limit)
    if rd is not None:
        rd.push_final({r["name"] for r in records})
    manifest_loc = rd.url_of("manifest.json") if rd else str(Path(target.local) / "manifest.json")
    card_loc = rd.url_of("README.md") if rd else res["card"]
    publish_artifacts(spec, target, res, records)
    return {
        "manifest_path": manifest_loc,
        "card": card_loc,
        "counts": res["manifest"]["counts"],
        "out": target.out,
        "batches": len(records),
        "reused": sum(1 for r in records if r.get("resumed") or r.get("cached")),
        "cached": sum(1 for r in records if r.get("cached")),
        "workers": {r["name"]: r.get("worker") for r in records},
    }


def prune_results(spec: DatasetSpec, target: Target, limit: int | None) -> int:
    """Drop persisted batch results that are not this plan's (older specs, other limits)."""
    d = Path(target.local) / RESULTS_DIR
    if not d.is_dir():
        return 0
    h = spec.content_hash()
    keep = {batch_cache_key(h, target.out, j) for j in pipeline.plan_jobs(spec, limit)}
    n = 0
    for p in d.iterdir():
        if p.is_file() and p.name not in keep:
            p.unlink()
            n += 1
    return n


def _key(*parts: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]


def publish_artifacts(spec: DatasetSpec, target: Target, res: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    """Counts table, a summary, each stage's report (agreement, privacy), the sample grid, a link."""
    m = res["manifest"]
    c = m["counts"]
    name = m["name"]
    keys = []
    made = [r for r in records if not (r.get("resumed") or r.get("cached"))]
    create_table_artifact(
        key=_key("dmsfactory", name, "counts"),
        table=[{"split": k, "images": c[k]} for k in ("train", "val", "test", "quarantined")],
        description=f"dataset {name}: images per split from {c['planned']} planned renders (spec hash {m['spec_hash'][:12]})",
    )
    keys.append(_key("dmsfactory", name, "counts"))
    md = [
        f"# dmsfactory dataset `{name}`",
        "",
        f"Output: `{target.out}`, spec hash `{m['spec_hash'][:12]}`, schema {m['schema_version']}.",
        "",
        f"{c['planned']} renders planned; images written (renders and their augmented views):",
        "",
        "| split | images |",
        "|---|---|",
    ]
    md += [f"| {k} | {c[k]} |" for k in ("train", "val", "test", "quarantined")]
    md += [
        "",
        f"{len(records)} batches: {len(made)} made in this run, "
        f"{sum(1 for r in records if r.get('cached'))} reused from Prefect's result cache, "
        f"{sum(1 for r in records if r.get('resumed') and not r.get('cached'))} reused from finished files.",
    ]
    for sec in res["sections"]:
        md += ["", f"## {sec.title}", "", sec.markdown]
    create_markdown_artifact(key=_key("dmsfactory", name), markdown="\n".join(md), description=f"dataset {name}")
    keys.append(_key("dmsfactory", name))
    for sec in res["sections"]:  # the agreement and privacy tables, each as its own artifact
        k = _key("dmsfactory", name, sec.title)
        create_markdown_artifact(key=k, markdown=f"## {sec.title}\n\n{sec.markdown}", description=f"{name}: {sec.title}")
        keys.append(k)
    grid = Path(target.local) / "card" / "sample_grid.png"
    if grid.is_file():
        uri = _data_uri(grid)
        if uri:
            create_image_artifact(image_url=uri, key=_key("dmsfactory", name, "sample-grid"),
                                  description=f"{name}: first samples with landmarks")
            keys.append(_key("dmsfactory", name, "sample-grid"))
    card = res["card"]
    link = f"{target.out}/README.md" if target.remote else Path(card).resolve().as_uri()
    create_link_artifact(link=link, link_text=f"dataset card of {name}", key=_key("dmsfactory", name, "card"),
                         description=f"{name}: dataset card (README.md) next to the shards")
    keys.append(_key("dmsfactory", name, "card"))
    return keys


def _data_uri(png: Path, max_bytes: int = 400_000) -> str | None:
    """The sample grid as an inline JPEG data URI (the UI shows it without access to the files)."""
    import cv2

    img = cv2.imread(str(png), cv2.IMREAD_COLOR)
    if img is None:
        return None
    for width in (1024, 768, 512, 384):
        if img.shape[1] > width:
            img = cv2.resize(img, (width, round(img.shape[0] * width / img.shape[1])), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if ok and len(buf) <= max_bytes:
            return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()
    return None


# ---------------------------------------------------------------- flow building blocks
def prepare(spec: DatasetSpec, out: str, overwrite: bool, staging: str | None = None) -> Target:
    """Resolve ``out``; for URLs check/clear the remote and pull its finished batches into staging."""
    target = resolve_target(out, staging)
    if target.remote and spec.clips is not None:
        raise ValueError(
            "clips: URL outputs are not supported for clip shards yet; write to a local directory "
            "and upload it (docs/orchestration.md)"
        )
    if target.remote:
        rd = target.remote_dataset()
        rd.check_spec(spec.content_hash(), overwrite)
        if overwrite:
            rd.clear()
        pipeline.prepare_output(spec, target.local, overwrite)
        rd.pull(spec.content_hash())
    else:
        pipeline.prepare_output(spec, target.local, overwrite)
    return target


def in_flight_limit(workers: int | None, spec: DatasetSpec) -> int | None:
    """How many batches to keep submitted at once: ``workers`` (default ``run.workers``, else every
    core) on a thread pool, each slot feeding one worker process; unbounded on Dask, whose workers
    pull work themselves."""
    ctx = FlowRunContext.get()
    if ctx is not None and not isinstance(ctx.task_runner, ThreadPoolTaskRunner):
        return None
    return pipeline.resolve_workers(spec, workers)


def run_batches(
    spec: DatasetSpec,
    target: Target,
    jobs: list[ShardJob],
    gpu: bool | None = None,
    max_in_flight: int | None = None,
    progress_total: int | None = None,
) -> list[dict[str, Any]]:
    """One ``make-shard`` task per batch, at most ``max_in_flight`` at a time; returns their records.

    Finished batches come back from Prefect's result cache (state ``Cached``, ``rec["cached"]``);
    a batch whose files are missing or corrupt is run with ``refresh_cache=True``.
    """
    spec_hash = spec.content_hash()
    base = shard_task.with_options(retries=spec.run.retries, result_storage=Path(target.local) / RESULTS_DIR)
    refresh = base.with_options(refresh_cache=True)
    use_gpu = wants_gpu(spec) if gpu is None else gpu

    def submit(job: ShardJob):
        intact = finished_record(Path(target.local), job.name, spec_hash, job.keys)
        t = base if intact is not None else refresh  # never let a cached record stand in for lost files
        if use_gpu:
            import dask  # heavy: dask (GPU resource annotations only)

            with dask.annotate(resources=GPU_RESOURCES):
                return t.submit(spec, job, target)
        return t.submit(spec, job, target)

    bar = None
    if progress_total is not None:
        from tqdm import tqdm

        bar = tqdm(total=progress_total, unit="render", desc=spec.name, file=sys.stderr)
    pending = pipeline.parallel_order(jobs)
    limit = max_in_flight or len(pending) or 1
    running = [submit(pending.pop(0)) for _ in range(min(limit, len(pending)))]
    records = []
    while running:
        fut = next(as_completed(running))
        running.remove(fut)
        rec = dict(fut.result())
        if fut.state.name == "Cached":
            rec["cached"] = True
            rec["resumed"] = True
        records.append(rec)
        if bar is not None:
            bar.update(len(rec["planned_keys"]))
        if pending:
            running.append(submit(pending.pop(0)))
    if bar is not None:
        bar.close()
    return sorted(records, key=lambda r: r["name"])


# ---------------------------------------------------------------- the flow
@flow(name="dmsfactory-factory", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=4))
def factory_flow(
    spec_path: str,
    out: str | None = None,
    limit: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    staging: str | None = None,
    gpu: bool | None = None,
    workers: int | None = None,
    cluster: str | None = None,
) -> dict[str, Any]:
    """Spec -> shards + manifest + card (+ artifacts). ``out`` may be a path or an fsspec URL.

    Reruns and retried runs reuse finished batches (Prefect result cache + intact files).
    ``staging``: local directory for URL outputs (default under ~/.cache/dmsfactory/staging).
    ``gpu``: submit batches with the Dask resource GPU=1 (default: only for the diffusion backend).
    ``workers``: worker processes, one batch each (default ``run.workers``, else every core).
    ``cluster``: Dask scheduler for the batches (default ``run.cluster``); when this flow does not
    already run on Dask (a deployment), the batches run in a ``dmsfactory-batches`` subflow on it.
    """
    spec = load_spec(spec_path)
    target = prepare(spec, out or spec.output.dir, overwrite, staging)
    cluster = cluster or spec.run.cluster
    if cluster and not on_dask():
        sub = batches_flow.with_options(task_runner=task_runner(cluster))
        records = sub(spec_path=spec_path, out=target.out, local=target.local, limit=limit, gpu=gpu)
        return _finish(spec, target, records, limit, progress)
    jobs = pipeline.plan_jobs(spec, limit)
    total = sum(len(j.entries) for j in jobs) if progress else None
    n = in_flight_limit(workers, spec)
    # batches run in n worker processes (one MediaPipe/dlib graph each); a Dask runner brings its own
    with pipeline.shard_pool(n if n is not None and not on_dask() else 1) as pool:
        records = run_batches(spec, target, jobs, gpu, n, total)
        if pool is not None:
            pool.release()  # the workers exit while the clips and finalize run
        return _finish(spec, target, records, limit, progress)


def _finish(spec: DatasetSpec, target: Target, records: list[dict[str, Any]], limit: int | None,
            progress: bool) -> dict[str, Any]:
    cached = sum(1 for r in records if r.get("cached"))
    print(f"{spec.name}: {len(records)} batches, {cached} reused from Prefect's result cache")
    clip_records = run_clip_batches(spec, target, limit, progress)
    return finalize_task(spec, target, records, limit, clip_records)


def on_dask() -> bool:
    ctx = FlowRunContext.get()
    return ctx is not None and type(ctx.task_runner).__name__ == "DaskTaskRunner"


@flow(name="dmsfactory-batches", log_prints=True)
def batches_flow(spec_path: str, out: str, local: str, limit: int | None = None, gpu: bool | None = None) -> list[dict[str, Any]]:
    """The batches of a prepared output (see :func:`prepare`) on this flow's task runner (Dask)."""
    spec = load_spec(spec_path)
    target = Target(out, local, is_url(out))
    return run_batches(spec, target, pipeline.plan_jobs(spec, limit), gpu, in_flight_limit(None, spec))


def task_runner(cluster: str | None, workers: int = 1):
    """ThreadPool (default) or a DaskTaskRunner on an existing scheduler / a temporary local cluster."""
    if not cluster:
        return ThreadPoolTaskRunner(max_workers=max(1, workers))
    from prefect_dask import DaskTaskRunner  # heavy: prefect_dask, dask, distributed (only with a cluster)

    m = re.fullmatch(r"local(?::(\d+))?", cluster)
    if m:
        n = int(m.group(1) or workers)
        return DaskTaskRunner(cluster_kwargs={"n_workers": n, "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None})
    if not re.match(r"^(tcp|tls|ucx|inproc)://", cluster) and not re.match(r"^[\w.-]+:\d+$", cluster):
        raise ValueError(f"run.cluster / --cluster: {cluster!r} is not a Dask scheduler address "
                         "(tcp://host:8786) nor local[:N]")
    return DaskTaskRunner(address=cluster)


def run_factory(
    spec_path: str,
    out: str | None,
    limit: int | None,
    overwrite: bool,
    workers: int | None,
    progress: bool,
    cluster: str | None = None,
    staging: str | None = None,
    gpu: bool | None = None,
):
    """Run the flow with ``workers`` worker processes (default ``run.workers``, else every core), or on
    Dask when ``cluster`` (or ``run.cluster``) is set."""
    spec = load_spec(spec_path)
    if cluster is None:
        cluster = spec.run.cluster
    workers = pipeline.resolve_workers(spec, workers)
    f = factory_flow.with_options(task_runner=task_runner(cluster, workers))
    return f(spec_path=spec_path, out=out, limit=limit, overwrite=overwrite, progress=progress,
             staging=staging, gpu=gpu, workers=workers)
