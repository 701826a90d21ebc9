"""The factory's stages wired together, as plain Python (no Prefect here).

``process_shard`` is the unit of work: one planned batch -> generate -> label -> verify ->
augment -> privacy -> one shard (+ its quarantine shard). The Prefect flow
(:mod:`dmsfactory.flows.factory`) runs one task per ``process_shard`` call; :func:`run_plain`
runs the same calls in a loop (used without Prefect and as the overhead baseline).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dmsfactory.datasets.card import build_manifest, pick_grid_samples, write_card
from dmsfactory.datasets.reader import iter_records
from dmsfactory.datasets.shards import clean_partials, finished_record, write_batch, write_json_atomic
from dmsfactory.generators import Generator, get_generator
from dmsfactory.labelers.params import LabelStage
from dmsfactory.plan import ShardJob, make_plan, shard_jobs
from dmsfactory.sample import CardSection, FaceSample, Stage, run_stages
from dmsfactory.spec import DatasetSpec

log = logging.getLogger("dmsfactory")


def build_stages(spec: DatasetSpec) -> list[Stage]:
    """The post-generation stages the spec enables, in order."""
    # augment before verify: an occluder placed by augmentation then reads as "undetectable", not
    # as a disagreement; privacy last, on exactly the pixels that will be written
    stages: list[Stage] = [LabelStage()]
    if spec.augment.enabled:
        from dmsfactory.augment import AugmentStage

        stages.append(AugmentStage(spec.augment, seed=spec.seed))
    if spec.verify.enabled:
        from dmsfactory.labelers.verify import VerifyStage

        stages.append(VerifyStage(spec.verify))
    if spec.privacy.enabled:
        from dmsfactory.privacy.stage import PrivacyStage

        stages.append(PrivacyStage(spec.privacy))
    return stages


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
        try:
            import torch

            torch.set_num_threads(spec.run.torch_threads)
        except ImportError:  # pragma: no cover
            pass
        gen = get_generator(spec)
        gen.setup()
        stages = build_stages(spec)
        for s in stages:
            s.setup()
        w = workers[h] = Worker(gen, stages)
    return w


def process_batch(spec: DatasetSpec, entries: list[dict[str, Any]]) -> list[FaceSample]:
    """Generate and run every stage on a batch; returns accepted and quarantined samples."""
    w = get_worker(spec)
    samples = w.generator.generate(list(entries))
    if len(samples) != len(entries):
        raise RuntimeError(f"generator {w.generator.name} returned {len(samples)} samples for {len(entries)} entries")
    return run_stages(w.stages, samples)


def process_shard(spec: DatasetSpec, job: ShardJob, out_dir: str | Path) -> dict[str, Any]:
    """Make one shard unless an intact one from the same spec exists (resume). Returns its record."""
    out_dir = Path(out_dir)
    spec_hash = spec.content_hash()
    keys = [e["key"] for e in job.entries]
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


_CLIP_LOCAL = threading.local()


def clip_jobs(spec: DatasetSpec, limit: int | None = None) -> list[tuple[str, list[dict[str, Any]]]]:
    """(shard name, clip plans) batches when the spec has a ``clips:`` section, else []."""
    if spec.clips is None:
        return []
    from dmsfactory.clips import clip_shard_jobs, make_clip_plan

    return clip_shard_jobs(make_clip_plan(spec, limit=limit), spec.clips.clips_per_shard)


def process_clip_shard(spec: DatasetSpec, name: str, clips: list[dict[str, Any]], out_dir: str | Path) -> dict[str, Any]:
    """Render one batch of clips into ``DIR/clips/<name>.tar`` unless an intact one exists (resume)."""
    from dmsfactory.clips.shards import CLIPS_DIR, write_clip_shard

    out_dir = Path(out_dir)
    spec_hash = spec.content_hash()
    keys = [c["key"] for c in clips]
    done = finished_record(out_dir, name, spec_hash, keys, subdir=CLIPS_DIR)
    if done is not None:
        done["resumed"] = True
        return done
    gen = getattr(_CLIP_LOCAL, "gen", None)
    if gen is None or getattr(_CLIP_LOCAL, "hash", None) != spec_hash:
        from dmsfactory.clips import ClipGenerator

        gen = _CLIP_LOCAL.gen = ClipGenerator(spec.procedural, spec.clips)
        _CLIP_LOCAL.hash = spec_hash
    samples = gen.generate(list(clips))
    rec = write_clip_shard(
        out_dir, name, samples, fmt=spec.clips.format, quality=spec.clips.jpeg_quality,
        max_bytes=spec.shards.max_bytes, planned_keys=keys, spec_hash=spec_hash,
    )
    rec["resumed"] = False
    return rec


class OutputMismatch(Exception):
    pass


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
    return shard_jobs(spec, make_plan(spec, limit))


def finalize(
    spec: DatasetSpec,
    out_dir: str | Path,
    records: list[dict[str, Any]],
    limit: int | None,
    clip_records: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Remove shards that are not in this plan, write manifest, stage reports and the card."""
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
    from dmsfactory.datasets.reader_files import write_reader_files  # wids indexes, croissant.json

    manifest["readers"] = write_reader_files(out, manifest)
    write_json_atomic(out / "manifest.json", manifest, indent=2)
    docs = []
    for doc, _ in iter_records(out, include_quarantine=True, with_images=False):
        doc.pop("landmarks", None)  # dataset-level reports need labels, params and verdicts, not geometry
        doc.get("arrays", {}).pop("landmarks_3d", None)
        docs.append(doc)
    grid = pick_grid_samples(out, 18)  # a small, deterministic sample grid
    sections: list[CardSection] = []
    worker = get_worker(spec)
    for part in [worker.generator, *worker.stages]:
        fin: Callable | None = getattr(part, "finalize", None)
        if fin is not None:
            sec = fin(out, docs)
            if sec is not None:
                sections.append(sec)
    clip_docs = []
    if clip_records:
        from dmsfactory.clips.shards import open_clip_shards

        for split in ("train", "val", "test"):
            clip_docs += [c["json"] for c in open_clip_shards(out, split, with_frames=False)] if any(
                r["split"] == split and r.get("shard") for r in clip_records
            ) else []
        sections.append(clip_section(manifest["clips"], clip_docs))
    sections.append(coverage_section(spec, docs + clip_docs))
    card = write_card(out, manifest, docs, grid, sections)
    return {"manifest": manifest, "card": str(card), "sections": sections, "out_dir": str(out)}


def coverage_section(spec: DatasetSpec, docs: list[dict[str, Any]]) -> CardSection:
    """Euro NCAP robustness axes x driver states, with empty cells flagged (docs/clips.md)."""
    from dmsfactory.datasets.coverage import coverage_gaps, coverage_markdown, coverage_matrix

    accepted = [d for d in docs if not any(v.get("verdict") == "quarantine" for v in d.get("verdicts", []))]
    m = coverage_matrix(accepted, spec.coverage.min_per_cell, spec.coverage.axes)
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
    from dmsfactory.clips.behaviour_report import card_parts  # behaviour vs published figures, with a plot

    b_md, b_files, _ = card_parts(clip_docs)
    return CardSection("Driver-state clips", "\n".join(md) + b_md, data=info, files=b_files, json_name=None)


class CoverageGap(Exception):
    user_error = True


def run_plain(
    spec: DatasetSpec,
    out_dir: str | Path,
    limit: int | None = None,
    overwrite: bool = False,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the whole factory in this process, shard after shard (no orchestration)."""
    out = prepare_output(spec, out_dir, overwrite)
    records = []
    for job in plan_jobs(spec, limit):
        rec = process_shard(spec, job, out)
        records.append(rec)
        if on_shard:
            on_shard(rec)
    clip_records = [process_clip_shard(spec, name, batch, out) for name, batch in clip_jobs(spec, limit)]
    return finalize(spec, out, records, limit, clip_records)


def default_threads() -> None:
    """Keep BLAS/OpenMP/OpenCV single-threaded per worker: faster on small busy machines (DESIGN.md)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass
