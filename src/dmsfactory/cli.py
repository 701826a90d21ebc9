"""The ``dmsfactory`` command.

Exit codes: 0 success, 1 a check found a problem (leakcheck: a leak), 2 bad input (spec, paths,
missing model) with one line per problem and no traceback, 130 interrupted (Ctrl-C; a rerun resumes).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dmsfactory.env import apply_defaults, available_cores
from dmsfactory.errors import UserError
from dmsfactory.workerserver import start_pool_server, stop_pool_server  # standard library only

apply_defaults()  # Prefect, telemetry and logging settings measured on these machines; users may override them


class UsageError(UserError):
    """Bad input that the user can fix, found by the CLI itself; printed as lines, exit 2."""

    def __init__(self, *lines: str):
        self._lines = list(lines)
        super().__init__("; ".join(lines))

    @property
    def lines(self) -> list[str]:
        return self._lines


def _load(path: str):
    from dmsfactory.spec import SpecError, load_spec

    try:
        return load_spec(path)
    except SpecError as e:
        raise UsageError(*[f"{e.source}: {p}" for p in e.problems]) from None


def cmd_validate(a: argparse.Namespace) -> int:
    """The spec's fields, what it makes (renders, images, clips, frames), and what its commands need."""
    spec = _load(a.spec)
    from dmsfactory import preflight
    from dmsfactory.plan import make_identities
    from dmsfactory.summary import spec_lines

    try:
        idents = make_identities(spec)
    except ValueError as e:
        raise UsageError(f"{a.spec}: {e}") from None
    per_split = {s: sum(1 for i in idents if i.split == s) for s in ("train", "val", "test")}
    needs = preflight.run_needs(spec)
    later = preflight.train_needs(spec, a.spec)
    head = "OK" if not needs else "the spec is valid, but `run` needs what is missing below"
    print(f"{a.spec}: {head} — '{spec.name}', backend {spec.backend}, spec hash {spec.content_hash()[:12]}")
    for line in spec_lines(spec, per_split):
        print(f"  {line}")
    for line in preflight.lines(later):
        print(f"  before `dmsfactory train`: {line}")
    if needs:
        raise UsageError(*preflight.lines(needs))
    return 0


def _run_target(out: str, staging: str | None) -> str | None:
    """The local directory a run writes to (the staging directory for URL outputs)."""
    from dmsfactory.datasets.remote import is_url

    if not is_url(out):
        return str(Path(out).resolve())
    try:
        from dmsfactory.flows.factory import resolve_target

        return resolve_target(out, staging).local
    except (ValueError, ImportError):
        return None


def cmd_run(a: argparse.Namespace) -> int:
    guess = a.workers if a.workers is not None else available_cores()  # spec.run.workers may say 1 (below)
    if not a.cluster and guess > 1:  # the workers' fork server imports their modules while this process starts
        start_pool_server(guess)
    spec = _load(a.spec)
    if a.limit is not None and a.limit <= 0:
        raise UsageError(f"--limit: must be a positive number of renders (got {a.limit})")
    out = a.out or spec.output.dir
    import time

    from dmsfactory import pipeline, preflight
    from dmsfactory.datasets.remote import is_url
    from dmsfactory.interrupt import exit_on_interrupt, interrupted_line
    from dmsfactory.summary import finished_names, run_summary, run_summary_lines

    needs = preflight.run_needs(spec)  # before Prefect starts: a missing model fails in a second
    if needs:
        raise UsageError(*preflight.lines(needs))
    pipeline.default_threads()
    if a.workers is not None and a.workers < 1:
        raise UsageError(f"--workers: must be at least 1 (got {a.workers})")
    workers = pipeline.resolve_workers(spec, a.workers)
    if workers <= 1:
        stop_pool_server()  # started on a guess the spec or free memory overruled
    remote = is_url(out)
    try:
        if not remote:
            pipeline.prepare_output(spec, out, a.overwrite)
        jobs = [(j.name, [e["key"] for e in j.entries]) for j in pipeline.plan_jobs(spec, a.limit)]
        cjobs = [(n, [c["key"] for c in clips]) for n, clips in pipeline.clip_jobs(spec, a.limit)]
    except (pipeline.OutputMismatch, ValueError) as e:
        raise UsageError(str(e)) from None
    if a.no_prefect:
        if remote:
            raise UsageError(f"--no-prefect writes local directories only; {out!r} is a URL (drop --no-prefect)")
        if a.cluster:
            raise UsageError("--cluster runs batches through Prefect on Dask; drop --no-prefect")
    local = _run_target(out, a.staging)
    h = spec.content_hash()
    total = len(jobs) + len(cjobs)

    def done() -> int:
        if local is None:
            return 0
        return len(finished_names(local, h, jobs)) + len(finished_names(local, h, cjobs, subdir="clips"))

    where = out if remote else str(Path(out).resolve())
    kept = done() if not remote else 0
    if kept:
        print(f"resuming: {kept} of {total} shards are already done in {where}; they are kept (after a sha256 check)",
              file=sys.stderr)
    started = time.time()
    if a.no_prefect:
        from tqdm import tqdm

        n_renders = sum(len(k) for _, k in jobs)
        with exit_on_interrupt(lambda: interrupted_line(done(), total)), \
                tqdm(total=n_renders, unit="render", desc=spec.name, file=sys.stderr) as bar:
            res = pipeline.run_plain(spec, out, a.limit, a.overwrite, on_shard=lambda r: bar.update(len(r["planned_keys"])),
                                     workers=workers)
        manifest_path, card = str(Path(out).resolve() / "manifest.json"), res["card"]
    else:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        from dmsfactory.flows.factory import run_factory
        from dmsfactory.flows.interrupt import abandon_flow_run, quiet_temporary_server

        quiet_temporary_server()
        try:
            with exit_on_interrupt(lambda: interrupted_line(done(), total), cleanup=[abandon_flow_run]):
                res = run_factory(
                    a.spec, out, a.limit, a.overwrite, workers, progress=True,
                    cluster=a.cluster, staging=a.staging,
                )
        except ValueError as e:  # bad cluster address, clips to a URL, ...
            raise UsageError(str(e)) from None
        manifest_path, card = res["manifest_path"], res["card"]
    ended = time.time()
    lines = run_summary_lines(run_summary(local, started, ended)) if local is not None else []
    if lines:
        print(lines[0])
        lines[1] = lines[1].replace("shards:      ", f"shards:      {where}: ", 1)
        for line in lines[1:]:
            print(line)
    else:
        print(f"shards:      {where}")
    print(f"manifest:    {manifest_path}")
    print(f"card:        {card if remote else Path(card).resolve()}")
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
    from dmsfactory import preflight
    from dmsfactory.summary import train_summary_lines

    needs = preflight.train_needs(spec, a.spec)
    if needs:
        raise UsageError(*preflight.lines(needs))
    from dmsfactory.training import train_from_spec

    summary = train_from_spec(spec, Path(a.out))
    for line in train_summary_lines(summary):
        print(line)
    for k, label in (("model", "model:   "), ("report", "card:    "), ("ledger", "ledger:  ")):
        if k in summary:
            print(f"{label} {Path(summary[k]).resolve()}")
    return 0


def cmd_preview(a: argparse.Namespace) -> int:
    from dmsfactory.datasets.preview import contact_sheet

    try:
        res = contact_sheet(a.dataset, a.split, a.n, a.out)
    except ValueError as e:
        raise UsageError(str(e)) from None
    ids = res["identities"]
    print(f"preview: {Path(res['path']).resolve()}  ({res['images']} {res['split']} images, "
          f"{ids} identit{'ies' if ids != 1 else 'y'})")
    return 0


def cmd_export_openlabel(a: argparse.Namespace) -> int:
    from dmsfactory.datasets.openlabel import export_openlabel

    res = export_openlabel(Path(a.dataset), Path(a.out), per_clip=a.per_clip, include_landmarks=a.landmarks)
    imgs = res.get("images", 0)
    print(f"OpenLABEL: {len(res['files'])} file(s), {res['clips']} clip{'' if res['clips'] == 1 else 's'} "
          f"({res['frames'] - imgs} frames) and {imgs} single image{'' if imgs == 1 else 's'}: {res['frames']} OpenLABEL frames, "
          f"validated with {res['validated_with'] or 'nothing (no schema available)'}")
    for f in res["files"][:5]:
        print(f"  {f}")
    return 0


def cmd_keygen(a: argparse.Namespace) -> int:
    from dmsfactory.anonymize.keys import generate_key_file

    p = generate_key_file(a.keyfile)
    print(f"key: {Path(p).resolve()}  (256-bit AES key, mode 0600; keep it apart from the anonymised data: "
          "without it the originals cannot be recovered, with it anyone can recover them)")
    return 0


def cmd_anonymize(a: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from dmsfactory.anonymize.config import AnonymizeConfig
    from dmsfactory.anonymize.run import anonymize_path, total_frames

    fields = {"mode": a.mode, "backend": a.backend, "fov_deg": a.fov, "max_faces": a.max_faces, "blend": a.blend,
              "seed": a.seed, "refine": a.refine, "recognisable": a.recognisable}
    diff = {k: v for k, v in (("model", a.diffusion_model), ("steps", a.diffusion_steps)) if v is not None}
    if diff:
        fields["diffusion"] = diff
    try:
        cfg = AnonymizeConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as e:
        raise UsageError(*[f"--{'.'.join(str(x) for x in err['loc']).replace('_', '-')}: {err['msg']}" for err in e.errors()]) from None
    if cfg.backend == "diffusion" and not cfg.diffusion.model:
        raise UsageError("--backend diffusion needs --diffusion-model DIR (a StableDiffusionPipeline saved with "
                         "save_pretrained; nothing is downloaded). For a smoke test: "
                         "`python -m dmsfactory.generators.diffusion.tiny DIR` then --diffusion-model DIR/sd")
    from tqdm import tqdm

    try:
        total = total_frames(a.input)
    except ValueError as e:
        raise UsageError(str(e)) from None
    with tqdm(total=total or None, unit="frame", desc="anonymize", file=sys.stderr) as bar:
        rep = anonymize_path(a.input, a.out, cfg, progress=bar.update, fmt=a.format, key_path=a.key,
                             lossless=a.lossless, shard_size=a.shard_size, metrics_every=a.metrics_every,
                             identity_metrics=a.identity_metrics, overwrite=a.overwrite,
                             avoid_sources=not a.no_avoid_sources)
    out = Path(a.out).resolve()
    c, q = rep["recheck"], rep["image_quality"]
    print(f"anonymised: {out}  ({rep['frames']} frames, {rep['faces']} faces, {rep['no_face_frames']['count']} "
          f"frames without a face passed through unchanged)")
    print(f"labels kept: eyes {c['eye_state_agreement']}, mouth {c['mouth_state_agreement']}, pose within "
          f"{c['tolerance_deg']} deg {c['head_pose_within_tolerance']}; face detected {c['face_detected_on_output']}; "
          f"SSIM {q['ssim_frame_mean']}; {rep['speed']['frames_per_second']} frames/s")
    print(f"report:     {out / 'anonymize_report.md'}")
    if a.key:
        print(f"recovery:   {out / 'recovery'}  (dmsfactory recover {a.out} --key {a.key} --out DIR)")
    return 0


def cmd_recover(a: argparse.Namespace) -> int:
    from dmsfactory.anonymize.recover import recover_path

    r = recover_path(a.dir, a.key, a.out)
    print(f"recovered: {Path(r['out']).resolve()}  ({r['frames']} frames bit-exact, {r['videos']} videos)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dmsfactory", description="Synthetic driver-monitoring face data factory")
    sub = p.add_subparsers(dest="cmd", required=True)

    v = sub.add_parser("validate", help="check a spec and what its run needs (models, galleries, data)")
    v.add_argument("spec")
    v.set_defaults(fn=cmd_validate)

    r = sub.add_parser("run", help="make a dataset from a spec (Prefect flow)")
    r.add_argument("spec")
    r.add_argument("--out", help="output directory (default: the spec's output.dir)")
    r.add_argument("--limit", type=int, help="a stratified preview of N renders (N clips for clip specs): every split, "
                   "each class where N allows, the same samples the full run makes")
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

    pv = sub.add_parser("preview", help="contact sheet of a split: images with landmarks, labels under each tile")
    pv.add_argument("dataset", help="a dataset directory made by `dmsfactory run`")
    pv.add_argument("--split", default="train", help="train, val, test or quarantine (default train)")
    pv.add_argument("--n", type=int, default=64, help="images on the sheet (default 64; spread over identities)")
    pv.add_argument("--out", help="PNG to write (default DATASET/card/preview-SPLIT.png, linked from the card)")
    pv.set_defaults(fn=cmd_preview)

    o = sub.add_parser("export-openlabel", help="export a dataset's labels as ASAM OpenLABEL JSON")
    o.add_argument("dataset")
    o.add_argument("--out", required=True, help="output JSON file (a directory with --per-clip)")
    o.add_argument("--per-clip", action="store_true", help="one OpenLABEL file per clip")
    o.add_argument("--landmarks", action="store_true", help="include the 478 landmarks per frame (large)")
    o.set_defaults(fn=cmd_export_openlabel)

    k = sub.add_parser("keygen", help="create a key file for anonymize --key / recover")
    k.add_argument("keyfile")
    k.set_defaults(fn=cmd_keygen)

    an = sub.add_parser("anonymize", help="replace real faces by synthetic ones, keeping the labels (docs/anonymize.md)")
    an.add_argument("input", help="an image, a video (mp4, avi, mov, mkv, webm) or a folder of them")
    an.add_argument("--out", required=True, help="output directory")
    an.add_argument("--key", help="key file (dmsfactory keygen): store the original face regions encrypted for recovery")
    an.add_argument("--mode", choices=("replace", "hide"), default=None, help="replace (default): another identity; "
                    "hide: the original's face geometry under synthetic skin")
    an.add_argument("--backend", choices=("procedural", "diffusion"), default=None)
    an.add_argument("--format", choices=("shards", "media"), default="shards",
                    help="WebDataset shards (default) or media files mirroring the input")
    an.add_argument("--lossless", action="store_true", help="videos: FFV1 (.mkv) instead of the container's lossy codec")
    an.add_argument("--fov", type=float, default=None, help="horizontal field of view of the source camera, degrees (default 60)")
    an.add_argument("--max-faces", type=int, default=None, help="faces per frame (default 2)")
    an.add_argument("--blend", choices=("alpha", "poisson"), default=None)
    an.add_argument("--seed", type=int, default=None, help="chooses the synthetic identities (default 0)")
    an.add_argument("--refine", type=int, default=None, help="closed-loop corrections per still image (default 2)")
    an.add_argument("--recognisable", choices=("pixelate", "keep"), default=None,
                    help="a face dlib still matches to its original after identity guidance: pixelate it (default) "
                    "or keep it, flagged identity_removed: false in its label")
    an.add_argument("--shard-size", type=int, default=200, help="frames per shard")
    an.add_argument("--metrics-every", type=int, default=1, help="SSIM/PSNR on every Nth frame (0: none)")
    an.add_argument("--identity-metrics", action="store_true", help="dlib distances, gallery test and KID (slow: ~0.5 s/face)")
    an.add_argument("--no-avoid-sources", action="store_true", help="skip pass 1 (describing every real face of "
                    "the input so identity guidance keeps each synthetic face away from all of them)")
    an.add_argument("--diffusion-model", help="--backend diffusion: local StableDiffusionPipeline directory")
    an.add_argument("--diffusion-steps", type=int, default=None)
    an.add_argument("--overwrite", action="store_true", help="replace an earlier anonymisation in --out")
    an.set_defaults(fn=cmd_anonymize)

    rc = sub.add_parser("recover", help="restore the original frames of an anonymised output (needs the key)")
    rc.add_argument("dir", help="the --out directory of dmsfactory anonymize")
    rc.add_argument("--key", required=True, help="the key file used for anonymize --key")
    rc.add_argument("--out", required=True, help="an empty directory for the recovered originals")
    rc.set_defaults(fn=cmd_recover)
    from dmsfactory.transfer.cli import add_parser as add_transfer  # sim-to-real report (docs/transfer.md)

    add_transfer(sub)
    for sp in [p, *sub.choices.values()]:  # accepted before or after the command
        sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show the native libraries' log lines (MediaPipe/TFLite) and Prefect's INFO logs")
    return p


def _fast_exit() -> None:
    """At exit, move every object out of the cyclic garbage collector's reach (``gc.freeze``) before
    the interpreter's final collections: with torch, MediaPipe and albumentations loaded those took
    0.9-1.0 s after a one-process run had finished (0.1 s with only the CLI imported). Exit handlers,
    stream flushes and module teardown still run; only unreachable cycles are left to the OS."""
    import atexit
    import gc

    if not getattr(_fast_exit, "registered", False):
        _fast_exit.registered = True  # type: ignore[attr-defined]
        atexit.register(gc.freeze)


def main(argv: list[str] | None = None) -> int:
    _fast_exit()
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    if verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    from dmsfactory.quiet import filter_native_logs

    try:
        with filter_native_logs(enabled=not verbose):  # MediaPipe/TFLite W0000/I0000 lines (dmsfactory.quiet)
            return int(args.fn(args) or 0)
    except UserError as e:  # DmsFactoryError's user-error branch: one line per problem, no traceback
        for line in e.lines:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside a run's shard loop (which prints its own line)
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
