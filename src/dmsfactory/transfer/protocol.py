"""How each real set is judged: folds, the reference rows, learning curve and DP-SGD rows.

Every row is a prediction for every (detected) real row, so all rows share one denominator:

* ``synthetic_only``: the model trained on the synthetic shards alone, applied to the whole set.
  Binary tasks add ``synthetic_only_cv`` / ``_oracle``: its scores with a threshold fitted on real
  labels (:func:`threshold_rows`), on the training folds / on the whole set.
* ``real_kfold``: the same architecture trained from scratch on the real set, K-fold (K = 5): each
  row is predicted by the model that did not see its fold. Folds are grouped by identity when the
  set has identities (so a person never sits in a training and a test fold at once) and balanced by
  class.
* learning curve ``finetune_k{k}``: the synthetic model fine-tuned on k real images drawn from the
  training folds (k/2 per class for binary tasks), predicting the test fold; ``real_only_k{k}`` the
  same k images from scratch; ``finetune_all`` all training folds.
* ``dp_eps{e}``: the synthetic model (public data, no privacy cost) fine-tuned with DP-SGD on the
  training folds as the private set (privacy.dp.dp_sgd_fit: Opacus, Poisson sampling, per-sample
  clipping C = 1, sigma calibrated so that the fixed epochs reach epsilon, delta = 1/(10 n)).
* baselines without training: a score (EAR, mouth ratio) with its threshold fitted on the training
  folds (``..._cv``; the honest figure) and the best threshold on the whole set (``..._oracle``; an
  upper bound), or a landmark / angle predictor (dlib, MediaPipe).
* ``chance``: the majority class (binary), the training folds' mean shape / mean angles (regression).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dmsfactory.privacy.dp import PrivacyLedger, default_delta, dp_sgd_fit
from dmsfactory.transfer import metrics as M
from dmsfactory.transfer.crops import Box
from dmsfactory.transfer.jobs import Jobs
from dmsfactory.transfer.models import TASKS, augment, balanced_weights, fit, loss_fn, make_model, predict, to_input
from dmsfactory.transfer.real import RealTask

K_FOLDS = 5
LEARNING_CURVE_K = (50, 200)
DP_EPSILONS = (1.0, 4.0, 8.0)
DP_MAX_GRAD_NORM = 1.0
DP_BATCH = 64

Log = Callable[[str], None]


def make_folds(n: int, y: np.ndarray | None, groups: list[str] | None, k: int, seed: int) -> np.ndarray:
    """Fold index per row: whole groups per fold, greedy balance of rows (per class when ``y`` given)."""
    rng = np.random.default_rng(seed)
    if groups is None:
        groups = [str(i) for i in range(n)]
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(str(g), []).append(i)
    names = list(members)
    order = rng.permutation(len(names))
    names = [names[i] for i in order]
    names.sort(key=lambda g: -len(members[g]))  # stable: big groups first, ties in random order
    k = max(2, min(k, len(names)))
    fold = np.zeros(n, np.int64)
    cls = np.zeros((k, 2))
    tot = np.zeros(k)
    for g in names:
        idx = members[g]
        if y is not None:
            yy = np.asarray(y).reshape(len(y), -1)[idx, 0] > 0.5
            c = int(yy.mean() >= 0.5)
            f = int(np.lexsort((tot, cls[:, c]))[0])
            cls[f, 0] += int((~yy).sum())
            cls[f, 1] += int(yy.sum())
        else:
            f = int(np.argmin(tot))
        tot[f] += len(idx)
        fold[idx] = f
    return fold


def _subset_k(train_idx: np.ndarray, y: np.ndarray, k: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    if k >= len(train_idx):
        return train_idx
    if kind != "binary":
        return np.sort(rng.choice(train_idx, k, replace=False))
    yy = y[train_idx, 0] > 0.5
    pos, neg = train_idx[yy], train_idx[~yy]
    kp = min(len(pos), k // 2)
    kn = min(len(neg), k - kp)
    kp = min(len(pos), k - kn)
    return np.sort(np.r_[rng.choice(pos, kp, replace=False), rng.choice(neg, kn, replace=False)])


def _to_pixels(pred_crop: np.ndarray, boxes) -> np.ndarray:
    out = np.zeros((len(pred_crop), 68, 2))
    for i, (cx, cy, s) in enumerate(boxes):
        out[i] = Box(cx, cy, s).from_crop(pred_crop[i].reshape(68, 2))
    return out


def score_rows(task: str, rt: RealTask, pred: np.ndarray, seed: int, n_boot: int, threshold: float | None = 0.5,
               hard: np.ndarray | None = None) -> dict:
    """Metrics of one method's per-row output ``pred`` on ``rt``."""
    kind = TASKS[task].kind
    if kind == "binary":
        return M.binary_metrics(rt.y[:, 0], pred, threshold, rt.ids, seed, n_boot, pred=hard)
    if kind == "points":
        px = pred if pred.ndim == 3 else _to_pixels(pred, rt.boxes)
        return M.nme_metrics(M.nme_per_image(px, rt.true_px), rt.ids, seed, n_boot)
    if task == "head_pose":
        return M.angle_metrics(pred, rt.y, ("yaw", "pitch", "roll"), rt.ids, seed, n_boot)
    return M.gaze_metrics(pred, rt.y, rt.ids, seed, n_boot)


def _pred_shape(task: str, n: int) -> np.ndarray:
    kind = TASKS[task].kind
    return np.zeros(n) if kind == "binary" else np.zeros((n, TASKS[task].n_out))


def _class_weight(task: str, y: np.ndarray):
    return balanced_weights(y[:, 0]) if TASKS[task].kind == "binary" else None


def dp_finetune(model, x: np.ndarray, y: np.ndarray, task: str, eps: float, seed: int, ledger_path=None) -> tuple[object, dict]:
    """DP-SGD fine-tune of ``model`` on the private rows (x, y) with privacy.dp.dp_sgd_fit."""
    cfg = TASKS[task]
    n = len(x)
    delta = default_delta(n)
    ds = torch.utils.data.TensorDataset(torch.from_numpy(np.ascontiguousarray(x)),
                                        torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)))
    gen = torch.Generator().manual_seed(seed + 5)
    lf = loss_fn(cfg.kind, None)  # unweighted: class weights would be a statistic of the private data

    def step_loss(m, batch):
        xb, yb = batch
        if len(xb) == 0:
            return sum((p * 0).sum() for p in m.parameters())
        xi, yi = augment(to_input(xb), yb, cfg.kind, task, gen)
        return lf(m(xi), yi).mean()

    ledger = None
    if ledger_path is not None:
        ledger = PrivacyLedger(ledger_path, method="dp_sgd", private_records=n, target_epsilon=eps, delta=delta,
                               public_data="synthetic shards (public; pretraining costs no privacy budget)")
    model.train()  # Opacus validates a module in training mode
    opt = torch.optim.Adam(model.parameters(), lr=cfg.finetune_lr)
    model, info = dp_sgd_fit(model, opt, ds, step_loss, batch_size=min(DP_BATCH, n), epochs=cfg.dp_epochs,
                             target_epsilon=eps, delta=delta, max_grad_norm=DP_MAX_GRAD_NORM, seed=seed, ledger=ledger)
    if ledger is not None:
        ledger.finish(epsilon=info["epsilon"], delta=delta)
    return model, info


FOLD_PARTS = ("reference", "fine-tunes")


def fold_rows(task: str, x: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, syn_model, *, f: int,
              part: str, seed: int, real_epochs: int, ft_steps: int, learning_curve: tuple[int, ...],
              dp_epsilons: tuple[float, ...], ledger_stem=None) -> dict:
    """One part of one fold's trained rows, each predicting the test fold ``te``: ``reference`` the
    real-trained reference and the learning curve, ``fine-tunes`` the fine-tune on all training folds and
    the DP-SGD rows. A function of its arguments only (each part first seeds torch's global generator,
    every model its own initialisation and batch order), so the parts can run on worker processes
    (``transfer/jobs.py``) and give the numbers they give one after the other; two parts per fold keep
    two workers busy where five folds alone would leave one idle for the last."""
    cfg = TASKS[task]
    out: dict[str, np.ndarray] = {}
    if part == "reference":
        m = make_model(task, seed + 100 + f)  # seeds the global generator too
        fit(m, x[tr], y[tr], task, epochs=real_epochs, lr=cfg.lr, seed=seed + 200 + f,
            class_weight=_class_weight(task, y[tr]))
        out["real_kfold"] = predict(m, x[te], task)
        rng = np.random.default_rng(seed + 300 + f)
        for k in learning_curve:
            sub = _subset_k(tr, y, k, cfg.kind, rng)
            mm = copy.deepcopy(syn_model)
            fit(mm, x[sub], y[sub], task, steps=ft_steps, lr=cfg.finetune_lr, seed=seed + 400 + f + k,
                batch=32, class_weight=_class_weight(task, y[sub]))
            out[f"finetune_k{k}"] = predict(mm, x[te], task)
            ms = make_model(task, seed + 500 + f + k)
            fit(ms, x[sub], y[sub], task, steps=ft_steps, lr=cfg.lr, seed=seed + 600 + f + k, batch=32,
                class_weight=_class_weight(task, y[sub]))
            out[f"real_only_k{k}"] = predict(ms, x[te], task)
        return {"preds": out, "dp": {}, "model": m}
    if part != "fine-tunes":
        raise ValueError(f"part {part!r}: use one of {', '.join(FOLD_PARTS)}")
    torch.manual_seed(seed + 700 + f)
    mm = copy.deepcopy(syn_model)
    fit(mm, x[tr], y[tr], task, epochs=cfg.dp_epochs, lr=cfg.finetune_lr, seed=seed + 700 + f)
    out["finetune_all"] = predict(mm, x[te], task)
    dp: dict[str, dict] = {}
    for e in dp_epsilons:
        mm = copy.deepcopy(syn_model)
        lp = None if ledger_stem is None else Path(f"{ledger_stem}_eps{e:g}_fold{f}.json")
        mm, info = dp_finetune(mm, x[tr], y[tr], task, e, seed + 800 + f, lp)
        out[f"dp_eps{e:g}"] = predict(mm, x[te], task)
        dp[f"dp_eps{e:g}"] = {k: info[k] for k in ("epsilon", "delta", "noise_multiplier", "sample_rate", "steps",
                                                  "epochs", "accountant")}
    return {"preds": out, "dp": dp, "model": None}


def evaluate_set(task: str, rt: RealTask, syn_model, *, seed: int, n_boot: int = M.N_BOOT, folds: int = K_FOLDS,
                 learning_curve: tuple[int, ...] = LEARNING_CURVE_K, dp_epsilons: tuple[float, ...] = DP_EPSILONS,
                 settings: dict | None = None, log: Log = lambda s: None, ledger_dir=None,
                 extra_models: dict[str, object] | None = None, jobs: Jobs | None = None) -> dict:
    """All rows of the report for one real set. Returns {"methods": {...}, "predictions": {...}, ...}.
    ``jobs`` runs the folds' trainings side by side (same numbers as ``Jobs(1)``, the default): two
    parts per fold (:func:`fold_rows`)."""
    cfg = TASKS[task]
    st = settings or {}
    real_epochs = st.get("real_epochs", cfg.real_epochs)
    ft_steps = st.get("finetune_steps", cfg.finetune_steps)
    jobs = jobs or Jobs(1)
    n = len(rt)
    kind = cfg.kind
    preds: dict[str, np.ndarray] = {}
    extra: dict[str, dict] = {}
    preds["synthetic_only"] = predict(syn_model, rt.x, task)
    for name, m in (extra_models or {}).items():
        preds[name] = predict(m, rt.x, task)
    yb = rt.y if kind == "binary" else None
    fold = make_folds(n, yb, rt.ids, folds, seed)
    nf = int(fold.max()) + 1 if n else 0
    fold_models: dict[int, object] = {}
    for name in (["real_kfold", "finetune_all", "chance"] + [f"finetune_k{k}" for k in learning_curve]
                 + [f"real_only_k{k}" for k in learning_curve] + [f"dp_eps{e:g}" for e in dp_epsilons]):
        preds[name] = _pred_shape(task, n)
    dp_info: dict[str, list] = {f"dp_eps{e:g}": [] for e in dp_epsilons}
    splits = fold_splits(fold)
    parts = {"reference": "real-trained reference" + (" and learning curve (k = " + ", ".join(map(str, learning_curve))
                                                       + ")" if learning_curve else ""),
             "fine-tunes": "fine-tune on all training folds" + (" and DP-SGD" if dp_epsilons else "")}
    ledger_stem = None if ledger_dir is None else str(ledger_dir / rt.name)
    work = [(split, part) for split in splits for part in FOLD_PARTS]
    calls = [dict(task=task, x=rt.x, y=rt.y, tr=tr, te=te, syn_model=syn_model, f=f, part=part, seed=seed,
                  real_epochs=real_epochs, ft_steps=ft_steps, learning_curve=tuple(learning_curve),
                  dp_epsilons=tuple(dp_epsilons), ledger_stem=ledger_stem) for (f, tr, te), part in work]
    log(f"{rt.name}: {len(splits)} folds x ({'; '.join(parts.values())})"
        + (f" on {min(jobs.n, len(calls))} processes" if jobs.spreads(len(calls)) else ""))

    def done(i: int) -> None:
        (f, tr, te), part = work[i]
        log(f"{rt.name}: fold {f + 1}/{nf}: {parts[part]} done ({len(tr)} train / {len(te)} test)")

    for ((f, tr, te), part), r in zip(work, jobs.map(fold_rows, calls, done=done)):  # in fold order
        for name, p in r["preds"].items():
            preds[name][te] = p
        for name, info in r["dp"].items():
            dp_info[name].append(info)
        if r["model"] is not None:
            fold_models[f] = r["model"]
    for f, tr, te in splits:
        # chance / mean predictor from the training folds
        if kind == "binary":
            preds["chance"][te] = float(rt.y[tr, 0].mean() > 0.5)
        else:
            preds["chance"][te] = rt.y[tr].mean(0)
    methods: dict[str, dict] = {}
    for name, p in preds.items():
        if name == "chance" and kind == "binary":
            methods[name] = {**M.chance_binary(rt.y[:, 0]),
                             **{k: v for k, v in score_rows(task, rt, p, seed, n_boot, threshold=0.5).items()
                                if k in ("accuracy", "accuracy_ci")},
                             "balanced_accuracy": 0.5, "auc": 0.5}
            continue
        methods[name] = score_rows(task, rt, p, seed, n_boot)
    for name, info in dp_info.items():
        if info:
            methods[name]["privacy"] = {
                "epsilon_max": max(i["epsilon"] for i in info), "delta_max": max(i["delta"] for i in info),
                "noise_multiplier": [round(i["noise_multiplier"], 4) for i in info],
                "steps": [i["steps"] for i in info], "accountant": info[0]["accountant"],
                "max_grad_norm": DP_MAX_GRAD_NORM, "epochs": TASKS[task].dp_epochs,
                "unit": "one real image (record)"}
    if kind == "binary":  # the synthetic model's threshold set on real labels: how much of its gap is the threshold
        methods.update(threshold_rows("synthetic_only", task, rt, preds["synthetic_only"], splits, seed, n_boot))
    for b, s in rt.baselines.items():
        if kind == "binary":
            methods.update(threshold_rows(b, task, rt, s, splits, seed, n_boot))
            preds[b] = s
        else:
            ok = np.all(np.isfinite(s.reshape(len(s), -1)), axis=1)
            sub = _rows(rt, ok)
            methods[b] = {**score_rows(task, sub, s[ok], seed, n_boot), "rows_without_output": int((~ok).sum())}
            preds[b] = s
    extra["folds"] = {"k": nf, "grouped_by": rt.notes.get("grouping"), "sizes": [int((fold == f).sum()) for f in range(nf)]}
    return {"methods": methods, "predictions": preds, "fold": fold, "fold_models": fold_models, **extra}


def fold_splits(fold: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(fold, training rows, test rows) of each fold that has both."""
    nf = int(fold.max()) + 1 if len(fold) else 0
    splits = [(f, np.nonzero(fold != f)[0], np.nonzero(fold == f)[0]) for f in range(nf)]
    return [(f, tr, te) for f, tr, te in splits if len(te) and len(tr)]


def cv_threshold_predictions(y: np.ndarray, score: np.ndarray, splits) -> np.ndarray:
    """0/1 per row: ``score`` above the threshold fitted (:func:`metrics.best_threshold`) on the other
    folds' rows; 0 for rows in no split. ``splits``: (fold, train rows, test rows)."""
    hard = np.zeros(len(score), np.int64)
    for _, tr, te in splits:
        t, _ = M.best_threshold(y[tr], score[tr])
        hard[te] = (score[te] > t).astype(int)
    return hard


def threshold_rows(name: str, task: str, rt: RealTask, score: np.ndarray, splits, seed: int, n_boot: int) -> dict[str, dict]:
    """A binary score judged with a threshold set on real labels (:func:`metrics.best_threshold`: the
    best balanced accuracy): ``{name}_cv``, each fold's rows with the threshold fitted on the other
    folds (what a few labelled real images buy without training), and ``{name}_oracle``, the best
    threshold on the whole set (an upper bound). ``splits``: (fold, train rows, test rows)."""
    hard = cv_threshold_predictions(rt.y[:, 0], score, splits)
    t, _ = M.best_threshold(rt.y[:, 0], score)
    return {f"{name}_cv": {**score_rows(task, rt, score, seed, n_boot, threshold=None, hard=hard),
                           "note": "threshold fitted on the other folds"},
            f"{name}_oracle": {**score_rows(task, rt, score, seed, n_boot, threshold=t), "note": "threshold fitted on this set"}}


def _rows(rt: RealTask, mask: np.ndarray) -> RealTask:
    idx = np.nonzero(mask)[0]
    return RealTask(rt.name, rt.model_task, rt.x[idx], rt.y[idx], [rt.ids[i] for i in idx] if rt.ids else None,
                    [rt.files[i] for i in idx], rt.images, rt.detected, {}, [rt.boxes[i] for i in idx],
                    rt.true_px[idx] if rt.true_px is not None else None)


def synthetic_validation(task: str, model, val, seed: int, n_boot: int) -> dict:
    """In-domain figures on the synthetic validation split (identity-disjoint from train)."""
    if len(val) == 0:
        return {"n": 0}
    p = predict(model, val.x, task)
    kind = TASKS[task].kind
    if kind == "binary":
        return M.binary_metrics(val.y[:, 0], p, 0.5, val.ids, seed, n_boot)
    if kind == "points":
        return M.nme_metrics(M.nme_per_image(p.reshape(-1, 68, 2), val.y.reshape(-1, 68, 2)), val.ids, seed, n_boot)
    if task == "head_pose":
        return M.angle_metrics(p, val.y, ("yaw", "pitch", "roll"), val.ids, seed, n_boot)
    return M.gaze_metrics(p, val.y, val.ids, seed, n_boot)


def by_condition(task: str, model, val, keys=("lighting", "accessory", "yawn_type", "class")) -> dict:
    """Synthetic validation accuracy (binary) or NME (points) per condition value."""
    if len(val) == 0:
        return {}
    p = predict(model, val.x, task)
    kind = TASKS[task].kind
    out: dict[str, dict] = {}
    for key in keys:
        vals = [str(m.get(key)) for m in val.meta]
        d = {}
        for v in sorted(set(vals)):
            idx = np.array([i for i, u in enumerate(vals) if u == v])
            if kind == "binary":
                y = val.y[idx, 0]
                d[v] = {"n": int(len(idx)), "positives": int(y.sum()),
                        "accuracy": M.accuracy(y, (p[idx] > 0.5).astype(int))}
            elif kind == "points":
                e = M.nme_per_image(p[idx].reshape(-1, 68, 2), val.y[idx].reshape(-1, 68, 2))
                d[v] = {"n": int(len(idx)), "inner51": float(e["inner51"].mean())}
        out[key] = d
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr  # heavy: scipy

    if len(a) < 3:
        return float("nan")
    r = spearmanr(a, b).statistic
    return float(r) if r is not None and math.isfinite(r) else float("nan")
