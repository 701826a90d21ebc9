"""``dmsfactory transfer``: argparse wiring and the command (cli.py only calls :func:`add_parser`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dmsfactory.cli import UsageError
from dmsfactory.env import available_cores

MAX_LINES = 30  # problems printed; the rest are counted


def add_parser(sub) -> None:
    t = sub.add_parser(
        "transfer",
        help="sim-to-real report: models trained on the shards alone, tested on your real labelled images",
        description="Train fixed, seeded reference models on SHARDS_DIR and report how they do on REAL_DIR "
        "(layout: docs/transfer.md), next to the same models trained on the real images, training-free "
        "baselines and chance. Writes report.md/report.json/plots under --out and links it from the dataset card.",
    )
    t.add_argument("shards_dir", metavar="SHARDS_DIR", help="a dataset made by `dmsfactory run`")
    t.add_argument("--real", required=True, metavar="REAL_DIR", help="real labelled images in the documented layout")
    t.add_argument("--out", help="report folder (default: SHARDS_DIR/transfer)")
    t.add_argument("--tasks", nargs="+", metavar="TASK",
                   help="subset of eye, yawn, landmarks, head_pose, gaze (default: every task REAL_DIR has)")
    t.add_argument("--seed", type=int, default=0, help="seed of every model, fold and bootstrap (default 0)")
    t.add_argument("--max-synthetic", type=int, metavar="N", help="use the first N synthetic train samples")
    t.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (default 1: fastest on a busy shared CPU)")
    t.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="processes for the independent trainings (training seeds, control, real folds); the "
                        "numbers do not depend on it (default: every usable core)")
    t.add_argument("--control", action="store_true",
                   help="add a negative control: the model trained on the synthetic set with shuffled labels")
    t.add_argument("--quick", action="store_true",
                   help="leave out the learning curve and the DP-SGD rows (most of the report's time)")
    t.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="train the synthetic-only model with N training seeds and report the spread of its "
                        "real-set figures (default 1)")
    t.add_argument("--framing", choices=("exact", "detector"), default="exact",
                   help="what frames the synthetic face crops: their exact landmarks (default) or MediaPipe on "
                        "the render, as the real images are framed (docs/transfer.md, Crop rules)")
    t.add_argument("--no-augmented", action="store_true",
                   help="train on the rendered images alone, leaving out the augment stage's views: compare with "
                        "a report without it to see whether the augmentation helps on your data")
    t.add_argument("--no-card-link", action="store_true", help="do not add the report link to SHARDS_DIR/README.md")
    t.set_defaults(fn=cmd_transfer)


def cmd_transfer(a: argparse.Namespace) -> int:
    from dmsfactory.transfer.run import TransferInputError, run_transfer  # per command: --help stays light

    problems = []
    if a.threads is not None and a.threads < 1:
        problems.append(f"--threads: must be >= 1 (got {a.threads})")
    if a.jobs is not None and a.jobs < 1:
        problems.append(f"--jobs: must be >= 1 (got {a.jobs})")
    if a.seeds < 1:
        problems.append(f"--seeds: must be >= 1 (got {a.seeds})")
    if problems:
        raise UsageError(*problems)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)

    try:
        rep = run_transfer(a.shards_dir, a.real, a.out, tasks=tuple(a.tasks) if a.tasks else None, seed=a.seed,
                           max_synthetic=a.max_synthetic, threads=a.threads, control=a.control,
                           quick=a.quick, seeds=a.seeds, jobs=a.jobs or available_cores(),
                           link_card=not a.no_card_link, framing=a.framing,
                           augmented=not a.no_augmented, log=log)
    except TransferInputError as e:
        lines = e.problems[:MAX_LINES]
        if len(e.problems) > MAX_LINES:
            lines.append(f"... and {len(e.problems) - MAX_LINES} more problems of the same kinds")
        raise UsageError(*lines) from None
    out = Path(rep["out"])
    for name, s in rep["sets"].items():
        m = s.get("methods")
        if not m:
            print(f"{name}: skipped ({s.get('skipped')})")
            continue
        so, rk = m["synthetic_only"], m["real_kfold"]
        if "auc" in so:
            print(f"{name}: synthetic-only acc {so['accuracy']:.3f} AUC {so['auc']:.3f} | real k-fold acc "
                  f"{rk['accuracy']:.3f} AUC {rk['auc']:.3f} | detected {s['detected']}/{s['images']}")
        elif "inner51" in so:
            print(f"{name}: synthetic-only inner-51 NME {so['inner51']:.4f} | real k-fold {rk['inner51']:.4f} | "
                  f"dlib {m.get('dlib_68', {}).get('inner51', float('nan')):.4f} | detected {s['detected']}/{s['images']}")
        else:
            k = "mean_mae" if "mean_mae" in so else "angular_error"
            print(f"{name}: synthetic-only {k} {so[k]:.2f} | real k-fold {rk[k]:.2f} | detected {s['detected']}/{s['images']}")
    print(f"report:   {out / 'report.md'}")
    print(f"json:     {out / 'report.json'}")
    if rep.get("card_linked"):
        print(f"card:     {Path(a.shards_dir) / 'README.md'} links it")
    return 0
