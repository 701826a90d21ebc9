"""Face presence: MediaPipe face detection and OpenCV's Haar cascade.

A detection says only that *a face is present*. It never proves that the identity is synthetic; that is
what the descriptor search in :mod:`dmsfactory.privacy.leakage` is for.

MediaPipe runs its short-range model (faces within ~2 m: a DMS camera at 0.5-1 m) and, when that finds
nothing, the full-range model (wider shots such as gallery photos). Haar runs on a copy downscaled to
``haar_max_side`` (its cost grows with pixels; 50-130 ms at 512 px here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dmsfactory.privacy.descriptors import Face, limit_side


# Haar with a labelled face box: the window (times the box's side, centred on it) and the smallest face
# (times the box's side) it looks for
HAAR_ROI_WINDOW = 2.0
HAAR_ROI_MIN = 0.3


@dataclass
class PresenceResult:
    detections: dict[str, list[Face]] = field(default_factory=dict)  # detector -> faces (analysed-image px)

    @property
    def present(self) -> bool:
        return any(self.detections.values())

    def found_by(self) -> dict[str, bool]:
        return {k: bool(v) for k, v in self.detections.items()}

    def scores(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, faces in self.detections.items():
            out[f"{k}_faces"] = len(faces)
            if k == "mediapipe":
                out["mediapipe_score"] = round(max((f.score for f in faces), default=0.0), 4)
        return out


class PresenceDetectors:
    """MediaPipe + Haar face presence. ``setup()`` loads the models once per worker."""

    def __init__(
        self,
        detectors: tuple[str, ...] | list[str] = ("mediapipe", "haar"),
        mediapipe_min_confidence: float = 0.5,
        haar_min_neighbors: int = 5,
        haar_max_side: int = 320,
    ):
        self.detectors = tuple(detectors)
        self.min_conf = mediapipe_min_confidence
        self.haar_min_neighbors = haar_min_neighbors
        self.haar_max_side = haar_max_side
        self._mp: list[Any] | None = None
        self._haar = None

    def setup(self) -> None:
        if "mediapipe" in self.detectors and self._mp is None:
            import mediapipe as mp  # heavy: mediapipe

            fd = mp.solutions.face_detection
            self._mp = [
                fd.FaceDetection(model_selection=0, min_detection_confidence=self.min_conf),
                fd.FaceDetection(model_selection=1, min_detection_confidence=self.min_conf),
            ]
        if "haar" in self.detectors and self._haar is None:
            import cv2

            path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
            self._haar = cv2.CascadeClassifier(path)
            if self._haar.empty():  # opencv 5 wheels ship no cascades (DESIGN.md)
                raise RuntimeError(f"OpenCV Haar cascade not loadable from {path}; pin opencv-python-headless<5")

    def close(self) -> None:
        for m in self._mp or []:
            m.close()
        self._mp = None

    def mediapipe(self, img: np.ndarray) -> list[Face]:
        self.setup()
        h, w = img.shape[:2]
        for model in self._mp or []:
            res = model.process(img)
            faces = []
            for d in res.detections or []:
                b = d.location_data.relative_bounding_box
                kp = [(k.x * w, k.y * h) for k in d.location_data.relative_keypoints]
                box = (b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h)
                faces.append(Face(box, "mediapipe", float(d.score[0]), extra={"keypoints": kp}))
            if faces:
                return faces
        return []

    def haar(self, img: np.ndarray, roi: tuple[float, float, float, float] | None = None) -> list[Face]:
        """Haar detections (``img`` pixels). ``roi``: the labelled face box: scan only a window of
        ``HAAR_ROI_WINDOW`` x its side around it, for faces of at least ``HAAR_ROI_MIN`` x its side (the
        question is whether *that* face is detectable; the scan costs ~6x less on a 256 px render)."""
        import cv2

        self.setup()
        small, f = limit_side(img, self.haar_max_side)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))  # of the whole image, window or not
        ox = oy = 0
        m = 20
        if roi is not None:
            window = roi_window(tuple(v * f for v in roi), gray.shape, HAAR_ROI_WINDOW)
            if window is None:
                return []
            ox, oy, x1, y1 = window
            gray = gray[oy:y1, ox:x1]
            m = max(m, int(round(HAAR_ROI_MIN * f * max(roi[2] - roi[0], roi[3] - roi[1]))))
        rects = self._haar.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=self.haar_min_neighbors, minSize=(m, m)
        )
        return [
            Face(((x + ox) / f, (y + oy) / f, (x + ox + w) / f, (y + oy + h) / f), "haar", 1.0)
            for (x, y, w, h) in np.asarray(rects).reshape(-1, 4)
        ]

    def detect(self, img: np.ndarray, fallback: bool = False, roi: tuple[float, float, float, float] | None = None,
               first_only: bool = False) -> PresenceResult:
        """Run the detectors in order. ``fallback``: stop at the first that finds a face (a later one
        would not change "present"; Haar costs ~10x MediaPipe). ``first_only``: run the first detector
        alone (the gate, where no face is expected: a fallback's answer would decide nothing).
        Detectors not run are absent from ``detections``. ``roi``: the labelled face box; Haar looks
        only around it (:meth:`haar`)."""
        res = PresenceResult()
        for d in self.detectors[:1] if first_only else self.detectors:
            res.detections[d] = self.mediapipe(img) if d == "mediapipe" else self.haar(img, roi)
            if fallback and res.detections[d]:
                break
        return res


def roi_window(roi: tuple[float, float, float, float], shape: tuple[int, ...], grow: float) -> tuple[int, int, int, int] | None:
    """The box ``roi`` grown ``grow`` times about its centre (square on its longer side), clipped to an
    image of ``shape``; None when nothing of it lies inside the image."""
    x0, y0, x1, y1 = (float(v) for v in roi)
    side = max(x1 - x0, y1 - y0) * grow / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = shape[:2]
    a, b = max(0, int(np.floor(cx - side))), max(0, int(np.floor(cy - side)))
    c, d = min(w, int(np.ceil(cx + side))), min(h, int(np.ceil(cy + side)))
    if c - a < 2 or d - b < 2:
        return None
    return a, b, c, d


def face_expected(sample: Any, visible_fraction: float = 0.5) -> tuple[bool, str]:
    """Do the sample's own labels say a face should be visible? Returns (expected, why).

    Order: an explicit ``labels["face_visible"]``; else the landmark visibility (fraction of the 468
    mesh points visible and inside the image >= ``visible_fraction``); else True (no labels: an image
    handed to the gate is assumed to show a face).
    """
    labels = getattr(sample, "labels", None) or {}
    if isinstance(labels.get("face_visible"), bool):
        return labels["face_visible"], "labels.face_visible"
    vis = getattr(sample, "visibility", None)
    lm = getattr(sample, "landmarks", None)
    if vis is not None and len(vis) >= 468:
        ok = np.asarray(vis[:468], bool)
        img = getattr(sample, "image", None)
        if lm is not None and img is not None and len(lm) >= 468:
            h, w = img.shape[:2]
            p = np.asarray(lm[:468], np.float64)
            ok = ok & (p[:, 0] >= 0) & (p[:, 0] < w) & (p[:, 1] >= 0) & (p[:, 1] < h)
        frac = float(ok.mean())
        return frac >= visible_fraction, f"visible landmark fraction {frac:.2f}"
    return True, "no geometry labels"
