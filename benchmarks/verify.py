"""Label verification: threshold calibration on renders with known truth, agreement rates, speed.

Renders N procedural samples with random eye openness, mouth opening, head pose, gaze, lighting and
accessories (seeded), derives their labels with ``make_labels``, then
1. sweeps the eye-aspect-ratio and mouth-aspect-ratio thresholds against the known truth (ROC points,
   best balanced accuracy), fits the gaze gain, measures solvePnP head-pose error;
2. runs ``VerifyStage`` with the default config and reports agreement per check;
3. times the stage against MediaPipe face mesh alone on the same images (the baseline, same run).

Usage: python benchmarks/verify.py [N] [--markdown]   (last stdout line: one JSON object)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cv2  # noqa: E402

cv2.setNumThreads(1)
try:
    import torch  # noqa: F401  (not needed; keep threads at 1 if present)

    torch.set_num_threads(1)
except Exception:  # pragma: no cover
    pass

from dmsfactory.generators.procedural import ProceduralGenerator, example_plan_entry  # noqa: E402
from dmsfactory.labelers.config import VerifyConfig  # noqa: E402
from dmsfactory.labelers.params import make_labels  # noqa: E402
from dmsfactory.labelers.verify import VerifyStage, agreement_report  # noqa: E402


def plan(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        o = float(rng.choice([rng.uniform(0, 0.25), rng.uniform(0.25, 1.0), rng.uniform(0.6, 1.0)]))
        o2 = float(np.clip(o + rng.normal(0, 0.05), 0, 1))
        mo = float(rng.choice([rng.uniform(0, 0.2), rng.uniform(0.2, 1.0)]))
        yawn = "yawning_without_hand" if mo > 0.6 else "none"
        light = str(rng.choice(["daylight", "daylight", "night_ir", "tunnel", "backlight"]))
        acc = str(rng.choice(["none", "none", "none", "glasses", "sunglasses", "mask", "cap"]))
        e = example_plan_entry(
            key=f"bench00000-{i:07d}", index=i, identity=f"id{i:06d}", identity_seed=int(rng.integers(1, 10**6)),
            sample_seed=int(rng.integers(1, 10**6)), lighting=light, accessory=acc,
            identity_params={"sex": str(rng.choice(["female", "male"])), "age": int(rng.integers(18, 80)),
                             "skin_tone": int(rng.integers(1, 7))},
            state={"eye_openness_left": o, "eye_openness_right": o2, "mouth_open": mo, "yawn": yawn},
            head_pose_car={"yaw": float(rng.uniform(-30, 30)), "pitch": float(rng.uniform(-12, 12)),
                           "roll": float(rng.uniform(-10, 10))},
            gaze_in_head={"yaw": float(rng.uniform(-15, 15)), "pitch": float(rng.uniform(-10, 10))},
        )
        out.append(e)
    return out


def sweep(scores: np.ndarray, truth: np.ndarray, thresholds: np.ndarray, below: bool) -> list[dict]:
    rows = []
    for t in thresholds:
        pred = scores < t if below else scores > t
        tp, fn = int((pred & truth).sum()), int((~pred & truth).sum())
        fp, tn = int((pred & ~truth).sum()), int((~pred & ~truth).sum())
        tpr = tp / max(1, tp + fn)
        fpr = fp / max(1, fp + tn)
        rows.append({"threshold": round(float(t), 3), "tpr": round(tpr, 3), "fpr": round(fpr, 3),
                     "balanced_acc": round((tpr + 1 - fpr) / 2, 3)})
    return rows


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 120
    md = "--markdown" in sys.argv
    gen = ProceduralGenerator()
    gen.setup()
    t0 = time.perf_counter()
    samples = gen.generate(plan(n))
    t_render = time.perf_counter() - t0
    samples = [s for s in samples if not s.quarantined]
    for s in samples:
        s.labels = make_labels(s.params)

    st = VerifyStage(VerifyConfig(enabled=True))
    st.setup()
    st.detect(samples[0].image)  # warm-up
    # baseline: MediaPipe face mesh alone
    t0 = time.perf_counter()
    for s in samples:
        st.detect(s.image)
    t_base = time.perf_counter() - t0

    # 1. calibration data (eyes/mouth where visible, pose/gaze where detected)
    ear_s, ear_t, mar_s, mar_t, pose_err, gaze_rows = [], [], [], [], [], []
    detected = 0
    for s in samples:
        m = st.measure(s.image, s.labels["camera"]["fov_deg"])
        if not m["face"]:
            continue
        detected += 1
        if s.labels["accessory"] != "sunglasses":
            for side in ("left", "right"):
                ear_s.append(m["ear"][side])
                ear_t.append(s.labels["eyes"][side]["openness"] <= 0.2)
        if s.labels["accessory"] != "mask":
            mar_s.append(m["mar"])
            mar_t.append(s.labels["mouth"]["openness"] >= 0.4)
        hp = s.labels["head_pose"]
        if m["head_pose"] is not None:
            pose_err.append([m["head_pose"][k] - hp[k] for k in ("yaw", "pitch", "roll")])
            if s.labels["accessory"] != "sunglasses" and min(s.labels["eyes"][x]["openness"] for x in ("left", "right")) > 0.5:
                from dmsfactory.augment.pose import gaze_angles

                gy = np.mean([gaze_angles(s.labels["gaze"][x]["vector"])["yaw"] for x in ("left", "right")])
                gp = np.mean([gaze_angles(s.labels["gaze"][x]["vector"])["pitch"] for x in ("left", "right")])
                off = np.mean([m["iris"][x] for x in ("left", "right")], axis=0)
                gaze_rows.append([gy - m["head_pose"]["yaw"], gp - m["head_pose"]["pitch"], off[0], off[1], gy, gp,
                                  hp["yaw"], hp["pitch"]])
    ear_s, ear_t = np.array(ear_s), np.array(ear_t, bool)
    mar_s, mar_t = np.array(mar_s), np.array(mar_t, bool)
    ear_rows = sweep(ear_s, ear_t, np.arange(0.08, 0.36, 0.02), below=True)
    mar_rows = sweep(mar_s, mar_t, np.r_[np.arange(0.02, 0.1, 0.02), np.arange(0.1, 0.8, 0.05)], below=False)
    best_ear = max(ear_rows, key=lambda r: r["balanced_acc"])
    best_mar = max(mar_rows, key=lambda r: r["balanced_acc"])
    pe = np.abs(np.array(pose_err)) if pose_err else np.zeros((0, 3))
    pbias = np.array(pose_err).mean(0) if pose_err else np.zeros(3)
    g = np.array(gaze_rows) if gaze_rows else np.zeros((0, 8))
    gain_yaw = float(np.sum(g[:, 0] * g[:, 2]) / max(1e-9, np.sum(g[:, 2] ** 2))) if len(g) else None
    gain_pitch = float(-np.sum(g[:, 1] * g[:, 3]) / max(1e-9, np.sum(g[:, 3] ** 2))) if len(g) else None
    ear_open = float(np.median(ear_s[~ear_t])) if (~ear_t).any() else None

    # 2. agreement with the default config
    for s in samples:
        s.verdicts = []
    t0 = time.perf_counter()
    st.process(samples)
    t_stage = time.perf_counter() - t0
    rep = agreement_report([s.to_json() for s in samples])
    if md:
        print("EAR sweep (closed = label openness <= 0.2):")
        for r in ear_rows:
            print(f"| {r['threshold']} | {r['tpr']} | {r['fpr']} | {r['balanced_acc']} |")
        print("MAR sweep (open = label mouth openness >= 0.4):")
        for r in mar_rows:
            print(f"| {r['threshold']} | {r['tpr']} | {r['fpr']} | {r['balanced_acc']} |")
        print(rep.markdown)
    res = {
        "n_rendered": n,
        "n_ok": len(samples),
        "face_detected_rate": round(detected / max(1, len(samples)), 4),
        "ear_best": best_ear,
        "ear_open_median": ear_open,
        "mar_best": best_mar,
        "head_pose_abs_err_median_deg": [round(float(x), 2) for x in np.median(pe, 0)] if len(pe) else None,
        "head_pose_abs_err_p90_deg": [round(float(x), 2) for x in np.percentile(pe, 90, 0)] if len(pe) else None,
        "head_pose_bias_deg": [round(float(x), 2) for x in pbias],
        "gaze_gain_fit_deg": [gain_yaw, gain_pitch],
        "agreement": {k: v["agreement"] for k, v in rep.data["by_check"].items()},
        "undetectable": {k: v["undetectable"] for k, v in rep.data["by_check"].items()},
        "actions": rep.data["actions"],
        "render_img_per_s": round(len(samples) / t_render, 2),
        "verify_img_per_s": round(len(samples) / t_stage, 2),
        "mediapipe_only_img_per_s": round(len(samples) / t_base, 2),
        "verify_vs_mediapipe_only": round(t_base / t_stage, 3),
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
