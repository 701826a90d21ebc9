"""The ``dmsfactory`` command.

Exit codes: 0 success, 1 a check found a problem (leakcheck: a leak), 2 bad input (spec, paths,
missing model) with one line per problem and no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Prefect settings measured on these machines (DESIGN.md); users may override them.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class UsageError(Exception):
    """Bad input that the user can fix; printed as lines, exit 2."""

    def __init__(self, *lines: str):
        self.lines = list(lines)
        super().__init__("; ".join(lines))


def _load(path: str):
    from dmsfactory.spec import SpecError, load_spec

    try:
        return load_spec(path)
    except SpecError as e:
        raise UsageError(*[f"{e.source}: {p}" for p in e.problems]) from None


def cmd_validate(a: argparse.Namespace) -> int:
    spec = _load(a.spec)
    from dmsfactory.plan import make_identities

    try:
        idents = make_identities(spec)
    except ValueError as e:
        raise UsageError(f"{a.spec}: {e}") from None
    per_split = {s: sum(1 for i in idents if i.split == s) for s in ("train", "val", "test")}
    print(
        f"{a.spec}: OK — '{spec.name}', backend {spec.backend}, {spec.total_samples} samples "
        f"({spec.identities.count} identities x {spec.identities.images_per_identity}), "
        f"identities per split {per_split}, spec hash {spec.content_hash()[:12]}"
    )
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    spec = _load(a.spec)
    if a.limit is not None and a.limit <= 0:
        raise UsageError(f"--limit: must be a positive number of samples (got {a.limit})")
    out = a.out or spec.output.dir
    from dmsfactory import pipeline
    from dmsfactory.datasets.remote import is_url

    pipeline.default_threads()
    if a.workers is not None and a.workers < 1:
        raise UsageError(f"--workers: must be at least 1 (got {a.workers})")
    workers = pipeline.resolve_workers(spec, a.workers)
    remote = is_url(out)
    try:
        if not remote:
            pipeline.prepare_output(spec, out, a.overwrite)
        pipeline.plan_jobs(spec, a.limit)
        pipeline.clip_jobs(spec, a.limit)
    except (pipeline.OutputMismatch, ValueError) as e:
        raise UsageError(str(e)) from None
    if a.no_prefect:
        if remote:
            raise UsageError(f"--no-prefect writes local directories only; {out!r} is a URL (drop --no-prefect)")
        if a.cluster:
            raise UsageError("--cluster runs batches through Prefect on Dask; drop --no-prefect")
        from tqdm import tqdm

        total = min(a.limit or spec.total_samples, spec.total_samples)
        with tqdm(total=total, unit="img", desc=spec.name, file=sys.stderr) as bar:
            res = pipeline.run_plain(spec, out, a.limit, a.overwrite, on_shard=lambda r: bar.update(len(r["planned_keys"])),
                                     workers=workers)
        manifest = res["manifest"]
        counts, card, manifest_path = manifest["counts"], res["card"], str(Path(out).resolve() / "manifest.json")
        clips = manifest.get("clips", {}).get("counts")
    else:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        from dmsfactory.flows.factory import run_factory

        try:
            res = run_factory(
                a.spec, out, a.limit, a.overwrite, workers, progress=True,
                cluster=a.cluster, staging=a.staging,
            )
        except ValueError as e:  # bad cluster address, clips to a URL, ...
            raise UsageError(str(e)) from None
        counts, card, manifest_path = res["counts"], res["card"], res["manifest_path"]
        clips = None
        try:
            import json

            if not remote:
                clips = json.loads(Path(manifest_path).read_text()).get("clips", {}).get("counts")
        except (OSError, ValueError):
            pass
    where = out if remote else str(Path(out).resolve())
    print(f"shards:   {where}  (train {counts['train']}, val {counts['val']}, test {counts['test']}, "
          f"quarantined {counts['quarantined']})")
    if clips:
        print(f"clips:    {where}/clips  ({clips['clips']} clips, {clips['frames']} frames, quarantined {clips['quarantined']})")
    print(f"manifest: {manifest_path}")
    print(f"card:     {card if remote else Path(card).resolve()}")
    return 0


def cmd_leakcheck(a: argparse.Namespace) -> int:
    from dmsfactory.privacy.leakcheck import leakcheck

    return leakcheck(
        Path(a.input), [Path(g) for g in a.gallery], Path(a.report) if a.report else None, a.threshold,
        fail_on_duplicates=a.fail_on_duplicates, mode=a.mode,
    )


def cmd_train(a: argparse.Namespace) -> int:
    spec = _load(a.spec)
    if spec.train is None:
        raise UsageError(f"{a.spec}: train: section missing (see specs/dp-demo.yaml)")
    from dmsfactory.training import train_from_spec

    summary = train_from_spec(spec, Path(a.out))
    print(f"model:  {Path(a.out).resolve()}")
    for k in ("ledger", "report", "model"):
        if k in summary:
            print(f"{k}: {summary[k]}")
    return 0


def cmd_export_openlabel(a: argparse.Namespace) -> int:
    from dmsfactory.datasets.openlabel import export_openlabel

    res = export_openlabel(Path(a.dataset), Path(a.out), per_clip=a.per_clip, include_landmarks=a.landmarks)
    print(f"OpenLABEL: {len(res['files'])} file(s), {res['frames']} frames, {res['clips']} clips, "
          f"validated with {res['validated_with'] or 'nothing (no schema available)'}")
    for f in res["files"][:5]:
        print(f"  {f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dmsfactory", description="Synthetic driver-monitoring face data factory")
    sub = p.add_subparsers(dest="cmd", required=True)

    v = sub.add_parser("validate", help="check a dataset spec")
    v.add_argument("spec")
    v.set_defaults(fn=cmd_validate)

    r = sub.add_parser("run", help="make a dataset from a spec (Prefect flow)")
    r.add_argument("spec")
    r.add_argument("--out", help="output directory (default: the spec's output.dir)")
    r.add_argument("--limit", type=int, help="make only the first N planned samples (quick preview)")
    r.add_argument("--overwrite", action="store_true", help="discard shards of an earlier run in --out")
    r.add_argument("--workers", type=int, help="worker processes, one batch each (default: run.workers, else every core)")
    r.add_argument("--no-prefect", action="store_true", help="run the stages in a plain loop, without Prefect")
    r.add_argument("--cluster", help="Dask scheduler for the batches: tcp://host:8786 or local[:N] (default: run.cluster)")
    r.add_argument("--staging", help="local staging directory when --out is a URL (s3://, memory://, file:///)")
    r.set_defaults(fn=cmd_run)

    lc = sub.add_parser("leakcheck", help="check a shard or image directory against real face galleries")
    lc.add_argument("input", help="a dmsfactory shard directory or a directory of images")
    lc.add_argument("--gallery", action="append", required=True, help="real gallery (image or shard directory); repeatable")
    lc.add_argument("--report", help="report directory (default: INPUT/leakcheck)")
    lc.add_argument("--threshold", type=float, default=None, help="same-person descriptor distance (default: the dataset's, else 0.6)")
    lc.add_argument("--mode", choices=("auto", "identity", "image"), default="auto",
                    help="auto: reproduce the gate in its mode (identity views from the shards); image: per-image audit")
    lc.add_argument("--fail-on-duplicates", action="store_true", help="also exit 1 when two synthetic identities are one face")
    lc.set_defaults(fn=cmd_leakcheck)

    t = sub.add_parser("train", help="train/fine-tune the DMS classifier (DP-SGD or PATE)")
    t.add_argument("spec")
    t.add_argument("--out", required=True)
    t.set_defaults(fn=cmd_train)

    o = sub.add_parser("export-openlabel", help="export a dataset's labels as ASAM OpenLABEL JSON")
    o.add_argument("dataset")
    o.add_argument("--out", required=True, help="output JSON file (a directory with --per-clip)")
    o.add_argument("--per-clip", action="store_true", help="one OpenLABEL file per clip")
    o.add_argument("--landmarks", action="store_true", help="include the 478 landmarks per frame (large)")
    o.set_defaults(fn=cmd_export_openlabel)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except UsageError as e:
        for line in e.lines:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # named, user-fixable errors from stages carry this marker
        if getattr(e, "user_error", False) or type(e).__name__ == "ModelNotAvailable":
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
