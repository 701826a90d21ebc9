"""Read factory shards into the reference tasks' crops and labels (exact landmarks, crops.py rules).

Per accepted sample of a split: the face crop (``LANDMARK_SIZE``, the others are resized from it),
one eye crop per visible eye, and the labels: eye closed (``eyes.<side>.state == "close"``; an eye
labelled not visible is left out), yawn (``mouth.yawning``; left out when the mouth is hidden:
``mouth.visible`` false or a face mask), the iBUG-68 points (the manifest's index map into the 478),
head pose (camera frame) and gaze (mean of the two eyes' camera-frame yaw/pitch). Left-out labels are
counted in ``excluded`` with the reason, never dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from dmsfactory.labelers.params import ibug68_index_map
from dmsfactory.labelers.verify import EAR_LEFT, EAR_RIGHT, ear, mar
from dmsfactory.sample import is_quarantined
from dmsfactory.training.data import iter_samples
from dmsfactory.transfer import crops as C


@dataclass
class TaskArrays:
    """Crops ``x`` (N, S, S) uint8, targets ``y`` (N, D) float32, identity and metadata per row."""

    x: np.ndarray
    y: np.ndarray
    ids: list[str]
    meta: list[dict]

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx) -> "TaskArrays":
        idx = np.asarray(idx, np.int64)
        return TaskArrays(self.x[idx], self.y[idx], [self.ids[i] for i in idx], [self.meta[i] for i in idx])


@dataclass
class SyntheticSet:
    tasks: dict[str, TaskArrays]
    samples: int
    excluded: dict[str, Counter] = field(default_factory=dict)


def face_crops(image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, C.Box]:
    """(landmark crop, face crop, the exact box) of one face: the same calls for synthetic and real."""
    box = C.exact_box(C.face_box(points))
    big = C.crop(image, box, C.LANDMARK_SIZE)
    small = big if C.FACE_SIZE == C.LANDMARK_SIZE else cv2.resize(big, (C.FACE_SIZE, C.FACE_SIZE), interpolation=cv2.INTER_AREA)
    return big, small, box


def eye_crop(image: np.ndarray, points: np.ndarray, side: str) -> np.ndarray:
    return C.crop(image, C.exact_box(C.eye_box(points, side)), C.EYE_SIZE)


def _is_augmented(doc: dict) -> bool:
    """An augment stage's view (not a render): it lists the ops applied (``aug``) or names its source sample."""
    return bool(doc.get("aug")) or bool(doc.get("source_key"))


def _meta(doc: dict) -> dict:
    lab = doc.get("labels") or {}
    mo = lab.get("mouth") or {}
    hp = lab.get("head_pose") or {}
    return {
        "key": doc.get("key"), "class": lab.get("class"), "lighting": lab.get("lighting"),
        "accessory": lab.get("accessory"), "yawn_type": mo.get("yawn"), "mouth_openness": mo.get("openness"),
        "hand_over_mouth": lab.get("hand_over_mouth"), "yaw": hp.get("yaw"),
        "augmented": _is_augmented(doc),
        "renderer_version": ((doc.get("params") or {}).get("render") or {}).get("renderer_version"),
    }


def _ear(p, side: str) -> float:
    return ear(p, EAR_RIGHT if side == "right" else EAR_LEFT)


def _mar(p) -> float:
    return mar(p)


def _measure(measure, img: np.ndarray, lab: dict, counts: Counter):
    """MediaPipe landmarks of this sample (False: no face), or None when it is not measured (balance:
    every sample with a closed eye or a yawn, and as many others)."""
    eyes = lab.get("eyes") or {}
    pos = any((eyes.get(s) or {}).get("state") == "close" for s in ("left", "right")) or bool(
        (lab.get("mouth") or {}).get("yawning"))
    if not pos and counts["neg"] >= counts["pos"] + 50:
        return None
    counts["pos" if pos else "neg"] += 1
    p = measure(img)
    return False if p is None else p


FACE_TASKS = ("yawn", "landmarks", "head_pose", "gaze")  # the tasks that read the face crop
NOT_FRAMED = "no face found by the framing detector (real images without one are left out too)"
AUGMENTED = "augmented view (--no-augmented: the rendered images only)"


def read_synthetic(dataset_dir: str | Path, split: str, tasks: tuple[str, ...], limit: int | None = None,
                   progress: Callable[[int], None] | None = None,
                   measure: Callable[[np.ndarray], np.ndarray | None] | None = None,
                   frame: Callable[[np.ndarray], np.ndarray | None] | None = None,
                   augmented: bool = True) -> SyntheticSet:
    """``measure(image) -> MediaPipe landmarks or None``: when given, the eye and yawn rows' metadata get
    MediaPipe's eye aspect ratio / mouth ratio on the synthetic pixels (``mp_ear``, ``mp_mar``; None when
    MediaPipe finds no face), for every positive row and as many negatives: does the label show?

    ``frame(image) -> landmarks or None``: the detector that frames the face crops (the real images'
    detector, so both domains carry its framing errors; docs/transfer.md, "Crop rules"). None frames
    them by the exact landmarks. A sample it finds no face in leaves the face-crop tasks (counted in
    ``excluded``), as a real image does. Targets (points, pose, gaze) stay exact either way; eye crops
    always use the exact landmarks.

    ``augmented=False`` leaves out the augment stage's views (a sample with ``aug`` or ``source_key``),
    counted in ``excluded`` for every task: trained on the renders alone, the report shows whether the
    augmentation helps on the real data (docs/transfer-log.md, "Does the augment stage pay?")."""
    ib = np.asarray(ibug68_index_map(), np.int64)
    buf: dict[str, tuple[list, list, list, list]] = {t: ([], [], [], []) for t in tasks}
    counts = Counter()
    excluded: dict[str, Counter] = {t: Counter() for t in tasks}
    n = 0
    for rec in iter_samples(dataset_dir, split):
        doc = rec["json"]
        if is_quarantined(doc):
            continue
        if limit is not None and n >= limit:
            break
        n += 1
        if progress is not None and n % 500 == 0:
            progress(n)
        if not augmented and _is_augmented(doc):  # before any decoding: the reason is this, not a later one
            for t in tasks:
                excluded[t][AUGMENTED] += 1
            continue
        img = np.asarray(rec["image"])
        lm = doc.get("landmarks") or {}
        xy = np.asarray(lm.get("xy") or [], np.float64)
        if xy.shape[0] < 468:
            for t in tasks:
                excluded[t]["no 478-point landmarks"] += 1
            continue
        lab = doc.get("labels") or {}
        ident = str((lab.get("identity") or {}).get("id") or doc.get("identity"))
        meta = _meta(doc)
        g = C.grey(img)
        mp = _measure(measure, img, lab, counts) if measure is not None else None
        big = small = box = None
        face_tasks = [t for t in FACE_TASKS if t in tasks]
        if face_tasks:
            fp = xy
            if frame is not None:  # the validation split's cue detection is the same call: reuse its answer
                fp = (None if mp is False else mp) if frame == measure and mp is not None else frame(img)
            if fp is None:
                for t in face_tasks:
                    excluded[t][NOT_FRAMED] += 1
            else:
                big, small, box = face_crops(g, fp)

        def add(t, x, y, m=meta):
            buf[t][0].append(x)
            buf[t][1].append(np.asarray(y, np.float32))
            buf[t][2].append(ident)
            buf[t][3].append(m)

        if "eye" in tasks:
            for side in ("right", "left"):
                e = (lab.get("eyes") or {}).get(side) or {}
                if e.get("visible") is False:
                    excluded["eye"][f"eye not visible ({e.get('hidden_by') or lab.get('accessory')})"] += 1
                    continue
                if e.get("state") not in ("open", "close"):
                    excluded["eye"][f"eye state {e.get('state')!r}"] += 1
                    continue
                eb = C.exact_box(C.eye_box(xy, side))
                add("eye", C.crop(g, eb, C.EYE_SIZE), [1.0 if e["state"] == "close" else 0.0],
                    {**meta, "side": side, "source_side_px": eb.side,
                     **({"mp_ear": None if mp is False else _ear(mp, side)} if mp is not None else {})})
        if box is None:  # not framed: no face-crop task reads this sample
            continue
        if "yawn" in tasks:
            mo = lab.get("mouth") or {}
            if mo.get("visible") is False:
                excluded["yawn"]["mouth not visible (occluder)"] += 1
            elif lab.get("accessory") == "mask":
                excluded["yawn"]["mouth under a face mask"] += 1
            elif not isinstance(mo.get("yawning"), bool):
                excluded["yawn"]["no mouth.yawning label"] += 1
            else:
                from dmsfactory.transfer.analysis import mouth_box  # heavy: torch

                add("yawn", small, [1.0 if mo["yawning"] else 0.0],
                    {**meta, "mouth_box": mouth_box(box.to_crop(xy[ib], C.FACE_SIZE)),
                     **({"mp_mar": None if mp is False else _mar(mp)} if mp is not None else {})})
        if "landmarks" in tasks:
            add("landmarks", big, box.to_crop(xy[ib], C.LANDMARK_SIZE).reshape(-1))
        if "head_pose" in tasks:
            hp = lab.get("head_pose")
            if isinstance(hp, dict) and all(isinstance(hp.get(k), (int, float)) for k in ("yaw", "pitch", "roll")):
                add("head_pose", small, [hp["yaw"], hp["pitch"], hp["roll"]])
            else:
                excluded["head_pose"]["no camera-frame head pose"] += 1
        if "gaze" in tasks:
            gz = lab.get("gaze") or {}
            ang = [(gz.get(s) or {}) for s in ("left", "right")]
            if all(isinstance(a.get("yaw"), (int, float)) and isinstance(a.get("pitch"), (int, float)) for a in ang):
                add("gaze", small, [np.mean([a["yaw"] for a in ang]), np.mean([a["pitch"] for a in ang])])
            else:
                excluded["gaze"]["no camera-frame gaze"] += 1
    out = {}
    for t, (xs, ys, ids, metas) in buf.items():
        if xs:
            out[t] = TaskArrays(np.stack(xs), np.stack(ys), ids, metas)
        else:
            size = C.EYE_SIZE if t == "eye" else (C.LANDMARK_SIZE if t == "landmarks" else C.FACE_SIZE)
            out[t] = TaskArrays(np.zeros((0, size, size), np.uint8), np.zeros((0, 1), np.float32), [], [])
    return SyntheticSet(out, n, excluded)
