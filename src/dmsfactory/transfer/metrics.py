"""Metrics with bootstrap intervals (plain numpy; no scikit-learn in the environment).

* Binary tasks: accuracy at the model's own 0.5 threshold (no threshold is fitted on real data for
  a trained model), balanced accuracy (mean of the two class recalls), ROC-AUC (Mann-Whitney U with
  ties counted one half). Chance: the majority-class rate, balanced accuracy 0.5, AUC 0.5.
* Landmarks: NME = mean point-to-point error over the points of a group divided by the outer
  eye-corner distance (iBUG points 36 and 45), per image, then averaged; groups all 68, inner 51
  (17-67) and jaw 17 (0-16).
* Angles: mean absolute error per angle; gaze: angle between the predicted and true 3D direction.
* 95 % intervals: percentile bootstrap, ``B`` resamples (default 1000) with a seeded generator.
  When the set has identities the resampling unit is the identity (all images of a person are drawn
  together: images of one person are not independent), else the image.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

N_BOOT = 1000
GROUPS = {"all68": np.arange(68), "inner51": np.arange(17, 68), "jaw17": np.arange(17)}
IOD = (36, 45)


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, np.float64)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    ss = s[order]
    # average ranks for ties
    i = 0
    r = np.arange(1, len(s) + 1, dtype=np.float64)
    while i < len(ss):
        j = i
        while j + 1 < len(ss) and ss[j + 1] == ss[i]:
            j += 1
        r[i : j + 1] = (i + j + 2) / 2.0
        i = j + 1
    ranks[order] = r
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) over all thresholds, from (0, 0) to (1, 1)."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, np.float64)
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(~ys)
    last = np.r_[np.nonzero(np.diff(ss))[0], len(ss) - 1]
    tpr = np.r_[0.0, tp[last] / max(1, y.sum())]
    fpr = np.r_[0.0, fp[last] / max(1, (~y).sum())]
    return fpr, tpr


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    y, pred = np.asarray(y), np.asarray(pred)
    return float((y == pred).mean()) if len(y) else float("nan")


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    y, pred = np.asarray(y), np.asarray(pred)
    rec = [float((pred[y == c] == c).mean()) for c in (0, 1) if (y == c).any()]
    return float(np.mean(rec)) if rec else float("nan")


def best_threshold(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """The threshold t (predict 1 when score > t) with the highest balanced accuracy, and that value."""
    y = np.asarray(y).astype(int)
    s = np.asarray(score, np.float64)
    u = np.unique(s)
    cands = np.r_[u[0] - 1.0, (u[:-1] + u[1:]) / 2.0, u[-1] + 1.0] if len(u) > 1 else np.r_[u[0] - 1.0, u[0]]
    # Every candidate at once: a class's rows predicted 0 at t are its scores <= t (a NaN score is never
    # > t, as -inf), counted by a binary search in the class's sorted scores. Each recall and their mean
    # are the same float operations as balanced_accuracy's, so the values, and the first maximum, are.
    recalls = []
    for c in (0, 1):
        sc = s[y == c]
        sc = np.sort(np.where(np.isnan(sc), -np.inf, sc))
        if len(sc):
            at_or_below = np.searchsorted(sc, cands, side="right")
            recalls.append((at_or_below if c == 0 else len(sc) - at_or_below) / len(sc))
    if not recalls:
        return float(cands[0]), -1.0
    b = recalls[0] if len(recalls) == 1 else (recalls[0] + recalls[1]) / 2
    j = int(np.argmax(b))
    return float(cands[j]), float(b[j])


def _units(n: int, groups: Sequence[str] | None) -> list[np.ndarray]:
    if groups is None:
        return [np.array([i]) for i in range(n)]
    idx: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        idx.setdefault(str(g), []).append(i)
    return [np.array(v) for v in idx.values()]


def bootstrap(stat: Callable[[np.ndarray], float], n: int, groups: Sequence[str] | None = None,
              n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of ``stat(indices)`` under (cluster) resampling of ``n`` items."""
    units = _units(n, groups)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(units), len(units))
        idx = np.concatenate([units[k] for k in pick])
        v = stat(idx)
        if np.isfinite(v):
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def binary_metrics(y: np.ndarray, score: np.ndarray, threshold: float | None = 0.5, groups=None, seed: int = 0,
                   n_boot: int = N_BOOT, pred: np.ndarray | None = None) -> dict:
    """Accuracy, balanced accuracy, AUC with 95 % bootstrap intervals; ``score`` > threshold = positive
    (or the given hard predictions ``pred``, e.g. from thresholds fitted per fold)."""
    y = np.asarray(y).astype(int)
    s = np.asarray(score, np.float64)
    pred = (s > threshold).astype(int) if pred is None else np.asarray(pred).astype(int)
    out = {"n": int(len(y)), "positives": int(y.sum()), "threshold": None if threshold is None else float(threshold),
           "accuracy": accuracy(y, pred), "balanced_accuracy": balanced_accuracy(y, pred), "auc": roc_auc(y, s)}
    for k, f in (("accuracy", lambda i: accuracy(y[i], pred[i])),
                 ("balanced_accuracy", lambda i: balanced_accuracy(y[i], pred[i])),
                 ("auc", lambda i: roc_auc(y[i], s[i]))):
        out[f"{k}_ci"] = list(bootstrap(f, len(y), groups, n_boot, seed))
    return out


def chance_binary(y: np.ndarray) -> dict:
    y = np.asarray(y).astype(int)
    maj = float(max(y.mean(), 1 - y.mean())) if len(y) else float("nan")
    return {"n": int(len(y)), "positives": int(y.sum()), "accuracy": maj, "balanced_accuracy": 0.5, "auc": 0.5,
            "note": "constant prediction of the majority class; AUC of any constant score"}


def nme_per_image(pred: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    """(N, 68, 2) predicted and true points in pixels -> per-image NME per group (by outer eye corners)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    iod = np.linalg.norm(true[:, IOD[0]] - true[:, IOD[1]], axis=1)
    iod = np.maximum(iod, 1e-6)
    err = np.linalg.norm(pred - true, axis=2)
    return {g: err[:, idx].mean(1) / iod for g, idx in GROUPS.items()}


def nme_metrics(per_image: dict[str, np.ndarray], groups=None, seed: int = 0, n_boot: int = N_BOOT) -> dict:
    out: dict = {"n": int(len(next(iter(per_image.values()))))}
    for g, v in per_image.items():
        v = np.asarray(v, np.float64)
        out[g] = float(v.mean()) if len(v) else float("nan")
        out[f"{g}_ci"] = list(bootstrap(lambda i, v=v: float(v[i].mean()), len(v), groups, n_boot, seed))
        out[f"{g}_median"] = float(np.median(v)) if len(v) else float("nan")
        out[f"{g}_failure_rate_10pct"] = float((v > 0.10).mean()) if len(v) else float("nan")
    return out


def angle_metrics(pred: np.ndarray, true: np.ndarray, names: Sequence[str], groups=None, seed: int = 0,
                  n_boot: int = N_BOOT) -> dict:
    """Mean absolute error per angle (degrees, wrapped to [-180, 180])."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    d = np.abs((pred - true + 180.0) % 360.0 - 180.0)
    out: dict = {"n": int(len(d))}
    for j, nm in enumerate(names):
        v = d[:, j]
        out[f"{nm}_mae"] = float(v.mean()) if len(v) else float("nan")
        out[f"{nm}_mae_ci"] = list(bootstrap(lambda i, v=v: float(v[i].mean()), len(v), groups, n_boot, seed))
    v = d.mean(1)
    out["mean_mae"] = float(v.mean()) if len(v) else float("nan")
    out["mean_mae_ci"] = list(bootstrap(lambda i: float(v[i].mean()), len(v), groups, n_boot, seed))
    return out


def direction(yaw_pitch_deg: np.ndarray) -> np.ndarray:
    """Unit vectors of (yaw, pitch) in degrees (any consistent convention: only differences matter)."""
    a = np.radians(np.asarray(yaw_pitch_deg, np.float64))
    y, p = a[:, 0], a[:, 1]
    return np.stack([np.cos(p) * np.sin(y), np.sin(p), np.cos(p) * np.cos(y)], 1)


def gaze_metrics(pred: np.ndarray, true: np.ndarray, groups=None, seed: int = 0, n_boot: int = N_BOOT) -> dict:
    a, b = direction(pred), direction(true)
    ang = np.degrees(np.arccos(np.clip((a * b).sum(1), -1.0, 1.0)))
    return {"n": int(len(ang)), "angular_error": float(ang.mean()) if len(ang) else float("nan"),
            "angular_error_ci": list(bootstrap(lambda i: float(ang[i].mean()), len(ang), groups, n_boot, seed)),
            "angular_error_median": float(np.median(ang)) if len(ang) else float("nan")}
