"""One pass over an image: presence detectors, face boxes, descriptors, perceptual hash.

MediaPipe runs once and serves both presence and the descriptor boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmsfactory.privacy.config import PrivacyConfig
from dmsfactory.privacy.descriptors import Face, FaceDescriber, as_rgb_uint8, limit_side
from dmsfactory.privacy.duplicates import phash
from dmsfactory.privacy.presence import PresenceDetectors, PresenceResult


@dataclass
class Analysis:
    presence: PresenceResult
    faces: list[Face]  # with descriptors, boxes in original-image pixels, largest first
    phash: np.ndarray | None  # (64,) bool
    scale: float  # analysed image = original * scale

    def primary(self, bbox: tuple[float, float, float, float] | None = None) -> Face | None:
        """The face the sample is about: best overlap with the labelled ``bbox``, else the largest."""
        if not self.faces:
            return None
        if bbox is not None:
            from dmsfactory.privacy.descriptors import iou

            best = max(self.faces, key=lambda f: iou(f.box, tuple(bbox)))
            if iou(best.box, tuple(bbox)) > 0.1:
                return best
        return self.faces[0]


class FaceAnalyzer:
    def __init__(self, cfg: PrivacyConfig):
        self.cfg = cfg
        dets = list(cfg.presence_detectors)
        if "mediapipe" in cfg.descriptor_detectors and "mediapipe" not in dets:
            dets.append("mediapipe")  # descriptor boxes need it even when presence does not
        self.presence = PresenceDetectors(
            dets,
            mediapipe_min_confidence=cfg.mediapipe_min_confidence,
            haar_min_neighbors=cfg.haar_min_neighbors,
            haar_max_side=cfg.haar_max_side,
        )
        self.describer = FaceDescriber(cfg.descriptor_detectors, hog_upsample=cfg.hog_upsample, hog_min_score=cfg.hog_min_score)

    def setup(self) -> None:
        self.presence.setup()
        self.describer.setup()

    def analyze(
        self, image: np.ndarray, name: str = "image", presence: bool = True, descriptors: bool = True, hash_: bool = True
    ) -> Analysis:
        img = as_rgb_uint8(image, name)
        small, scale = limit_side(img, self.cfg.max_image_side)
        if max(img.shape[:2]) < self.cfg.min_image_side:  # thumbnails: dlib HOG needs faces >= ~40 px
            import cv2

            scale = self.cfg.min_image_side / max(img.shape[:2])
            small = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_CUBIC)
        res = PresenceResult()
        if presence:
            res = self.presence.detect(small)
        elif "mediapipe" in self.cfg.descriptor_detectors:
            res.detections["mediapipe"] = self.presence.mediapipe(small)
        faces: list[Face] = []
        if descriptors:
            faces = self.describer.describe(small, res.detections.get("mediapipe"))
        if scale != 1.0:
            for f in faces + [f for fs in res.detections.values() for f in fs]:
                f.box = tuple(v / scale for v in f.box)
        if not presence:
            res = PresenceResult()
        return Analysis(res, faces, phash(img) if hash_ else None, scale)
