"""Label verification from pixels with detectors we did not write (docs/verify.md).

A generator's parameters say what an image should show; this stage measures what it does show and
records, per sample and per label, ``agree`` / ``disagree`` / ``undetectable`` with the scores
(``FaceSample.add_verdict("verify", check, verdict, reason, **scores)``). On ``disagree`` the
configured policy acts: ``keep`` (the verdict is only recorded), ``relabel`` (the label takes the
pixel value; ``labels["relabelled"][path] = {"from", "to"}``) or ``quarantine`` (with the reason).

Detectors: MediaPipe face mesh (refined, 478 points; legacy ``solutions`` API) and optionally
OpenCV's Haar frontal-face cascade. Measures:

* eye aspect ratio per eye (Soukupova & Cech 2016), points [33,160,158,133,153,144] (subject's
  right eye) and [362,385,387,263,373,380] (left);
* mouth aspect ratio: mean inner-lip gap (13-14, 81-178, 311-402) over the inner-corner distance 78-308;
* gaze: iris centre (468/473) offset from the eye-corner midpoint in half eye widths, times a
  calibrated gain = eye-in-head angles, plus the head pose = camera-frame gaze;
* head pose: ``cv2.solvePnP`` of six mesh points against the generic 6-point 3D face model of
  S. Mallick, "Head Pose Estimation using OpenCV and Dlib", LearnOpenCV (2016): nose tip
  (0, 0, 0), chin (0, -330, -65), eye outer corners (-+225, 170, -135), mouth corners
  (-+150, -150, -125) in its units (y up, z towards the viewer); focal length from the label's
  camera field of view (else the image width).

Conditions that hide a feature (sunglasses -> eyes, gaze; mask -> mouth; an augmentation occluder
-> whatever it covers) give ``undetectable`` with the reason, never ``disagree``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dmsfactory.geometry import F, euler_from_matrix, gaze_angles
from dmsfactory.labelers.config import CHECKS, VerifyConfig
from dmsfactory.landmarks import EAR_LEFT, EAR_RIGHT  # noqa: F401  (mesh.py imports them from here)
from dmsfactory.sample import CardSection, FaceSample

STAGE = "verify"

MOUTH_PAIRS = ((13, 14), (81, 178), (311, 402))
MOUTH_CORNERS = (78, 308)
# eye corners ordered image-left, image-right (frontal view) and iris centre
EYE_GEOM = {"right": (33, 133, 468), "left": (362, 263, 473)}

# generic 6-point face model (Mallick 2016, LearnOpenCV), converted to OpenCV's object frame
# (x to image right, y down, z away from the camera) so that R = identity means "facing the camera"
PNP_INDICES = (1, 152, 33, 263, 61, 291)
_MODEL_YUP = np.array([[0.0, 0.0, 0.0], [0.0, -330.0, -65.0], [-225.0, 170.0, -135.0], [225.0, 170.0, -135.0],
                       [-150.0, -150.0, -125.0], [150.0, -150.0, -125.0]])
PNP_MODEL = _MODEL_YUP * np.array([1.0, -1.0, -1.0])


def ear(p: np.ndarray, idx: tuple[int, ...]) -> float:
    p1, p2, p3, p4, p5, p6 = (p[i] for i in idx)
    return float((np.linalg.norm(p2 - p6) + np.linalg.norm(p3 - p5)) / (2.0 * np.linalg.norm(p1 - p4) + 1e-9))


def mar(p: np.ndarray) -> float:
    gap = np.mean([np.linalg.norm(p[a] - p[b]) for a, b in MOUTH_PAIRS])
    return float(gap / (np.linalg.norm(p[MOUTH_CORNERS[0]] - p[MOUTH_CORNERS[1]]) + 1e-9))


def iris_offset(p: np.ndarray, side: str) -> tuple[float, float]:
    """Iris centre relative to the eye-corner midpoint in half eye widths: (+x image right, +y down)."""
    a, b, c = (p[i] for i in EYE_GEOM[side])
    e = b - a
    half = np.linalg.norm(e) / 2 + 1e-9
    ex = e / (2 * half)
    ey = np.array([-ex[1], ex[0]])
    d = c - (a + b) / 2
    return float(d @ ex / half), float(d @ ey / half)


def head_pose_pnp(p: np.ndarray, w: int, h: int, fov_deg: float | None) -> dict[str, float] | None:
    f = (w / 2) / math.tan(math.radians(fov_deg) / 2) if fov_deg else float(w)
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], np.float64)
    img_pts = np.ascontiguousarray(p[list(PNP_INDICES)], np.float64)
    ok, rvec, tvec = cv2.solvePnP(PNP_MODEL, img_pts, k, None, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or tvec[2, 0] <= 0:
        return None
    r, _ = cv2.Rodrigues(rvec)
    # the model frame is F(head frame): R_cam_head = r F, camera angles from F R_cam_head = F r F
    return euler_from_matrix(F @ r @ F)


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _cond(s: FaceSample | dict, key: str) -> str:
    labels = s.labels if isinstance(s, FaceSample) else s.get("labels", {})
    params = s.params if isinstance(s, FaceSample) else s.get("params", {})
    v = (labels or {}).get(key, (params or {}).get(key))
    return str(v) if v is not None else "unknown"


def _ang_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


class VerifyStage:
    """Stage ``verify``: pixel checks of the labels, with a per-label keep/relabel/quarantine policy."""

    name = STAGE

    def __init__(self, config: VerifyConfig | None = None, audit: Any | None = None):
        """``audit``: an :class:`~dmsfactory.labelers.audit.AuditSelection`; only its images are
        checked, and disagreements are recorded without the policy acting (docs/verify.md)."""
        self.config = config or VerifyConfig()
        if not isinstance(self.config, VerifyConfig):
            raise TypeError(f"verify config must be a VerifyConfig (got {type(self.config).__name__})")
        self.audit = audit
        self._mesh = None
        self._haar = None

    # --- models -----------------------------------------------------------------------------------
    def setup(self) -> None:
        if self._mesh is None:
            import mediapipe as mp  # heavy: mediapipe

            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, refine_landmarks=True, max_num_faces=1,
                min_detection_confidence=self.config.min_detection_confidence)
        if self.config.haar and self._haar is None:
            path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
            self._haar = cv2.CascadeClassifier(str(path))
            if self._haar.empty():
                raise RuntimeError(f"cannot load the Haar cascade {path}")

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        """(478, 2) MediaPipe landmarks in pixels (continuous coordinates), or None."""
        self.setup()
        h, w = image.shape[:2]
        res = self._mesh.process(np.ascontiguousarray(image))
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        return np.array([[q.x * w, q.y * h] for q in lm], np.float64)

    def haar_faces(self, image: np.ndarray) -> int:
        self.setup()
        g = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        s = self.config.haar_max_side / max(g.shape)
        if s < 1:
            g = cv2.resize(g, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        return len(self._haar.detectMultiScale(g, scaleFactor=1.1, minNeighbors=4, minSize=(24, 24)))

    # --- per-sample measurement -------------------------------------------------------------------
    def measure(self, image: np.ndarray, fov_deg: float | None = None) -> dict[str, Any]:
        """All pixel measurements of one image (no labels involved)."""
        h, w = image.shape[:2]
        p = self.detect(image)
        out: dict[str, Any] = {"face": p is not None, "landmarks": p}
        if self.config.haar:
            out["haar_faces"] = self.haar_faces(image)
        if p is None:
            return out
        out["ear"] = {"right": ear(p, EAR_RIGHT), "left": ear(p, EAR_LEFT)}
        out["mar"] = mar(p)
        out["iris"] = {s: iris_offset(p, s) for s in ("left", "right")}
        out["head_pose"] = head_pose_pnp(p, w, h, fov_deg)
        return out

    # --- the stage --------------------------------------------------------------------------------
    def process(self, batch: list[FaceSample]) -> list[FaceSample]:
        todo = [s for s in batch if self.audited(s)]
        if todo:
            self.setup()
        for s in todo:
            self.verify_sample(s)
        return batch

    def audited(self, s: FaceSample) -> bool:
        """Is ``s`` checked? Every sample without an audit; else the audit sample's images only."""
        if self.audit is None:
            return True
        p = s.params or {}  # the plan's values: an augmentation may relabel lighting, the stratum stays
        return self.audit.selected(s.key, (str(p.get("lighting")), str(p.get("accessory")), str(p.get("class"))))

    def _hidden(self, s: FaceSample, check: str) -> str | None:
        """Reason a check cannot be verified on this sample, or None."""
        cfg = self.config
        for cond in (_cond(s, "accessory"), _cond(s, "lighting")):
            if check in cfg.unverifiable.get(cond, []):  # type: ignore[call-overload]
                return f"{cond} makes {check} unverifiable"
        return None

    def verify_sample(self, s: FaceSample) -> None:
        cfg = self.config
        if s.image is None:
            s.quarantine(STAGE, "no image to verify", check="face")
            return
        img = np.asarray(s.image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            s.quarantine(STAGE, f"image must be uint8 HxWx3 (got {img.dtype} {img.shape})", check="face")
            return
        cam = s.labels.get("camera") if isinstance(s.labels.get("camera"), dict) else s.params.get("camera")
        fov = _num((cam or {}).get("fov_deg")) if isinstance(cam, dict) else None
        m = self.measure(img, fov)
        checks = [c for c in CHECKS if c in cfg.checks]
        if "face" in checks:
            haar = m.get("haar_faces")
            found = m["face"] or bool(haar)
            scores = {"mediapipe": bool(m["face"])} | ({"haar_faces": haar} if haar is not None else {})
            if found:
                s.add_verdict(STAGE, "face", "agree", "face detected", **scores)
            else:
                self._disagree(s, "face", "no face detected by MediaPipe" + (" or Haar" if cfg.haar else ""), {}, scores)
        if not m["face"]:
            for c in checks:
                for side in (("left", "right") if c == "eyes" else (None,)):
                    if c != "face":
                        s.add_verdict(STAGE, c, "undetectable", "no face mesh: nothing to measure",
                                      **({"side": side} if side else {}))
            return
        p = m["landmarks"]
        for c in checks:
            if c == "face":
                continue
            why = self._hidden(s, c)
            if why:
                for side in (("left", "right") if c == "eyes" else (None,)):  # eyes are counted per eye
                    s.add_verdict(STAGE, c, "undetectable", why, **({"side": side} if side else {}))
                continue
            getattr(self, f"_check_{c}")(s, m, p)

    # --- individual checks --------------------------------------------------------------------------
    def _disagree(self, s: FaceSample, check: str, reason: str, relabel: dict[str, Any], scores: dict) -> None:
        s.add_verdict(STAGE, check, "disagree", reason, **scores)
        act = "keep" if self.audit is not None else self.config.action(check)
        if act == "quarantine":
            s.quarantine(STAGE, f"{check}: {reason}", check=check, **scores)
        elif act == "relabel" and relabel:
            rec = s.labels.setdefault("relabelled", {})
            for path, new in relabel.items():
                node = s.labels
                *parents, leaf = path.split(".")
                for k in parents:
                    node = node.setdefault(k, {})
                old = node.get(leaf)
                node[leaf] = new
                rec[path] = {"from": old, "to": new, "by": f"{STAGE}.{check}"}
            s.add_verdict(STAGE, check, "relabel", reason, **{k: v["to"] for k, v in rec.items() if k in relabel})

    def _check_landmarks(self, s: FaceSample, m: dict, p: np.ndarray) -> None:
        if s.landmarks is None or len(s.landmarks) < 468:
            s.add_verdict(STAGE, "landmarks", "undetectable", "sample has no 478-point landmarks")
            return
        lab = np.asarray(s.landmarks, np.float64)
        vis = np.ones(len(lab), bool) if s.visibility is None else np.asarray(s.visibility, bool)
        n = min(len(lab), 468)
        use = vis[:n]
        if use.sum() < 50:
            s.add_verdict(STAGE, "landmarks", "undetectable", "fewer than 50 visible landmarks")
            return
        iod = np.linalg.norm(lab[33] - lab[263]) + 1e-9
        nme = float(np.linalg.norm(lab[:n][use] - p[:n][use], axis=1).mean() / iod)
        sc = {"nme": nme, "threshold": self.config.landmark_nme_max}
        if nme <= self.config.landmark_nme_max:
            s.add_verdict(STAGE, "landmarks", "agree", "", **sc)
        else:
            self._disagree(s, "landmarks", f"landmark error {nme:.3f} of the eye-corner distance", {}, sc)

    def _check_eyes(self, s: FaceSample, m: dict, p: np.ndarray) -> None:
        cfg = self.config
        eyes = s.labels.get("eyes")
        for side in ("left", "right"):
            check = f"eyes.{side}"
            e = eyes.get(side) if isinstance(eyes, dict) else None
            if not isinstance(e, dict) or ("state" not in e and "openness" not in e):
                s.add_verdict(STAGE, "eyes", "undetectable", f"no {check} label", side=side)
                continue
            if e.get("visible") is False:
                s.add_verdict(STAGE, "eyes", "undetectable", f"{check} not visible ({e.get('hidden_by', 'label')})",
                              side=side)
                continue
            op = _num(e.get("openness"))
            closed_label = e.get("state") == "close" if e.get("state") in ("open", "close") else (
                op is not None and op <= cfg.openness_closed)
            v = m["ear"][side]
            closed_px = v < cfg.ear_closed
            sc = {"side": side, "ear": v, "threshold": cfg.ear_closed, "label_closed": closed_label}
            if closed_px == closed_label:
                s.add_verdict(STAGE, "eyes", "agree", "", **sc)
            else:
                est = float(np.clip(v / cfg.ear_open_ref, 0.0, 1.0))
                self._disagree(
                    s, "eyes",
                    f"{check} labelled {'closed' if closed_label else 'open'} but EAR {v:.3f} "
                    f"{'>=' if not closed_px else '<'} {cfg.ear_closed}",
                    {f"eyes.{side}.state": "close" if closed_px else "open", f"eyes.{side}.openness": round(est, 3)}, sc)

    def _check_mouth(self, s: FaceSample, m: dict, p: np.ndarray) -> None:
        cfg = self.config
        mo = s.labels.get("mouth")
        if not isinstance(mo, dict) or _num(mo.get("openness")) is None:
            s.add_verdict(STAGE, "mouth", "undetectable", "no mouth label")
            return
        if mo.get("visible") is False:
            s.add_verdict(STAGE, "mouth", "undetectable", "mouth not visible (occluded)")
            return
        open_label = float(mo["openness"]) >= cfg.mouth_open_label
        v = m["mar"]
        open_px = v > cfg.mar_open
        sc = {"mar": v, "threshold": cfg.mar_open, "label_open": open_label}
        if open_px == open_label:
            s.add_verdict(STAGE, "mouth", "agree", "", **sc)
            return
        est = float(np.clip(v / cfg.mar_max_ref, 0.0, 1.0))
        relabel: dict[str, Any] = {"mouth.openness": round(est, 3)}
        if not open_px and mo.get("yawn") not in (None, "none"):
            relabel["mouth.yawn"] = "none"
            relabel["mouth.yawning"] = False
        self._disagree(s, "mouth", f"mouth labelled {'open' if open_label else 'closed'} but MAR {v:.3f}", relabel, sc)

    def _label_pose(self, s: FaceSample) -> dict[str, float] | None:
        hp = s.labels.get("head_pose")
        if isinstance(hp, dict) and all(_num(hp.get(k)) is not None for k in ("yaw", "pitch", "roll")):
            return {k: float(hp[k]) for k in ("yaw", "pitch", "roll")}
        return None

    def _check_head_pose(self, s: FaceSample, m: dict, p: np.ndarray) -> None:
        lab = self._label_pose(s)
        est = m.get("head_pose")
        if lab is None:
            s.add_verdict(STAGE, "head_pose", "undetectable", "no camera-frame head pose label")
            return
        if est is None:
            s.add_verdict(STAGE, "head_pose", "undetectable", "solvePnP failed")
            return
        err = max(_ang_diff(est[k], lab[k]) for k in ("yaw", "pitch", "roll"))
        sc = {"est": {k: round(v, 2) for k, v in est.items()}, "max_error_deg": err,
              "threshold": self.config.head_pose_tolerance_deg}
        if err <= self.config.head_pose_tolerance_deg:
            s.add_verdict(STAGE, "head_pose", "agree", "", **sc)
        else:
            self._disagree(s, "head_pose", f"head pose off by {err:.1f} deg",
                           {f"head_pose.{k}": round(v, 2) for k, v in est.items()}, sc)

    def _check_gaze(self, s: FaceSample, m: dict, p: np.ndarray) -> None:
        cfg = self.config
        g = s.labels.get("gaze")
        eyes = s.labels.get("eyes") if isinstance(s.labels.get("eyes"), dict) else {}
        sides = [sd for sd in ("left", "right") if (eyes.get(sd) or {}).get("visible", True) is not False]
        if not sides:
            s.add_verdict(STAGE, "gaze", "undetectable", "no visible eye")
            return
        if any((eyes.get(sd) or {}).get("state") == "close" for sd in sides):
            s.add_verdict(STAGE, "gaze", "undetectable", "eyes closed: no iris to measure")
            return
        labs = []
        for sd in sides:
            gs = g.get(sd) if isinstance(g, dict) else None
            if isinstance(gs, dict) and _num(gs.get("yaw")) is not None and _num(gs.get("pitch")) is not None:
                labs.append((float(gs["yaw"]), float(gs["pitch"])))
            elif isinstance(gs, dict) and isinstance(gs.get("vector"), (list, tuple)) and len(gs["vector"]) == 3:
                a = gaze_angles(gs["vector"])
                labs.append((a["yaw"], a["pitch"]))
        est_pose = m.get("head_pose")
        if not labs or est_pose is None:
            s.add_verdict(STAGE, "gaze", "undetectable", "no camera-frame gaze label" if not labs else "no head pose")
            return
        lab_yaw = float(np.mean([a for a, _ in labs]))
        lab_pitch = float(np.mean([b for _, b in labs]))
        off = np.mean([m["iris"][sd] for sd in sides], axis=0)
        # camera-frame gaze ~= head pose + eye-in-head (small-angle composition)
        yaw = est_pose["yaw"] + cfg.gaze_gain_deg * float(off[0])
        pitch = est_pose["pitch"] - cfg.gaze_gain_deg * float(off[1])
        err = max(_ang_diff(yaw, lab_yaw), _ang_diff(pitch, lab_pitch))
        sc = {"est_yaw": round(yaw, 2), "est_pitch": round(pitch, 2), "iris_offset": [float(off[0]), float(off[1])],
              "max_error_deg": err, "threshold": cfg.gaze_tolerance_deg}
        if err <= cfg.gaze_tolerance_deg:
            s.add_verdict(STAGE, "gaze", "agree", "", **sc)
        else:
            rel = {}
            for sd in sides:
                rel[f"gaze.{sd}.yaw"] = round(yaw, 2)
                rel[f"gaze.{sd}.pitch"] = round(pitch, 2)
            self._disagree(s, "gaze", f"gaze off by {err:.1f} deg", rel, sc)

    # --- dataset report -----------------------------------------------------------------------------
    def finalize(self, dataset_dir: Path | str | None, records: list[dict]) -> CardSection | None:
        rep = AgreementReport(self.config, self.audit.summary() if self.audit is not None else None)
        for r in records:
            rep.add(r)
        return rep.section()


class AgreementReport:
    """Per label x lighting x accessory agreement rates (undetectable counted apart), accumulated one
    record at a time (``add``), so a dataset of any size is reported in constant memory.

    ``audit``: the audit design (:meth:`AuditSelection.summary`), or None when every image was checked.
    Each rate gets a 95 % interval (:func:`dmsfactory.labelers.audit.wilson_fpc`): the measurable
    population of a check is estimated as its measured units times (images / checked images)."""

    def __init__(self, config: VerifyConfig | None = None, audit: dict[str, Any] | None = None):
        self.config = config or VerifyConfig()
        self.audit = audit
        self.cells: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
        self.actions: Counter = Counter()
        self.reasons: dict[str, Counter] = defaultdict(Counter)
        self.n_images = 0
        self.n_verified = 0

    def add(self, r: dict) -> None:
        self.n_images += 1
        vs = [v for v in r.get("verdicts", []) if v.get("stage") == STAGE]
        if not vs:
            return
        self.n_verified += 1
        light, acc = _cond(r, "lighting"), _cond(r, "accessory")
        for v in vs:
            verdict, check = v.get("verdict"), v.get("check", "")
            if verdict in ("agree", "disagree", "undetectable"):
                self.cells[(check, light, acc)][verdict] += 1
                if verdict == "undetectable" and len(self.reasons[check]) < 200:
                    self.reasons[check][v.get("reason", "")] += 1
                elif verdict == "undetectable":  # bounded: reasons are few, a long tail is counted apart
                    key = v.get("reason", "")
                    self.reasons[check][key if key in self.reasons[check] else "(other reasons)"] += 1
            elif verdict in ("relabel", "quarantine"):
                self.actions[(check, verdict)] += 1

    def section(self) -> CardSection:
        # not at the top: audit imports the spec and planner, which load the procedural renderer (numba,
        # scipy: ~0.5 s); the anonymiser and the transfer report use this module without a spec
        from dmsfactory.labelers.audit import wilson_fpc  # see the comment above

        conf = self.config.audit_confidence
        scale = self.n_images / self.n_verified if self.n_verified else 1.0

        def rate(c: Counter) -> dict[str, Any]:
            d = c["agree"] + c["disagree"]
            out: dict[str, Any] = {"agree": c["agree"], "disagree": c["disagree"], "undetectable": c["undetectable"],
                                   "agreement": round(c["agree"] / d, 4) if d else None}
            ci = wilson_fpc(c["agree"], d, d * scale, conf)
            out["interval"] = [round(ci[0], 4), round(ci[1], 4)] if ci else None
            out["half_width"] = round((ci[1] - ci[0]) / 2, 4) if ci else None
            return out

        def summarise(keyf) -> dict[str, dict[str, Any]]:
            agg: dict[str, Counter] = defaultdict(Counter)
            for k, c in self.cells.items():
                agg[keyf(k)].update(c)
            return {k: rate(c) for k, c in sorted(agg.items())}

        by_check = summarise(lambda k: k[0])
        full = summarise(lambda k: f"{k[0]} / {k[1]} / {k[2]}")
        margin = self.config.audit_margin
        wide = [k for k, v in by_check.items() if v["half_width"] is not None and v["half_width"] > margin]
        data = {
            "samples_verified": self.n_verified,
            "images": self.n_images,
            "mode": "audit" if self.audit else "all",
            "audit": self.audit,
            "by_check": by_check,
            "by_check_lighting": summarise(lambda k: f"{k[0]} / {k[1]}"),
            "by_check_accessory": summarise(lambda k: f"{k[0]} / {k[2]}"),
            "by_check_lighting_accessory": full,
            "checks_wider_than_margin": wide if self.audit else [],
            "actions": {f"{c}:{a}": n for (c, a), n in sorted(self.actions.items())},
            "undetectable_reasons": {c: dict(r.most_common()) for c, r in sorted(self.reasons.items())},
            "note": "agreement = agree / (agree + disagree); undetectable samples are not disagreements; interval: "
                    f"{conf:.0%} Wilson score with finite-population correction (labelers/audit.py)",
        }

        def fmt(x):
            return "n/a" if x is None else f"{100 * x:.1f} %"

        def fci(v):
            return "-" if v["interval"] is None else f"{100 * v['interval'][0]:.1f}-{100 * v['interval'][1]:.1f} %"

        if self.audit:
            head = (f"Audit: pixel checks of the labels on {self.n_verified} of {self.n_images} images, a seeded sample "
                    f"stratified by lighting x accessory x class and sized for +-{margin:.0%} at {conf:.0%} on every "
                    "agreement rate (docs/verify.md). The renderer's labels are exact by construction: these rates "
                    "measure how well MediaPipe face mesh reads the renders, and the policy does not act on an audit "
                    "(`verify.rate: 1.0` checks and acts on every image).")
            if wide:
                head += (f" Wider than +-{margin:.0%}: " + ", ".join(wide) + " (a `--limit` run holds only its share of "
                         "the audit sample, or fewer images were measurable than `audit_measurable` assumed).")
        else:
            head = (f"Pixel checks of the labels on {self.n_verified} samples (MediaPipe face mesh; docs/verify.md).")
        lines = [head + " Agreement excludes samples where the feature could not be seen (sunglasses, masks, "
                 "occluders, no face); those are counted as undetectable.", "",
                 f"| check | agree | disagree | undetectable | agreement | {conf:.0%} interval |", "|---|---:|---:|---:|---:|---:|"]
        for k, v in by_check.items():
            lines.append(f"| {k} | {v['agree']} | {v['disagree']} | {v['undetectable']} | {fmt(v['agreement'])} | {fci(v)} |")
        lines += ["", "| check / lighting / accessory | agree | disagree | undetectable | agreement |",
                  "|---|---:|---:|---:|---:|"]
        for k, v in full.items():
            lines.append(f"| {k} | {v['agree']} | {v['disagree']} | {v['undetectable']} | {fmt(v['agreement'])} |")
        if self.actions:
            lines += ["", "Policy actions: " + ", ".join(f"{c} {a}: {n}" for (c, a), n in sorted(self.actions.items()))]
        return CardSection(title="Label verification", markdown="\n".join(lines), data=data, json_name="verify_report.json")


def agreement_report(records: list[dict], config: VerifyConfig | None = None, audit: dict[str, Any] | None = None) -> CardSection:
    """Per label x lighting x accessory agreement rates of ``records`` (see :class:`AgreementReport`)."""
    rep = AgreementReport(config, audit)
    for r in records:
        rep.add(r)
    return rep.section()


__all__ = ["VerifyStage", "VerifyConfig", "AgreementReport", "agreement_report", "ear", "mar", "iris_offset", "head_pose_pnp"]
