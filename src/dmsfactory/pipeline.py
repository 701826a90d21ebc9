"""The factory's stages wired together, as plain Python (no Prefect here).

``process_shard`` is the unit of work: one planned batch -> generate -> label -> augment ->
verify -> privacy -> one shard (+ its quarantine shard). The Prefect flow
(:mod:`dmsfactory.flows.factory`) runs one task per ``process_shard`` call; :func:`run_plain`
runs the same calls in a loop (used without Prefect and as the overhead baseline).

**All cores.** With ``workers`` > 1 the batches run in a :class:`ShardPool`: that many worker
processes (forked from a server that imported the heavy modules once: :mod:`dmsfactory.workerserver`; one
MediaPipe/dlib graph each), one batch at a time per process. A batch's bytes
do not depend on the process that made it (every draw is seeded from the spec and the sample, an
identity's privacy verdict from its whole plan), so any ``workers`` gives byte-identical shards.
Prefect keeps one task per batch in the flow process (thread pool): its caching, retries and result
persistence are unchanged, only the pixel work moves to the pool (docs/orchestration.md).

**Finalize streams**: manifest, card counts, stage reports and the sample grid come from one pass over
the shards (:func:`finalize`), one sample at a time, so its memory does not grow with the dataset, and
it loads no model (stage sections are functions of the records and the spec).
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from dmsfactory.augment.config import image_keys
from dmsfactory.clips.behaviour_report import card_parts  # behaviour vs published figures, with a plot
from dmsfactory.clips.generate import ClipGenerator
from dmsfactory.clips.plan import clip_shard_jobs, make_clip_plan
from dmsfactory.clips.shards import CLIPS_DIR, open_clip_shards, write_clip_shard
from dmsfactory.datasets.card import CardCounts, CardSamples, build_manifest, write_card, write_card_images
from dmsfactory.datasets.coverage import CoverageCounter, coverage_gaps, coverage_markdown
from dmsfactory.datasets.reader import iter_raw_split
from dmsfactory.datasets.reader_files import write_reader_files  # wids indexes, croissant.json
from dmsfactory.datasets.shards import ShardRecord, clean_partials, finished_record, write_batch, write_json_atomic
from dmsfactory.env import available_cores
from dmsfactory.errors import UserError
from dmsfactory.generators import Generator, get_generator
from dmsfactory.generators.diffusion.card import card_section as diffusion_card_section
from dmsfactory.interrupt import ignore_sigint
from dmsfactory.labelers.audit import audit_mode, audit_selection
from dmsfactory.labelers.params import LabelStage
from dmsfactory.labelers.verify import AgreementReport, VerifyStage
from dmsfactory.plan import ShardJob
from dmsfactory.planindex import lazy_shard_jobs, plan_index
from dmsfactory.privacy.identity import leakage_mode, view_order
from dmsfactory.privacy.leakage import gallery_summaries
from dmsfactory.privacy.report import PrivacyReport
from dmsfactory.privacy.stage import PrivacyStage
from dmsfactory.sample import CardSection, FaceSample, Stage, run_stages
from dmsfactory.spec import DatasetSpec
from dmsfactory.workerserver import pool_context, start_pool_server

log = logging.getLogger("dmsfactory")


def build_stages(spec: DatasetSpec, generator: Generator | None = None) -> list[Stage]:
    """The post-generation stages the spec enables, in order.

    Verification runs as an audit for exact-label backends (:mod:`dmsfactory.labelers.audit`), the
    privacy gate judges identities on views for backends whose identity is a parameter
    (:mod:`dmsfactory.privacy.identity`); ``generator`` renders views a batch does not hold."""
    # augment before verify: an occluder placed by augmentation then reads as "undetectable", not
    # as a disagreement; privacy last, on exactly the bytes that will be written
    stages: list[Stage] = [LabelStage(on_error=spec.run.on_error)]
    if spec.augment.enabled:
        from dmsfactory.augment import AugmentStage  # heavy: albumentations, torch

        stages.append(AugmentStage(spec.augment, seed=spec.seed, on_error=spec.run.on_error))
    if spec.verify.enabled:
        stages.append(VerifyStage(spec.verify, audit=audit_selection(spec) if audit_mode(spec) == "audit" else None))
    if spec.privacy.enabled:
        views = PlanViews(spec, generator) if leakage_mode(spec) == "identity" else None
        stages.append(PrivacyStage(spec.privacy, encoding=(spec.image.format, spec.image.jpeg_quality), views=views))
    return stages


class PlanViews:
    """The privacy gate's identity views (:class:`dmsfactory.privacy.identity.ViewSource`): candidates
    from the identity's full plan in :func:`~dmsfactory.privacy.identity.view_order`; a view the batch
    does not hold is rendered again (generate + label + augment: the same pixels its own batch writes)."""

    def __init__(self, spec: DatasetSpec, generator: Generator | None = None):
        self.spec = spec
        self.generator = generator
        self._entries: dict[str, dict[str, Any]] = {}
        self._pixel_stages: list[Stage] | None = None

    def candidates(self, identity: str) -> list[str]:
        aug = self.spec.augment if self.spec.augment.enabled else None
        keys = []
        for e in view_order(plan_index(self.spec).identity_entries(identity)):
            k = image_keys(e["key"], aug)[0]  # the source render when kept, else its first augmented view
            if len(self._entries) > 4096:
                self._entries.clear()
            self._entries[k] = e
            keys.append(k)
        return keys

    def render(self, key: str) -> FaceSample:
        e = self._entries[key]
        if self.generator is None:
            self.generator = get_generator(self.spec)
            self.generator.setup()
        if self._pixel_stages is None:
            self._pixel_stages = [LabelStage()]
            if self.spec.augment.enabled:
                from dmsfactory.augment import AugmentStage  # heavy: albumentations, torch

                self._pixel_stages.append(AugmentStage(self.spec.augment, seed=self.spec.seed))
        for s in run_stages(self._pixel_stages, self.generator.generate([dict(e)])):
            if s.key == key:
                return s
        raise RuntimeError(f"view {key}: the generator and augmentation did not make it again")


@dataclass
class Worker:
    """A generator and stages, set up once per process and reused for every batch."""

    generator: Generator
    stages: list[Stage]


_LOCAL = threading.local()  # one worker per thread: detector graphs (MediaPipe) are not thread-safe


def get_worker(spec: DatasetSpec) -> Worker:
    h = spec.content_hash()
    workers = getattr(_LOCAL, "workers", None)
    if workers is None:
        workers = _LOCAL.workers = {}
    w = workers.get(h)
    if w is None:
        _torch_threads(spec, load=spec.backend == "diffusion")
        gen = get_generator(spec)
        gen.setup()
        stages = build_stages(spec, gen)
        for s in stages:
            s.setup()
        _torch_threads(spec)  # a stage's setup may have loaded torch (privacy: the descriptor network)
        w = workers[h] = Worker(gen, stages)
        _freeze_once()
    return w


_FROZEN = False


def _freeze_once() -> None:
    """Move everything alive after the first worker's setup (the imported modules, the models) out of
    the garbage collector's reach, once per process (``gc.freeze``). Those objects live as long as the
    process, yet every full collection walked all of them again: ~0.4 million objects, 90-150 ms a walk,
    ~0.6 ms per render of a long run (docs/orchestration-log.md). Objects made later are collected as
    before; a cycle that was already garbage at this moment is never freed (there are a few dozen)."""
    global _FROZEN
    if not _FROZEN:
        _FROZEN = True
        gc.freeze()


def _torch_threads(spec: DatasetSpec, load: bool = False) -> None:
    """torch's threads per process to ``spec.run.torch_threads`` when torch is loaded (``load``: import
    it first; nothing when it is not installed)."""
    if not load and "torch" not in sys.modules:
        return
    try:
        import torch  # heavy: torch (only when already loaded or for diffusion)
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(spec.run.torch_threads)


def process_batch(spec: DatasetSpec, entries: list[dict[str, Any]]) -> list[FaceSample]:
    """Generate and run every stage on a batch; returns accepted and quarantined samples."""
    w = get_worker(spec)
    samples = w.generator.generate(list(entries))
    if len(samples) != len(entries):
        raise RuntimeError(f"generator {w.generator.name} returned {len(samples)} samples for {len(entries)} entries")
    return run_stages(w.stages, samples)


def process_shard(spec: DatasetSpec, job: ShardJob, out_dir: str | Path) -> ShardRecord:
    """Make one shard unless an intact one from the same spec exists (resume). Returns its record."""
    out_dir = Path(out_dir)
    spec_hash = spec.content_hash()
    keys = job.keys
    done = finished_record(out_dir, job.name, spec_hash, keys)
    if done is not None:
        done["resumed"] = True
        return done
    samples = process_batch(spec, list(job.entries))
    rec = write_batch(
        out_dir,
        job.name,
        samples,
        spec_hash=spec_hash,
        planned_keys=keys,
        fmt=spec.image.format,
        quality=spec.image.jpeg_quality,
        max_bytes=spec.shards.max_bytes,
    )
    rec["resumed"] = False
    return rec


# ---------------------------------------------------------------- worker processes
WORKER_MEMORY = 1.5 * 2**30  # measured peak of one worker on the demo spec: 0.96-1.24 GB (models, renderer cache)


def _available_memory() -> float | None:
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def resolve_workers(spec: DatasetSpec, workers: int | None = None) -> int:
    """``workers`` if given, else ``run.workers``, else every core (but no more processes than free
    memory holds at ``WORKER_MEMORY`` each: 64 cores must not start 64 x 1.2 GB of models)."""
    n = workers or spec.run.workers
    if n:
        return max(1, int(n))
    cores = available_cores()
    mem = _available_memory()
    return max(1, min(cores, int(mem // WORKER_MEMORY) if mem else cores))


def _pool_init(parent: int, env: dict[str, str] | None = None, cwd: str | None = None) -> None:
    ignore_sigint()  # Ctrl-C is the parent's: it prints the one line and ends the workers itself
    if env is not None:  # a forked worker has the fork server's environment and directory, not the run's
        os.environ.clear()
        os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    default_threads()
    ppid = os.getppid()  # the run's process (spawn) or the fork server, which exits with the run

    def gone() -> bool:
        if os.getppid() != ppid:
            return True
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            return True
        except OSError:  # pragma: no cover - alive, another user's pid
            pass
        return False

    def watch() -> None:  # a SIGKILLed parent leaves no orphan holding models and memory
        import time

        while True:
            time.sleep(1.0)
            if gone():
                os._exit(3)

    threading.Thread(target=watch, daemon=True, name="dmsfactory-parent-watch").start()


def _pool_shard(spec: DatasetSpec, job: ShardJob, out_dir: str) -> dict[str, Any]:
    rec = process_shard(spec, job, out_dir)
    rec["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return rec


class ShardPool:
    """``workers`` processes (forked from the fork server, :mod:`dmsfactory.workerserver`), each with its own
    generator, detectors and identity cache."""

    def __init__(self, workers: int):
        self.workers = workers
        start_pool_server(workers)  # when the run has not started it earlier
        self._ctx = pool_context()
        self._lock = threading.Lock()
        self._ex = self._new()
        self._procs: list[Any] = []  # the processes of released executors, joined by close()
        self._released: ProcessPoolExecutor | None = None
        self._manager: threading.Thread | None = None
        self._start_all()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self._ctx, initializer=_pool_init,
                                   initargs=(os.getpid(), dict(os.environ), os.getcwd()))

    def _start_all(self) -> None:
        """Start every worker now, with SIGINT ignored in them from the start: the executor would
        otherwise start them one per submit, at any time. Forked from the fork server, a worker gets
        the server's ignored SIGINT (:func:`start_pool_server`). Spawned, it inherits the ignored signal
        across exec from this process (which ignores it while they start) and Python then installs no
        KeyboardInterrupt handler. Either way a Ctrl-C while a worker is still importing prints no
        traceback (its initializer keeps SIGINT ignored). Main thread only (signal handlers can be set
        only there); elsewhere, or without the executor's ``_launch_processes``, the workers start on
        demand."""
        import signal

        if threading.current_thread() is not threading.main_thread():
            return
        launch = getattr(self._ex, "_launch_processes", None)  # CPython >= 3.9: start max_workers now
        if launch is None:
            return
        if self._ctx.get_start_method() == "forkserver":
            launch()  # waits for the server's imports (Ctrl-C stays live here: nothing is ignored)
        else:
            prev = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                launch()  # returns once every child has exec'd, i.e. inherited the ignored SIGINT
            finally:
                signal.signal(signal.SIGINT, prev)
        # The executor's manager thread (which alone tells workers to stop at shutdown) starts with the
        # first submit; a pool that never gets a batch (a resumed run with every shard done) would
        # leave its started workers waiting for work, and the interpreter's exit waiting for them.
        start_manager = getattr(self._ex, "_start_executor_manager_thread", None)
        if start_manager is not None:
            start_manager()

    def submit(self, spec: DatasetSpec, job: ShardJob, out_dir: str | Path):
        with self._lock:
            return self._ex.submit(_pool_shard, spec, job, str(out_dir))

    def run(self, spec: DatasetSpec, job: ShardJob, out_dir: str | Path) -> dict[str, Any]:
        """One batch in a worker process; a dead worker breaks the pool: it is replaced and the error
        raised (the flow's task retries the batch)."""
        ex = self._ex
        try:
            return ex.submit(_pool_shard, spec, job, str(out_dir)).result()
        except BrokenProcessPool as e:
            with self._lock:
                if self._ex is ex:
                    self._ex = self._new()
            raise RuntimeError(f"batch {job.name}: a worker process died ({e}); retry the batch") from e

    def release(self) -> None:
        """No more batches: tell the workers to exit now, without waiting for them (:meth:`close`
        waits). Shutting the pool down and waiting took ~0.85 s after a demo run's last batch;
        released before ``finalize``, the workers end while it runs."""
        with self._lock:
            ex = self._ex
            if self._released is ex:
                return
            self._procs += list((getattr(ex, "_processes", None) or {}).values())
            self._manager = getattr(ex, "_executor_manager_thread", None)  # shutdown() forgets it
            self._released = ex
        ex.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.release()
        if self._manager is not None:  # what shutdown(wait=True) would have joined
            self._manager.join()
        for p in self._procs:  # every worker is gone when the block ends (none left for exit to wait on)
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


_POOL: ShardPool | None = None


@contextmanager
def shard_pool(workers: int) -> Iterator[ShardPool | None]:
    """Run :func:`run_shard` calls in ``workers`` processes while the block runs (in-process for 1)."""
    global _POOL
    if workers <= 1:
        yield None
        return
    pool = ShardPool(workers)
    prev, _POOL = _POOL, pool
    try:
        yield pool
    finally:
        _POOL = prev
        pool.close()


def run_shard(spec: DatasetSpec, job: ShardJob, out_dir: str | Path) -> dict[str, Any]:
    """:func:`process_shard` in the active :func:`shard_pool`, or in this process."""
    pool = _POOL
    if pool is not None:
        return pool.run(spec, job, out_dir)
    return process_shard(spec, job, out_dir)


_CLIP_LOCAL = threading.local()


def clip_jobs(spec: DatasetSpec, limit: int | None = None) -> list[tuple[str, list[dict[str, Any]]]]:
    """(shard name, clip plans) batches when the spec has a ``clips:`` section, else []."""
    if spec.clips is None:
        return []

    return clip_shard_jobs(make_clip_plan(spec, limit=limit), spec.clips.clips_per_shard)


def process_clip_shard(spec: DatasetSpec, name: str, clips: list[dict[str, Any]], out_dir: str | Path) -> ShardRecord:
    """Render one batch of clips into ``DIR/clips/<name>.tar`` unless an intact one exists (resume)."""
    out_dir = Path(out_dir)
    spec_hash = spec.content_hash()
    keys = [c["key"] for c in clips]
    done = finished_record(out_dir, name, spec_hash, keys, subdir=CLIPS_DIR)
    if done is not None:
        done["resumed"] = True
        return done
    gen = getattr(_CLIP_LOCAL, "gen", None)
    if gen is None or getattr(_CLIP_LOCAL, "hash", None) != spec_hash:
        gen = _CLIP_LOCAL.gen = ClipGenerator(spec.procedural, spec.clips)
        _CLIP_LOCAL.hash = spec_hash
    samples = gen.generate(list(clips))
    rec = write_clip_shard(
        out_dir, name, samples, fmt=spec.clips.format, quality=spec.clips.jpeg_quality,
        max_bytes=spec.shards.max_bytes, planned_keys=keys, spec_hash=spec_hash,
    )
    rec["resumed"] = False
    return rec


class OutputMismatch(UserError):
    """``--out`` holds a dataset of another spec."""


def prepare_output(spec: DatasetSpec, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Create ``out_dir``; refuse to mix two different specs' datasets in one directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = out / "manifest.json"
    if m.is_file() and not overwrite:
        import json

        try:
            old = json.loads(m.read_text()).get("spec_hash")
        except (OSError, ValueError):
            old = None
        if old and old != spec.content_hash():
            raise OutputMismatch(
                f"{out} holds a dataset of another spec (hash {old[:10]}); pick a new --out or pass --overwrite"
            )
    if overwrite:
        for p in list(out.glob("*.tar")) + list((out / "quarantine").glob("*.tar")) + list((out / ".progress").glob("*")):
            p.unlink()
    clean_partials(out)
    return out


def plan_jobs(spec: DatasetSpec, limit: int | None = None) -> list[ShardJob]:
    """The run's batches; their entries are made on demand, in the worker that renders them."""
    return lazy_shard_jobs(spec, limit)


def parallel_order(jobs: list[ShardJob]) -> list[ShardJob]:
    """The order to hand batches to parallel workers: larger batches first (the batches started
    last are the splits' short ones, so a worker left alone at the end has less to do), otherwise
    plan order. Outputs do not depend on it: records are sorted by name, every batch is seeded alone."""
    return sorted(jobs, key=lambda j: -len(j.entries))


def shard_locator(out_dir: str | Path, records: list[dict[str, Any]]) -> Callable[[str], list[Path]]:
    """key -> the tar files of the batch that planned it (an augmented view ``K_aJ`` is K's batch)."""
    import re

    out = Path(out_dir)

    def locate(key: str) -> list[Path]:
        root = re.sub(r"_a\d+$", "", key)
        for r in records:
            if root in r.get("planned_keys", ()):
                return [out / r[p]["path"] for p in ("shard", "quarantine") if r.get(p)]
        return []

    return locate


def report_parts(spec: DatasetSpec, out_dir: str | Path, records: list[dict[str, Any]] | None = None) -> list[Any]:
    """The dataset-level report of each part the spec enables, as accumulators (``add(doc)``,
    ``section()``), in card order: generator, verification, privacy. No model is loaded: each is a
    function of the records and the spec (the privacy report reads the galleries' summaries from the
    descriptor cache, describing a gallery file only if it changed since the run)."""
    parts: list[Any] = []
    if spec.backend == "diffusion":
        parts.append(_DiffusionPart())
    if spec.verify.enabled:
        audit = audit_selection(spec).summary() if audit_mode(spec) == "audit" else None
        parts.append(AgreementReport(spec.verify, audit))
    if spec.privacy.enabled:
        parts.append(PrivacyReport(spec.privacy, gallery_summaries(spec.privacy), dataset_dir=out_dir,
                                   locate=shard_locator(out_dir, records) if records is not None else None))
    return parts


class _DiffusionPart:
    """The diffusion backend's card section needs only ``params.diffusion`` of each record."""

    def __init__(self) -> None:
        self.recs: list[dict[str, Any]] = []

    def add(self, doc: dict[str, Any]) -> None:
        d = (doc.get("params") or {}).get("diffusion")
        if d:
            self.recs.append({"params": {"diffusion": d}})

    def section(self) -> CardSection | None:
        return diffusion_card_section(self.recs)


def finalize(
    spec: DatasetSpec,
    out_dir: str | Path,
    records: list[dict[str, Any]],
    limit: int | None,
    clip_records: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Remove shards that are not in this plan, write manifest, stage reports and the card.

    One streaming pass over the written samples feeds every report (card counts, sample grid,
    contact sheets, coverage, verification, privacy): each shard is opened once, no list of documents
    is held and no model is loaded."""
    out = Path(out_dir)
    clip_records = clip_records or []
    clip_names = {r["name"] for r in clip_records}
    for p in list((out / "clips").glob("*.tar")) + list((out / "clips" / "quarantine").glob("*.tar")):
        if p.stem not in clip_names:
            p.unlink()
    names = {r["name"] for r in records}
    for p in list(out.glob("*.tar")) + list((out / "quarantine").glob("*.tar")):
        if p.stem not in names:
            p.unlink()
    for p in (out / ".progress").glob("*.json"):
        if p.stem not in names:
            p.unlink()
    manifest = build_manifest(spec, spec.content_hash(), records, limit)
    if clip_records:
        manifest["clips"] = {
            "shards": [{**r["shard"], "split": r["split"]} for r in sorted(clip_records, key=lambda r: r["name"]) if r.get("shard")],
            "quarantine": [
                {**r["quarantine"], "split": r["split"]} for r in sorted(clip_records, key=lambda r: r["name"]) if r.get("quarantine")
            ],
            "counts": {
                "clips": sum(r["counts"]["accepted"] for r in clip_records),
                "frames": sum(r["counts"].get("frames", 0) for r in clip_records),
                "quarantined": sum(r["counts"]["quarantined"] for r in clip_records),
            },
        }

    manifest["readers"] = write_reader_files(out, manifest)
    write_json_atomic(out / "manifest.json", manifest, indent=2)

    parts = report_parts(spec, out, records)
    counts = CardCounts()
    cover = CoverageCounter(spec.coverage.min_per_cell, spec.coverage.axes)
    samples = CardSamples()  # the sample grid and contact sheets, from this pass (no shard is read again)
    for doc, raw, quarantined, split in iter_raw_split(out, include_quarantine=True):
        counts.add(doc)
        cover.add(doc)
        samples.add(doc, raw, quarantined, split)
        for part in parts:
            part.add(doc)
    # the sample grid and contact sheets (OpenCV, mostly outside the GIL) are drawn in a thread while
    # this one computes the sections (charts, the privacy report's images)
    with ThreadPoolExecutor(1, thread_name_prefix="dmsfactory-card-images") as ex:
        images = ex.submit(write_card_images, out, manifest, samples)
        sections: list[CardSection] = []
        for part in parts:
            sec = part.section()
            if sec is not None:
                sections.append(sec)
        if clip_records:
            clip_docs = []
            for split in ("train", "val", "test"):
                if any(r["split"] == split and r.get("shard") for r in clip_records):
                    for c in open_clip_shards(out, split, with_frames=False):
                        clip_docs.append(c["json"])
                        cover.add(c["json"])
            sections.append(clip_section(manifest["clips"], clip_docs))
        sections.append(coverage_section(spec, cover))
        sheets = images.result()
    card = write_card(out, manifest, counts, sections, sheets)
    return {"manifest": manifest, "card": str(card), "sections": sections, "out_dir": str(out)}


def coverage_section(spec: DatasetSpec, docs: "list[dict[str, Any]] | Any") -> CardSection:
    """Euro NCAP robustness axes x driver states, with empty cells flagged (docs/clips.md).
    ``docs``: the records, or a :class:`~dmsfactory.datasets.coverage.CoverageCounter` fed with them."""
    if isinstance(docs, CoverageCounter):
        m = docs.matrix()
    else:
        c = CoverageCounter(spec.coverage.min_per_cell, spec.coverage.axes)
        for d in docs:
            c.add(d)
        m = c.matrix()
    if spec.coverage.fail_on_gap and not m["ok"]:
        gaps = coverage_gaps(m)
        raise CoverageGap(f"coverage.min_per_cell={spec.coverage.min_per_cell} not met in {len(gaps)} cells, e.g. {gaps[:5]}")
    return CardSection("Euro NCAP coverage", coverage_markdown(m), data=m, json_name="coverage.json")


def clip_section(info: dict[str, Any], clip_docs: list[dict[str, Any]]) -> CardSection:
    from collections import Counter

    c = info["counts"]
    scen = Counter(d["params"].get("scenario") for d in clip_docs)
    events: Counter = Counter()
    for d in clip_docs:
        for e in d["labels"]["temporal"].get("events", []):
            events[e.get("type", "?")] += 1
    md = [
        f"{c['clips']} clips ({c['frames']} frames), {c['quarantined']} quarantined; shards under `clips/`, "
        "read with `dmsfactory.clips.shards.open_clip_shards` / `frame_windows` (docs/clips.md).",
        "",
        "| scenario | clips |",
        "|---|---|",
    ]
    md += [f"| {k} | {v} |" for k, v in sorted(scen.items(), key=lambda kv: str(kv[0]))]
    if events:
        md += ["", "| temporal event (Euro NCAP) | count |", "|---|---|"]
        md += [f"| {k} | {v} |" for k, v in sorted(events.items())]

    b_md, b_files, _ = card_parts(clip_docs)
    return CardSection("Driver-state clips", "\n".join(md) + b_md, data=info, files=b_files, json_name=None)


class CoverageGap(UserError):
    """``coverage.fail_on_gap`` is set and a coverage cell holds fewer than ``min_per_cell`` samples."""


def run_plain(
    spec: DatasetSpec,
    out_dir: str | Path,
    limit: int | None = None,
    overwrite: bool = False,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Run the whole factory without orchestration: batch after batch in this process, or in
    ``workers`` processes (:class:`ShardPool`, at most ``workers`` batches in flight)."""
    from concurrent.futures import FIRST_COMPLETED, wait

    out = prepare_output(spec, out_dir, overwrite)
    jobs = plan_jobs(spec, limit)
    records = []
    with shard_pool(workers) as pool:
        if pool is None:
            for job in jobs:
                rec = process_shard(spec, job, out)
                records.append(rec)
                if on_shard:
                    on_shard(rec)
        else:
            if spec.clips is not None:  # only the clips' behaviour figure still uses matplotlib
                threading.Thread(target=_import_plotting, daemon=True, name="dmsfactory-card-imports").start()
            pending = parallel_order(jobs)
            running = {pool.submit(spec, pending.pop(0), out) for _ in range(min(2 * workers, len(pending)))}
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    rec = fut.result()
                    records.append(rec)
                    if on_shard:
                        on_shard(rec)
                    if pending:
                        running.add(pool.submit(spec, pending.pop(0), out))
            records.sort(key=lambda r: r["name"])
            pool.release()  # the workers exit while the clips and finalize run here
        clip_records = [process_clip_shard(spec, name, batch, out) for name, batch in clip_jobs(spec, limit)]
        return finalize(spec, out, records, limit, clip_records)


def _import_plotting() -> None:
    """Import matplotlib (~0.3 s) while worker processes render, not after them: ``finalize`` draws
    the clips' behaviour figure with it, and this process is idle until the batches end. (The card's
    other charts are drawn with Pillow, :mod:`dmsfactory.charts`.)"""
    try:
        import matplotlib  # heavy: matplotlib (plots only)

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot  # noqa: F401  # heavy: matplotlib (plots only)
    except Exception:  # noqa: BLE001 - finalize imports it again and reports what is wrong
        pass


def default_threads() -> None:
    """Keep BLAS/OpenMP/OpenCV single-threaded per worker: faster on small busy machines (DESIGN.md)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass
