"""Realism of the procedural renderer, measured by models we did not write.

    python benchmarks/realism.py [--n 60] [--ids 20] [--per-id 5] [--size 256] [--seed 0]
                                 [--fov 38] [--dist-min 0.55 --dist-max 0.75] [--sweep-ids 4]
                                 [--shape-scale 1.0]   (trade-off study: identity shape codes x scale)

Sections (all numbers from MediaPipe 0.10.21 / dlib 20 / OpenCV Haar, nothing faked):
- landmarks: MediaPipe face mesh (refine_landmarks=True) vs our exact 468 landmarks, mean distance /
  outer-eye-corner distance (33-263, our labels), per |yaw| bin, lighting, accessory;
- head pose: solvePnP of MediaPipe's 468 points on our mean shape vs the camera-frame label (and of our
  own exact landmarks: the floor that identity shape variation alone sets for this protocol; and of
  MediaPipe's points on the rendered face's own 3D shape: MediaPipe's share of the error);
- detection rates: MediaPipe face detection, face mesh, OpenCV Haar frontal face (default cascade);
- eye openness: face-mesh EAR vs label openness (Spearman, open/closed agreement at EAR 0.2 and 0.15,
  each also on our exact landmarks, the rule's own ceiling), also
  for |yaw_cam| <= 20, vs the EAR of our exact landmarks, and that label EAR vs openness (the
  ceiling any landmark detector can reach under this pose mix); an openness sweep 0..1 per look;
- identity: dlib 128-d descriptors as the privacy gate computes them (HOG boxes, MediaPipe boxes where
  HOG misses; 5-point predictor, ResNet v1), pairs at 0.6, with histograms;
- mouth: MediaPipe's mouth aspect ratio against our exact opening and the yawn label (yawns, talking /
  half-open mouths, closed);
- shape: per-sex standard deviation of six anthropometric distances over the identity space.
``--src PATH`` measures another dmsfactory source tree with this same code (same-run baselines).
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")


def _src_arg() -> str:
    """``--src PATH``: the dmsfactory source tree to measure (default: this checkout's ``src``), so that the
    same benchmark code measures an older renderer in the same run (e.g. ``--src /work/main/src``)."""
    if "--src" in sys.argv:
        return sys.argv[sys.argv.index("--src") + 1]
    return str(Path(__file__).resolve().parents[1] / "src")


sys.path.insert(0, _src_arg())

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from dmsfactory.conditions import ACCESSORIES, CAMERA_MOUNTS, LIGHTING  # noqa: E402
from dmsfactory.generators.procedural import ProceduralConfig, example_plan_entry  # noqa: E402
from dmsfactory.generators.procedural import render as _render  # noqa: E402
from dmsfactory.generators.procedural.render import camera_euler  # noqa: E402
from dmsfactory.generators.procedural.topology import EAR_LEFT, EAR_RIGHT  # noqa: E402
from dmsfactory.labelers.verify import ear  # noqa: E402

LIGHTS, ACCS, MOUNTS = LIGHTING, ACCESSORIES, CAMERA_MOUNTS  # draw weights below follow this order


class Models:
    def __init__(self):
        import mediapipe as mp

        self.fm = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)
        self.fd = mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5)
        self.haar = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))

    def mesh(self, img):
        r = self.fm.process(img)
        if not r.multi_face_landmarks:
            return None
        h, w = img.shape[:2]
        return np.array([[l.x * w, l.y * h] for l in r.multi_face_landmarks[0].landmark], np.float64)

    def detect(self, img):
        return bool(self.fd.process(img).detections)

    def haar_detect(self, img):
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        return len(self.haar.detectMultiScale(g, 1.1, 4, minSize=(24, 24))) > 0


CONFIG = ProceduralConfig()  # --supersample


def render(entry):
    return _render(entry, CONFIG)


FOV = 38.0  # --fov
DIST = (0.55, 0.75)  # --dist-min/--dist-max


def _regions() -> dict:
    from mediapipe.python.solutions import face_mesh_connections as C

    def idx(conns):
        return sorted({a for a, _ in conns} | {b for _, b in conns})

    reg = {"oval": idx(C.FACEMESH_FACE_OVAL), "eyes": idx(C.FACEMESH_LEFT_EYE) + idx(C.FACEMESH_RIGHT_EYE),
           "brows": idx(C.FACEMESH_LEFT_EYEBROW) + idx(C.FACEMESH_RIGHT_EYEBROW), "nose": idx(C.FACEMESH_NOSE), "lips": idx(C.FACEMESH_LIPS)}
    used = {i for v in reg.values() for i in v}
    reg["rest"] = [i for i in range(468) if i not in used]
    return reg


REGIONS = _regions()


def set_shape_scale(scale: float) -> None:
    """Trade-off study only: multiply every identity *shape* code by ``scale`` (0 = every identity has
    the mean shape; appearance codes unchanged). Patches the renderer module in this process."""
    import importlib

    from dmsfactory.generators.procedural import identity as I

    R = importlib.import_module("dmsfactory.generators.procedural.render")
    orig = I.identity_shape
    R.identity_shape = lambda code: orig({k: (v * scale if k in I.SHAPE_KEYS else v) for k, v in code.items()})


def random_entry(rng, i, size, **kw):
    e = example_plan_entry(
        key=f"bench-{i:07d}", index=i, identity_seed=int(rng.integers(0, 2**31)), sample_seed=int(rng.integers(0, 2**31)),
        identity_params={"sex": str(rng.choice(["female", "male"])), "age": int(rng.integers(16, 81)), "skin_tone": int(rng.integers(1, 7))},
        lighting=str(rng.choice(LIGHTS)), accessory=str(rng.choice(ACCS, p=[0.4, 0.15, 0.15, 0.15, 0.15])),
        camera={"mount": str(rng.choice(MOUNTS, p=[0.5, 0.2, 0.15, 0.15])), "fov_deg": FOV, "distance_m": float(rng.uniform(*DIST)), "image_size": size},
        head_pose_car={"yaw": float(rng.uniform(-60, 60)), "pitch": float(rng.uniform(-15, 15)), "roll": float(rng.uniform(-10, 10))},
        gaze_in_head={"yaw": float(rng.uniform(-10, 10)), "pitch": float(rng.uniform(-8, 8))},
        state={"eye_openness_left": 1.0, "eye_openness_right": 1.0, "mouth_open": float(rng.uniform(0, 0.3)),
               "brow_raise": float(rng.uniform(0, 0.5)), "smile": float(rng.uniform(0, 0.5))},
    )
    for k, v in kw.items():
        e[k] = {**e[k], **v} if isinstance(v, dict) else v
    return e


def mean_landmarks() -> np.ndarray:
    """(468, 3) landmarks of the renderer's mean face (renderer >= 0.4: the face model's mean; before: mean_shape)."""
    from dmsfactory.generators.procedural import topology as T

    if hasattr(T, "mean_landmarks"):
        return T.mean_landmarks()
    return T.mean_shape()["vertices"]


def renderer_version() -> str:
    import importlib

    return importlib.import_module("dmsfactory.generators.procedural.render").RENDERER_VERSION


def pnp_pose(pts2d, K, obj=None):
    obj = mean_landmarks().astype(np.float64) if obj is None else np.asarray(obj, np.float64)[:468]
    ok, rvec, tvec = cv2.solvePnP(obj, pts2d[:468].astype(np.float64), K, None, flags=cv2.SOLVEPNP_SQPNP)
    R, _ = cv2.Rodrigues(rvec)
    return camera_euler(R)


def summarize(v):
    v = np.asarray(v, float)
    return {"n": int(len(v)), "mean": round(float(v.mean()), 4) if len(v) else None, "median": round(float(np.median(v)), 4) if len(v) else None}


def landmark_section(M, rng, n, size):
    rows = []
    for i in range(n):
        e = random_entry(rng, i, size)
        r = render(e)
        hp = r.render_info["head_pose_camera"]
        row = {"yaw_cam": hp["yaw"], "pitch_cam": hp["pitch"], "roll_cam": hp["roll"], "lighting": e["lighting"], "accessory": e["accessory"],
               "det": M.detect(r.image), "haar": M.haar_detect(r.image)}
        p = M.mesh(r.image)
        row["mesh"] = p is not None
        if p is not None:
            iod = np.linalg.norm(r.landmarks[33] - r.landmarks[263])
            d = np.linalg.norm(p[:468] - r.landmarks[:468], axis=1) / iod
            row["err"] = float(d.mean())
            vis = r.visibility[:468]
            row["err_visible"] = float(d[vis].mean()) if vis.any() else None
            row["err_region"] = {k: float(d[v].mean()) for k, v in REGIONS.items()}
            K = np.array(r.render_info["intrinsics"]["K"])
            y, pi, ro = pnp_pose(p, K)
            row.update(pnp_yaw_err=abs(y - hp["yaw"]), pnp_pitch_err=abs(pi - hp["pitch"]), pnp_roll_err=abs(ro - hp["roll"]), pnp_pitch_signed=pi - hp["pitch"])
            y, pi, ro = pnp_pose(r.landmarks.astype(np.float64), K)  # our exact landmarks: the identity-shape floor
            row.update(exact_yaw_err=abs(y - hp["yaw"]), exact_pitch_err=abs(pi - hp["pitch"]), exact_roll_err=abs(ro - hp["roll"]))
            y, pi, ro = pnp_pose(p, K, r.landmarks_head)  # MediaPipe's points on this face's own 3D shape
            row.update(own_yaw_err=abs(y - hp["yaw"]), own_pitch_err=abs(pi - hp["pitch"]), own_roll_err=abs(ro - hp["roll"]))
        rows.append(row)
    out = {"n": n}
    out["detection_rate_mp_face_detection"] = float(np.mean([r["det"] for r in rows]))
    out["detection_rate_mp_face_mesh"] = float(np.mean([r["mesh"] for r in rows]))
    out["detection_rate_haar"] = float(np.mean([r["haar"] for r in rows]))
    ok = [r for r in rows if r["mesh"]]
    bins = {"|yaw|<=30": lambda r: abs(r["yaw_cam"]) <= 30, "30<|yaw|<=60": lambda r: 30 < abs(r["yaw_cam"]) <= 60, "|yaw|>60": lambda r: abs(r["yaw_cam"]) > 60}
    out["landmark_err_by_yaw"] = {k: summarize([r["err"] for r in ok if f(r)]) for k, f in bins.items()}
    out["landmark_err_visible_by_yaw"] = {k: summarize([r["err_visible"] for r in ok if f(r) and r["err_visible"] is not None]) for k, f in bins.items()}
    out["mesh_rate_by_yaw"] = {k: round(float(np.mean([r["mesh"] for r in rows if f(r)])), 3) if any(f(r) for r in rows) else None for k, f in bins.items()}
    out["landmark_err_by_lighting"] = {l: summarize([r["err"] for r in ok if r["lighting"] == l and abs(r["yaw_cam"]) <= 30]) for l in LIGHTS}
    out["landmark_err_by_accessory"] = {a: summarize([r["err"] for r in ok if r["accessory"] == a and abs(r["yaw_cam"]) <= 30]) for a in ACCS}
    p45 = [r for r in ok if abs(r["yaw_cam"]) <= 45]
    out["pose_mae_deg_|yaw|<=45"] = {a: round(float(np.mean([r[f"pnp_{a}_err"] for r in p45])), 3) if p45 else None for a in ("yaw", "pitch", "roll")}
    out["landmark_err_by_region_|yaw|<=30"] = {k: round(float(np.mean([r["err_region"][k] for r in ok if abs(r["yaw_cam"]) <= 30])), 4) if ok else None for k in REGIONS}
    out["pose_pitch_bias_deg_|yaw|<=45"] = round(float(np.mean([r["pnp_pitch_signed"] for r in p45])), 3) if p45 else None
    out["pose_mae_deg_exact_landmarks_on_mean_shape"] = {a: round(float(np.mean([r[f"exact_{a}_err"] for r in p45])), 3) if p45 else None for a in ("yaw", "pitch", "roll")}
    out["pose_mae_deg_mediapipe_on_own_shape"] = {a: round(float(np.mean([r[f"own_{a}_err"] for r in p45])), 3) if p45 else None for a in ("yaw", "pitch", "roll")}
    out["pose_median_err_deg_|yaw|<=45"] = {a: round(float(np.median([r[f"pnp_{a}_err"] for r in p45])), 3) if p45 else None for a in ("yaw", "pitch", "roll")}
    out["detection_by_lighting"] = {l: round(float(np.mean([r["mesh"] for r in rows if r["lighting"] == l])), 3) if any(r["lighting"] == l for r in rows) else None for l in LIGHTS}
    return out


def eye_section(M, rng, n, size):
    from scipy.stats import spearmanr

    labels, ears, agree, lab_ears, yaws, agree_x, agree15 = [], [], [], [], [], [], []
    det = 0
    for i in range(n):
        ol, orr = float(rng.uniform(0, 1)), float(rng.uniform(0, 1))
        if i % 3 == 0:
            orr = ol
        e = random_entry(rng, 10_000 + i, size, state={"eye_openness_left": ol, "eye_openness_right": orr},
                         head_pose_car={"yaw": float(rng.uniform(-25, 25))}, accessory=str(rng.choice(["none", "glasses", "mask", "cap"])),
                         lighting=str(rng.choice(LIGHTS)))
        r = render(e)
        p = M.mesh(r.image)
        if p is None:
            continue
        det += 1
        for o, idx in ((orr, EAR_RIGHT), (ol, EAR_LEFT)):
            a = ear(p, idx)
            labels.append(o)
            ears.append(a)
            lab_ears.append(ear(r.landmarks.astype(np.float64), idx))
            yaws.append(abs(r.render_info["head_pose_camera"]["yaw"]))
            if o >= 0.6 or o <= 0.2:
                agree.append((a > 0.2) == (o >= 0.6))
                agree_x.append((lab_ears[-1] > 0.2) == (o >= 0.6))
                agree15.append(((a > 0.15) == (o >= 0.6), (lab_ears[-1] > 0.15) == (o >= 0.6)))
    rho = spearmanr(labels, ears).statistic if len(labels) > 2 else None
    ea, la = np.array(ears), np.array(labels)
    ya, le = np.array(yaws), np.array(lab_ears)
    fr = ya <= 20
    rho_lab = spearmanr(le, ea).statistic if len(le) > 2 else None
    rho_lab_o = spearmanr(la, le).statistic if len(le) > 2 else None
    rho_fr = spearmanr(la[fr], ea[fr]).statistic if fr.sum() > 2 else None
    return {"n_images": n, "mesh_rate": det / max(n, 1), "spearman_ear_vs_openness": round(float(rho), 4) if rho is not None else None,
            "spearman_ear_vs_openness_|yaw_cam|<=20": round(float(rho_fr), 4) if rho_fr is not None else None, "n_eyes_|yaw_cam|<=20": int(fr.sum()),
            "spearman_ear_vs_label_ear": round(float(rho_lab), 4) if rho_lab is not None else None,
            "spearman_label_ear_vs_openness_ceiling": round(float(rho_lab_o), 4) if rho_lab_o is not None else None,
            "open_closed_agreement_ear0.2": round(float(np.mean(agree)), 4) if agree else None,
            "n_eyes_for_agreement": len(agree),
            # the same rule on our exact landmarks: an open eye (openness >= 0.6) of a narrow-eyed identity
            # or a pitched head has a true EAR under 0.2, so 0.2 caps any detector; 0.15 does not
            "open_closed_agreement_ear0.2_exact_landmarks": round(float(np.mean(agree_x)), 4) if agree_x else None,
            "open_closed_agreement_ear0.15": round(float(np.mean([m for m, _ in agree15])), 4) if agree15 else None,
            "open_closed_agreement_ear0.15_exact_landmarks": round(float(np.mean([x for _, x in agree15])), 4) if agree15 else None,
            "ear_open_mean": round(float(ea[la >= 0.6].mean()), 3) if (la >= 0.6).any() else None,
            "ear_closed_mean": round(float(ea[la <= 0.2].mean()), 3) if (la <= 0.2).any() else None}


def identity_section(rng, ids, per_id, size):
    """dlib descriptors as the privacy gate computes them: HOG boxes, and MediaPipe face-detection boxes
    mapped to the HOG convention where HOG misses (``FaceDescriber``). Head pose within the frontal
    range of dlib's aligner (steering-column camera, yaw +-25, pitch +-10), light and expression vary."""
    from dmsfactory.privacy.descriptors import FaceDescriber
    from dmsfactory.privacy.presence import PresenceDetectors

    fd = FaceDescriber(("hog", "mediapipe"))
    pres = PresenceDetectors(("mediapipe",))
    descs, labels, src = [], [], []
    n_img = 0
    for k in range(ids):
        seed = int(rng.integers(0, 2**31))
        ip = {"sex": str(rng.choice(["female", "male"])), "age": int(rng.integers(16, 81)), "skin_tone": int(rng.integers(1, 7))}
        for j in range(per_id):
            e = random_entry(rng, 20_000 + k * 100 + j, size, identity_seed=seed, identity_params=ip,
                             lighting=str(rng.choice(["daylight", "daylight", "tunnel", "backlight"])), accessory="none",
                             head_pose_car={"yaw": float(rng.uniform(-25, 25)), "pitch": float(rng.uniform(-10, 10))},
                             camera={"mount": "steering_column", "distance_m": float(rng.uniform(0.55, 0.7))})
            e["state"].update(eye_openness_left=float(rng.uniform(0.6, 1)), eye_openness_right=float(rng.uniform(0.6, 1)),
                              smile=float(rng.uniform(0, 0.6)), mouth_open=float(rng.uniform(0, 0.25)))
            r = render(e)
            n_img += 1
            faces = fd.describe(r.image, pres.mediapipe(r.image))
            if not faces:
                continue
            descs.append(faces[0].descriptor.astype(np.float64))
            labels.append(k)
            src.append(faces[0].source)
    D = np.array(descs, np.float64)
    L = np.array(labels)
    if len(D) < 2:
        return {"detected": len(D), "images": n_img}
    dist = np.linalg.norm(D[:, None] - D[None], axis=2)
    iu = np.triu_indices(len(D), 1)
    same = L[iu[0]] == L[iu[1]]
    dd = dist[iu]
    hog = np.array([x == "hog" for x in src])
    hh = hog[iu[0]] & hog[iu[1]]
    edges = np.round(np.arange(0.0, 1.01, 0.05), 2)
    return {"identities": ids, "images": n_img, "described": len(D), "boxes_hog": src.count("hog"), "boxes_mediapipe": src.count("mediapipe"),
            "diff_pairs_gt_0.6": round(float((dd[~same] > 0.6).mean()), 4), "same_pairs_lt_0.6": round(float((dd[same] < 0.6).mean()), 4) if same.any() else None,
            "diff_median": round(float(np.median(dd[~same])), 4), "same_median": round(float(np.median(dd[same])), 4) if same.any() else None,
            "n_same_pairs": int(same.sum()), "n_diff_pairs": int((~same).sum()),
            "hog_boxes_only": {"diff_pairs_gt_0.6": round(float((dd[~same & hh] > 0.6).mean()), 4) if (~same & hh).any() else None,
                               "same_pairs_lt_0.6": round(float((dd[same & hh] < 0.6).mean()), 4) if (same & hh).any() else None,
                               "n_same_pairs": int((same & hh).sum())},
            "histogram_edges": edges.tolist(), "histogram_same": np.histogram(dd[same], edges)[0].tolist(),
            "histogram_diff": np.histogram(dd[~same], edges)[0].tolist()}


def mouth_section(M, rng, n, size):
    """Does MediaPipe see the mouth we open? Its mouth aspect ratio (|13-14| / |78-308|) against our
    exact opening (mm) and yawn label: half the renders yawn (mouth_open 0.6-1), a third of the rest talk or
    hang open (0.1-0.5, no yawn), the others are closed (0-0.1); no hand, no mask."""
    from scipy.stats import spearmanr

    mar, mm, yawn = [], [], []
    for i in range(n):
        k = i % 6
        mo = float(rng.uniform(0.6, 1.0)) if k < 3 else float(rng.uniform(0.1, 0.5)) if k < 5 else float(rng.uniform(0, 0.1))
        e = random_entry(rng, 30_000 + i, size, head_pose_car={"yaw": float(rng.uniform(-30, 30))},
                         accessory=str(rng.choice(["none", "glasses", "cap"])))
        e["state"].update(mouth_open=mo, yawn="yawning_without_hand" if k < 3 else "none", smile=0.0)
        r = render(e)
        p = M.mesh(r.image)
        if p is None:
            continue
        mar.append(float(np.linalg.norm(p[13] - p[14]) / max(np.linalg.norm(p[78] - p[308]), 1e-6)))
        mm.append(float(r.render_info["mouth_opening_mm"]))
        yawn.append(k < 3)
    mar_a, y = np.array(mar), np.array(yawn)
    best = max((float(np.mean((mar_a > t) == y)), float(t)) for t in np.unique(mar_a)) if len(mar_a) else (None, None)
    return {"n_images": n, "mesh_rate": len(mar) / max(n, 1),
            "spearman_mp_mar_vs_opening_mm": round(float(spearmanr(mar, mm).statistic), 4) if len(mar) > 2 else None,
            "yawn_vs_not_best_threshold_accuracy": round(best[0], 4) if best[0] is not None else None, "best_threshold": best[1],
            "mp_mar_yawn_mean": round(float(mar_a[y].mean()), 3) if y.any() else None,
            "mp_mar_not_yawn_mean": round(float(mar_a[~y].mean()), 3) if (~y).any() else None,
            "opening_mm_yawn_mean": round(float(np.array(mm)[y].mean()), 1) if y.any() else None}


MEASURES = {"ex-ex": (33, 263), "en-en": (133, 362), "ch-ch": (61, 291), "n-gn": (168, 152), "al-al": (64, 294), "zy-zy": (234, 454)}


def shape_section(n_per_sex: int):
    """Standard deviation (mm) of six anthropometric distances over the neutral faces of the identity
    space, per sex (identities 70000+; the same distances as tests/test_face_model.py)."""
    import importlib

    I = importlib.import_module("dmsfactory.generators.procedural.identity")
    try:
        from dmsfactory.generators.procedural import facemodel as FM

        m = FM.load()
        to_lm = lambda code: m.landmarks(I.identity_shape(code))  # noqa: E731
    except ImportError:  # renderer < 0.4: identity_shape returns the 468 landmarks
        to_lm = I.identity_shape
    out = {}
    for sex in ("female", "male"):
        vals = {k: [] for k in MEASURES}
        for s in range(n_per_sex):
            code = I.identity_code(70_000 + s, {"sex": sex, "age": int(18 + s % 60), "skin_tone": 1 + s % 6})[0]
            lm = to_lm(code)
            for k, (a, b) in MEASURES.items():
                vals[k].append(float(np.linalg.norm(lm[a] - lm[b]) * 1000))
        out[sex] = {k: {"mean_mm": round(float(np.mean(v)), 2), "sd_mm": round(float(np.std(v)), 2)} for k, v in vals.items()}
    return out


def eye_sweep(M, size, ids=4, steps=6):
    """MediaPipe EAR (mean of both eyes) on an openness sweep 0..1 for a few identities/lightings."""
    curves = []
    looks = (("female", 2, "daylight"), ("male", 5, "daylight"), ("male", 3, "night_ir"), ("female", 4, "tunnel"), ("male", 1, "backlight"), ("female", 6, "daylight"))
    for k in range(ids):
        sex, tone, light = looks[k % len(looks)]
        row = []
        for o in np.linspace(0, 1, steps):
            e = example_plan_entry(identity_seed=300 + k, identity_params={"sex": sex, "age": 40, "skin_tone": tone}, lighting=light,
                                   camera={"fov_deg": FOV, "distance_m": float(np.mean(DIST)), "image_size": size},
                                   state={"eye_openness_left": float(o), "eye_openness_right": float(o)})
            p = M.mesh(render(e).image)
            row.append(None if p is None else round(float((ear(p, EAR_RIGHT) + ear(p, EAR_LEFT)) / 2), 3))
        curves.append({"look": f"{sex}/{tone}/{light}", "ear": row})
    mono = [all(b is not None and a is not None and b >= a - 0.005 for a, b in zip(c["ear"], c["ear"][1:])) for c in curves]
    return {"openness": [round(float(x), 2) for x in np.linspace(0, 1, steps)], "curves": curves, "monotone_fraction": round(float(np.mean(mono)), 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60, help="renders for landmark/pose/detection")
    ap.add_argument("--n-eye", type=int, default=40)
    ap.add_argument("--ids", type=int, default=50)
    ap.add_argument("--per-id", type=int, default=5)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-identity", action="store_true")
    ap.add_argument("--fov", type=float, default=38.0, help="camera fov (deg) of the random entries (the spec default)")
    ap.add_argument("--dist-min", type=float, default=0.55)
    ap.add_argument("--dist-max", type=float, default=0.75)
    ap.add_argument("--sweep-ids", type=int, default=4, help="identities in the eye-openness sweep (0: skip)")
    ap.add_argument("--skip-landmarks", action="store_true")
    ap.add_argument("--n-mouth", type=int, default=60, help="renders for the mouth section (0: skip)")
    ap.add_argument("--shape-ids", type=int, default=300, help="identities per sex for the shape-variance section (0: skip)")
    ap.add_argument("--supersample", type=int, default=1, help="renderer anti-aliasing (ProceduralConfig.supersample)")
    ap.add_argument("--shape-scale", type=float, default=1.0, help="trade-off study: scale every identity shape code (1 = the renderer as shipped)")
    ap.add_argument("--src", default=None, help="dmsfactory source tree to measure (default: this checkout's src)")
    a = ap.parse_args()
    global FOV, DIST, CONFIG
    FOV, DIST = a.fov, (a.dist_min, a.dist_max)
    CONFIG = ProceduralConfig(supersample=a.supersample)
    cv2.setNumThreads(1)
    if a.shape_scale != 1.0:
        set_shape_scale(a.shape_scale)
    t0 = time.time()
    M = Models()
    res = {"renderer_version": renderer_version(), "src": _src_arg(), "size": a.size, "fov_deg": FOV, "distance_m": list(DIST),
           "shape_scale": a.shape_scale, "supersample": a.supersample}
    if not a.skip_landmarks:
        res["landmarks_pose_detection"] = landmark_section(M, np.random.default_rng(a.seed), a.n, a.size)
        print(json.dumps(res["landmarks_pose_detection"]), flush=True)
    if a.sweep_ids > 0:
        res["eye_sweep"] = eye_sweep(M, a.size, a.sweep_ids)
        print(json.dumps(res["eye_sweep"]), flush=True)
    res["eye_openness"] = eye_section(M, np.random.default_rng(a.seed + 1), a.n_eye, a.size)
    print(json.dumps(res["eye_openness"]), flush=True)
    if a.n_mouth > 0:
        res["mouth"] = mouth_section(M, np.random.default_rng(a.seed + 3), a.n_mouth, a.size)
        print(json.dumps(res["mouth"]), flush=True)
    if a.shape_ids > 0:
        res["shape_sd_per_sex"] = shape_section(a.shape_ids)
        print(json.dumps(res["shape_sd_per_sex"]), flush=True)
    if not a.skip_identity:
        res["identity_dlib"] = identity_section(np.random.default_rng(a.seed + 2), a.ids, a.per_id, a.size)
    res["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
