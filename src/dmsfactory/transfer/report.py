"""The transfer report: markdown, plots (matplotlib, Agg) and per-row predictions."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from dmsfactory.transfer import metrics as M

LABELS = {
    "synthetic_only": "synthetic only",
    "synthetic_only_cv": "synthetic only, threshold from training folds",
    "synthetic_only_oracle": "synthetic only, best threshold on this set",
    "control_shuffled_labels": "control: synthetic, labels shuffled",
    "finetune_k50": "synthetic + fine-tune on 50 real",
    "finetune_k200": "synthetic + fine-tune on 200 real",
    "finetune_all": "synthetic + fine-tune on all training folds (ε = ∞, the DP rows' settings)",
    "dp_eps1": "synthetic + DP-SGD fine-tune, ε = 1",
    "dp_eps4": "synthetic + DP-SGD fine-tune, ε = 4",
    "dp_eps8": "synthetic + DP-SGD fine-tune, ε = 8",
    "real_only_k50": "real only, 50 images",
    "real_only_k200": "real only, 200 images",
    "real_kfold": "real only, k-fold (same model)",
    "mediapipe_ear_cv": "MediaPipe EAR, threshold from training folds",
    "mediapipe_ear_oracle": "MediaPipe EAR, best threshold on this set",
    "mediapipe_mouth_ratio_cv": "MediaPipe mouth ratio, threshold from training folds",
    "mediapipe_mouth_ratio_oracle": "MediaPipe mouth ratio, best threshold on this set",
    "dlib_68": "dlib 68-point predictor (non-commercial training data)",
    "mediapipe_mesh": "MediaPipe face mesh, iBUG map",
    "mediapipe_pnp": "MediaPipe + solvePnP (6-point model)",
    "mediapipe_iris": "MediaPipe iris offset + PnP head pose",
    "chance": "chance",
}
ORDER = ["synthetic_only", "synthetic_only_cv", "synthetic_only_oracle", "control_shuffled_labels", "finetune_k50",
         "finetune_k200", "finetune_all", "dp_eps1", "dp_eps4", "dp_eps8", "real_only_k50", "real_only_k200", "real_kfold"]
SET_TITLE = {"eye_state": "Eye state (face images, eyes cropped from MediaPipe's mesh)",
             "eye_crops": "Eye state (pre-cropped eye images)", "yawn": "Yawn / no yawn (face crops)",
             "landmarks": "68-point landmarks", "head_pose": "Head pose", "gaze": "Gaze"}


def _order(methods: dict) -> list[str]:
    rest = [m for m in methods if m not in ORDER and m != "chance"]
    return [m for m in ORDER if m in methods] + rest + (["chance"] if "chance" in methods else [])


def _pct(v, ci=None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    s = f"{100 * v:.1f} %"
    if ci and all(c is not None for c in ci):
        s += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return s


def _num(v, ci=None, fmt="{:.3f}") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    s = fmt.format(v)
    if ci and all(c is not None for c in ci):
        s += " [" + fmt.format(ci[0]) + ", " + fmt.format(ci[1]) + "]"
    return s


def _primary(task_kind: str, m: dict) -> str:
    if task_kind == "binary":
        return f"acc {_pct(m.get('accuracy'))}, AUC {_num(m.get('auc'))}"
    if task_kind == "points":
        return f"inner-51 NME {_pct(m.get('inner51'))}"
    if "mean_mae" in m:
        return f"MAE {_num(m.get('mean_mae'), fmt='{:.1f}')}°"
    return f"{_num(m.get('angular_error'), fmt='{:.1f}')}°"


def _kind(task: str) -> str:
    return {"eye": "binary", "yawn": "binary", "landmarks": "points"}.get(task, "angles")


def method_table(task: str, methods: dict) -> list[str]:
    kind = _kind(task)
    if kind == "binary":
        lines = ["| method | n | accuracy [95 % CI] | balanced accuracy [95 % CI] | ROC-AUC [95 % CI] |", "|---|---:|---|---|---|"]
        for k in _order(methods):
            m = methods[k]
            lines.append(f"| {LABELS.get(k, k)} | {m.get('n', '')} | {_pct(m.get('accuracy'), m.get('accuracy_ci'))} | "
                         f"{_pct(m.get('balanced_accuracy'), m.get('balanced_accuracy_ci'))} | "
                         f"{_num(m.get('auc'), m.get('auc_ci'))} |")
    elif kind == "points":
        lines = ["| method | n | NME all 68 [95 % CI] | inner 51 [95 % CI] | jaw 17 [95 % CI] | inner-51 NME > 10 % |",
                 "|---|---:|---|---|---|---:|"]
        for k in _order(methods):
            m = methods[k]
            lines.append(f"| {LABELS.get(k, k)} | {m.get('n', '')} | {_pct(m.get('all68'), m.get('all68_ci'))} | "
                         f"{_pct(m.get('inner51'), m.get('inner51_ci'))} | {_pct(m.get('jaw17'), m.get('jaw17_ci'))} | "
                         f"{_pct(m.get('inner51_failure_rate_10pct'))} |")
    elif task == "head_pose":
        lines = ["| method | n | yaw MAE | pitch MAE | roll MAE | mean MAE [95 % CI] |", "|---|---:|---|---|---|---|"]
        for k in _order(methods):
            m = methods[k]
            lines.append(f"| {LABELS.get(k, k)} | {m.get('n', '')} | {_num(m.get('yaw_mae'), fmt='{:.1f}')}° | "
                         f"{_num(m.get('pitch_mae'), fmt='{:.1f}')}° | {_num(m.get('roll_mae'), fmt='{:.1f}')}° | "
                         f"{_num(m.get('mean_mae'), m.get('mean_mae_ci'), fmt='{:.1f}')}° |")
    else:
        lines = ["| method | n | angular error [95 % CI] | median |", "|---|---:|---|---|"]
        for k in _order(methods):
            m = methods[k]
            lines.append(f"| {LABELS.get(k, k)} | {m.get('n', '')} | "
                         f"{_num(m.get('angular_error'), m.get('angular_error_ci'), fmt='{:.1f}')}° | "
                         f"{_num(m.get('angular_error_median'), fmt='{:.1f}')}° |")
    return lines


SEED_LABELS = {"auc": "AUC", "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
               "accuracy_threshold_cv": "accuracy with a threshold from the real training folds",
               "inner51": "inner-51 NME", "all68": "all-68 NME", "mean_mae": "mean MAE", "angular_error": "angular error"}


def _seed_num(metric: str, v: float) -> str:
    if metric in ("accuracy", "balanced_accuracy", "accuracy_threshold_cv", "inner51", "all68"):
        return _pct(v)
    if metric in ("mean_mae", "angular_error"):
        return _num(v, fmt="{:.1f}°")
    return _num(v)


def _best_baseline(methods: dict) -> str | None:
    cands = [k for k in methods if k.startswith(("mediapipe", "dlib")) and not k.endswith("_oracle")]
    return cands[0] if cands else None


def markdown(rep: dict[str, Any]) -> str:
    ds, st = rep["dataset"], rep["settings"]
    L = ["# Sim-to-real transfer report", "",
         "Small reference CNNs trained on the synthetic shards alone, tested on real labelled images, next to the "
         "same models trained on the real images (k-fold) and training-free baselines, in one run "
         "(`dmsfactory transfer`; method: docs/transfer.md).", "",
         f"- synthetic: `{ds['dir']}` ({ds.get('name')}, spec hash `{ds.get('spec_hash')}`, renderer "
         f"{', '.join(ds.get('renderer') or []) or 'n/a'}); {ds['synthetic_train_samples']} train samples read"
         + (f" (--max-synthetic {ds['max_synthetic']})" if ds.get("max_synthetic") else "")
         + f", {ds['synthetic_val_samples']} validation samples",
         f"- real: `{rep['real']['dir']}`",
         f"- seed {st['seed']}, {st['folds']}-fold, {st['bootstrap']} bootstrap resamples, {st['threads']} torch thread(s); "
         f"{rep['seconds']:.0f} s wall, {rep.get('cpu_seconds', 0):.0f} s CPU"
         + (f" (load average {rep['load_average_1min']} at the end)" if rep.get("load_average_1min") is not None else ""),
         *([f"- machine: {m.get('cpu')}, torch CPU kernels {m.get('torch_cpu_capability')}: compare figures only with "
            "reports from the same kernels (another CPU path moves a training run's figures by more than its "
            "seed spread; docs/transfer.md)"] if (m := rep.get("machine")) else []), ""]
    if st.get("framing", "exact") != "exact":
        L += [f"**Synthetic face crops framed by MediaPipe on the renders** (`--framing {st['framing']}`; the default "
              "frames them by the exact landmarks)", ""]
    if st.get("augmented_views") == "left out":
        L += ["**Trained on the rendered images alone** (`--no-augmented`: the augment stage's views left out of "
              "the synthetic rows)", ""]
    if st.get("overrides"):
        L += [f"**Non-standard settings** (not comparable with standard reports): {st['overrides']}", ""]
    L += ["## Summary", "", "| real set | rows | detected | synthetic only | real k-fold | training-free baseline | chance |",
          "|---|---:|---:|---|---|---|---|"]
    for name, s in rep["sets"].items():
        if "methods" not in s:
            L.append(f"| {name} | – | {s.get('detected')}/{s.get('images')} | skipped: {s.get('skipped')} | | | |")
            continue
        kind = _kind(s["model_task"])
        m = s["methods"]
        b = _best_baseline(m)
        L.append(f"| {name} | {s['rows']} | {s['detected']}/{s['images']} | {_primary(kind, m['synthetic_only'])} | "
                 f"{_primary(kind, m['real_kfold'])} | "
                 + (f"{LABELS.get(b, b)}: {_primary(kind, m[b])}" if b else "–")
                 + f" | {_primary(kind, m['chance'])} |")
    L.append("")
    for name, s in rep["sets"].items():
        L += [f"## {SET_TITLE.get(name, name)} — `{name}`", ""]
        if "methods" not in s:
            L += [f"Skipped: {s.get('skipped')}", ""]
            continue
        task = s["model_task"]
        det = s.get("detection_rate")
        found = ("pre-cropped, no face detection" if name == "eye_crops" else
                 f"faces found by MediaPipe in {s['detected']} ({_pct(det)}; undetected images are excluded from every row)")
        L += [f"{s['rows']} rows from {s['images']} images; {found}"
              + (f"; {s['positives']} positives" if s.get("positives") is not None else "")
              + f"; folds grouped by {s['folds']['grouped_by']} ({s['folds']['k']} folds of {s['folds']['sizes']} rows)"
              + (f"; {s['identities']} identities" if s.get("identities") else "") + ".", ""]
        L += method_table(task, s["methods"])
        L.append("")
        spread = s.get("synthetic_only_seeds")
        if spread:
            L += [f"Synthetic only, the same model trained with {len(spread['seeds'])} training seeds "
                  f"({', '.join(str(x) for x in spread['seeds'])}; the table's row is the first): " + "; ".join(
                      f"{SEED_LABELS.get(k, k)} {_seed_num(k, v['mean'])} ± {_seed_num(k, v['sd'])} "
                      f"(min {_seed_num(k, v['min'])}, max {_seed_num(k, v['max'])})"
                      for k, v in spread.items() if k != "seeds") + ".", ""]
        dp = [(k, s["methods"][k]) for k in s["methods"] if k.startswith("dp_eps") and "privacy" in s["methods"][k]]
        if dp:
            L += ["DP-SGD rows (privacy.dp.dp_sgd_fit): " + "; ".join(
                f"ε target {k[6:]}: spent ≤ {v['privacy']['epsilon_max']:.2f}, δ ≤ {v['privacy']['delta_max']:.2g}, "
                f"σ {min(v['privacy']['noise_multiplier']):.2f}–{max(v['privacy']['noise_multiplier']):.2f}"
                for k, v in dp) + "; per fold, unit = one real image; ledgers in `ledgers/`.", ""]
        for p in s.get("plots", []):
            L.append(f"![{Path(p).stem}](plots/{Path(p).name})")
        L.append("")
        an = s.get("analysis") or {}
        if an:
            L += ["Analysis:", ""]
            for k, v in an.items():
                if k.startswith("_"):
                    continue
                L.append(f"- `{k}`: {_fmt_obj(v)}")
            L.append("")
        notes = s.get("notes") or {}
        if notes:
            L.append("Notes: " + "; ".join(f"{k} = {v}" for k, v in notes.items()))
            L.append("")
    L += ["## Synthetic side (in-domain, identity-disjoint validation split)", ""]
    for task, sr in rep["synthetic"].items():
        v = sr.get("validation") or {}
        kind = _kind(task)
        L.append(f"- **{task}**: {sr['train_rows']} training rows"
                 + (f" ({_pct(sr['class_share'])} positive)" if sr.get("class_share") is not None else "")
                 + f"; validation ({v.get('n', 0)} rows): {_primary(kind, v) if v.get('n') else '–'}"
                 + (f"; left out: {sr['excluded']}" if sr.get("excluded") else "")
                 + (f"; eye crop source side (median) {sr['eye_crop_source_side_px_median']:.1f} px"
                    if sr.get("eye_crop_source_side_px_median") else ""))
        bc = sr.get("validation_by_condition") or {}
        for key, d in bc.items():
            if len(d) > 1:
                L.append(f"  - by {key}: " + ", ".join(
                    f"{k} {_pct(x.get('accuracy')) if 'accuracy' in x else _pct(x.get('inner51'))} (n={x['n']})" for k, x in d.items()))
    L += ["", "## How to read this", "",
          "- Every row of a table predicts the same real rows: the synthetic-only model never saw any of them; every "
          "model that learns from real images is scored on the folds it did not see (k-fold, grouped by identity "
          "when the set has identities). Intervals are percentile bootstrap 95 % intervals (resampling identities "
          "when known).",
          "- Binary models use their own 0.5 threshold (classes weighted equally in training): no threshold is fitted on "
          "real data except in the rows that say so. A \"threshold from training folds\" row (`_cv` in report.json; the "
          "synthetic model's and each baseline's) fits its threshold on the training folds, the best balanced accuracy, "
          "and applies it to the fold it did not see: what a few labelled real images buy without any training. A "
          "\"best threshold on this set\" row (`_oracle`) fits it on the whole set: an upper bound. Between the "
          "synthetic model's own row and its `_cv` row lies what its threshold costs on these cameras; between `_cv` "
          "and the real-trained row, what the synthetic model does not rank right.",
          "- NME: mean point error / outer eye-corner distance (iBUG 36-45). The jaw points of our iBUG map are fixed "
          "mesh vertices, while annotators put jaw points on the visible face outline: the jaw-17 column measures that "
          "definition gap too.",
          "- dlib's 68-point predictor was trained on iBUG 300-W data whose licence forbids commercial use: it is a "
          "yardstick here, never part of a shipped model.", ""]
    return "\n".join(L)


def _fmt_obj(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt_obj(x)}" for k, x in v.items())
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


# --- plots ------------------------------------------------------------------------------------------

def _plt():
    import matplotlib  # heavy: matplotlib (plots only)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: matplotlib (plots only)

    return plt


def plots(name: str, task: str, rt, res: dict, out: Path) -> list[str]:
    plt = _plt()
    kind = _kind(task)
    preds = res["predictions"]
    files = []
    if kind == "binary":
        fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
        y = rt.y[:, 0]
        for k in ("synthetic_only", "finetune_k200", "real_kfold", *[b for b in rt.baselines]):
            if k in preds:
                fpr, tpr = M.roc_curve(y, preds[k])
                ax.plot(fpr, tpr, label=f"{LABELS.get(k, k)} (AUC {M.roc_auc(y, preds[k]):.3f})")
        ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"ROC: {name} (n={len(y)})")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        p = out / f"roc_{name}.png"
        fig.savefig(p)
        plt.close(fig)
        files.append(str(p))
        fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
        bins = np.linspace(0, 1, 26)
        for k in ("synthetic_only", "real_kfold"):
            for c, ls in ((0, "-"), (1, "--")):
                ax.hist(preds[k][y == c], bins=bins, histtype="step", linestyle=ls,
                        label=f"{LABELS[k]}, label {c}")
        ax.set_xlabel("model score (probability of the positive class)")
        ax.set_ylabel("rows")
        ax.legend(fontsize=7)
        ax.set_title(f"scores by true label: {name}")
        fig.tight_layout()
        p = out / f"scores_{name}.png"
        fig.savefig(p)
        plt.close(fig)
        files.append(str(p))
    elif kind == "points":
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
        px = {k: preds[k] if np.asarray(preds[k]).ndim == 3 else None for k in preds}
        from dmsfactory.transfer.protocol import _to_pixels  # heavy: torch

        for k in ("synthetic_only", "finetune_k200", "real_kfold", "dlib_68", "mediapipe_mesh"):
            if k not in preds:
                continue
            p_ = px[k] if px[k] is not None else _to_pixels(preds[k], rt.boxes)
            ok = np.all(np.isfinite(p_.reshape(len(p_), -1)), axis=1)
            e = M.nme_per_image(p_[ok], rt.true_px[ok])["inner51"]
            axes[0].hist(np.clip(e, 0, 0.3), bins=np.linspace(0, 0.3, 31), histtype="step", label=LABELS.get(k, k))
            xs = np.sort(e)
            axes[1].plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=LABELS.get(k, k))
        axes[0].set_xlabel("inner-51 NME per image (clipped at 0.3)")
        axes[0].set_ylabel("images")
        axes[1].set_xlabel("inner-51 NME")
        axes[1].set_ylabel("share of images with NME ≤ x")
        axes[1].set_xlim(0, 0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"landmark errors: {name} (n={len(rt)})")
        fig.tight_layout()
        p = out / f"nme_{name}.png"
        fig.savefig(p)
        plt.close(fig)
        files.append(str(p))
        fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
        for k in ("synthetic_only", "real_kfold", "dlib_68"):
            if k not in preds:
                continue
            p_ = px[k] if px[k] is not None else _to_pixels(preds[k], rt.boxes)
            iod = np.linalg.norm(rt.true_px[:, 36] - rt.true_px[:, 45], axis=1)[:, None]
            err = np.linalg.norm(p_ - rt.true_px, axis=2) / np.maximum(iod, 1e-6)
            ax.plot(np.arange(68), np.nanmean(err, 0), marker=".", label=LABELS.get(k, k))
        ax.set_xlabel("iBUG point (0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth)")
        ax.set_ylabel("mean error / IOD")
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out / f"per_point_{name}.png"
        fig.savefig(p)
        plt.close(fig)
        files.append(str(p))
    # learning curve
    lc = [k for k in ("synthetic_only", "finetune_k50", "finetune_k200") if k in res["methods"]]
    if len(lc) > 1:
        fig, ax = plt.subplots(figsize=(5, 3.4), dpi=100)
        key = "auc" if kind == "binary" else ("inner51" if kind == "points" else
                                               ("mean_mae" if task == "head_pose" else "angular_error"))
        xs = {"synthetic_only": 0, "finetune_k50": 50, "finetune_k200": 200}
        ax.plot([xs[k] for k in lc], [res["methods"][k][key] for k in lc], "o-", label="synthetic pretrain + fine-tune")
        ro = [k for k in ("real_only_k50", "real_only_k200") if k in res["methods"]]
        ax.plot([50, 200][: len(ro)], [res["methods"][k][key] for k in ro], "s--", label="real only (same k)")
        ax.axhline(res["methods"]["real_kfold"][key], color="grey", ls=":", label="real only, all training folds")
        ax.set_xscale("symlog", linthresh=50)
        ax.set_xlabel("real training images k")
        ax.set_ylabel(key)
        ax.set_title(f"learning curve: {name}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out / f"learning_curve_{name}.png"
        fig.savefig(p)
        plt.close(fig)
        files.append(str(p))
    return files


def occlusion_plot(maps: dict[str, np.ndarray | None], path: Path) -> str | None:
    items = [(k, v) for k, v in maps.items() if v is not None]
    if not items:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(items), figsize=(3.2 * len(items), 3.2), dpi=100)
    axes = np.atleast_1d(axes)
    for ax, (k, v) in zip(axes, items):
        ax.imshow(v, cmap="magma")
        ax.set_title(k, fontsize=8)
        ax.axis("off")
    fig.suptitle("mean occlusion importance (logit drop) over the face crop")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


# --- predictions -----------------------------------------------------------------------------------

def prediction_rows(name: str, task: str, rt, res: dict) -> list[dict]:
    kind = _kind(task)
    rows = []
    if kind != "binary":
        return rows
    for i, f in enumerate(rt.files):
        r = {"set": name, "file": f, "identity": rt.ids[i] if rt.ids else "", "fold": int(res["fold"][i]),
             "label": int(rt.y[i, 0])}
        for k, p in res["predictions"].items():
            r[k] = round(float(p[i]), 5)
        rows.append(r)
    return rows


def write_predictions(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
