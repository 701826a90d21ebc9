"""One pass over an image: presence detectors, face boxes, descriptors, perceptual hash.

MediaPipe runs once and serves both presence and the descriptor boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from dmsfactory.privacy.config import PrivacyConfig
from dmsfactory.privacy.descriptors import Face, FaceDescriber, as_rgb_uint8, labelled_face, limit_side
from dmsfactory.privacy.duplicates import phash
from dmsfactory.privacy.presence import PresenceDetectors, PresenceResult


@dataclass
class Analysis:
    presence: PresenceResult
    faces: list[Face]  # with descriptors, boxes in original-image pixels, largest first
    phash: np.ndarray | None  # (64,) bool
    scale: float  # analysed image = original * scale
    described: bool = True  # False: presence only so far (FaceAnalyzer.describe adds the faces)
    work: np.ndarray | None = field(default=None, repr=False)  # the analysed image, kept for describe()
    mp_work: list[Face] | None = field(default=None, repr=False)  # MediaPipe detections in `work` pixels

    def primary(self, bbox: tuple[float, float, float, float] | None = None) -> Face | None:
        """The face the sample is about: best overlap with the labelled ``bbox``, else the largest."""
        if not self.faces:
            return None
        best = labelled_face(self.faces, bbox) if bbox is not None else None
        return best if best is not None else self.faces[0]


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
        self.describer = FaceDescriber(
            cfg.descriptor_detectors, hog_upsample=cfg.hog_upsample, hog_min_score=cfg.hog_min_score,
            backend=cfg.descriptor_backend,
        )

    def setup(self) -> None:
        self.presence.setup()
        self.describer.setup()

    def analyze(
        self, image: np.ndarray, name: str = "image", presence: bool = True, descriptors: bool = True, hash_: bool = True,
        roi: tuple[float, float, float, float] | None = None, face_expected: bool = True,
    ) -> Analysis:
        """Presence detectors (``presence``), face boxes + dlib descriptors (``descriptors``; with
        ``descriptors=False`` the result keeps what :meth:`describe` needs to add them later without
        running MediaPipe again) and the perceptual hash. ``roi``: the labelled face box (original
        pixels): the Haar presence fallback looks only around it (:meth:`PresenceDetectors.haar`).
        ``face_expected=False`` (the sample's labels say no face is visible): with ``presence_fallback``
        only the first presence detector runs, as a fallback could only turn "undetectable" into
        "present", which decides nothing for such a sample."""
        img = as_rgb_uint8(image, name)
        small, scale = limit_side(img, self.cfg.max_image_side)
        if max(img.shape[:2]) < self.cfg.min_image_side:  # thumbnails: dlib HOG needs faces >= ~40 px
            import cv2

            scale = self.cfg.min_image_side / max(img.shape[:2])
            small = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_CUBIC)
        res = PresenceResult()
        if presence:
            res = self.presence.detect(small, fallback=self.cfg.presence_fallback, roi=_scaled(roi, scale),
                                       first_only=self.cfg.presence_fallback and not face_expected)
        mp = res.detections.get("mediapipe")
        if mp is None and "mediapipe" in self.cfg.descriptor_detectors:
            mp = self.presence.mediapipe(small)  # descriptor boxes need it (now or in a later describe())
        mp_work = [replace(f) for f in mp] if mp is not None else None
        if scale != 1.0:
            for f in [f for fs in res.detections.values() for f in fs]:
                f.box = tuple(v / scale for v in f.box)
        a = Analysis(res, [], phash(img) if hash_ else None, scale, described=False, work=small, mp_work=mp_work)
        if descriptors:
            self.describe(a)
        return a

    def describe(self, a: Analysis, roi: tuple[float, float, float, float] | None = None, defer: bool = False,
                 hog: str = "always") -> Analysis:
        """Add the faces with descriptors to a presence-only analysis (no second MediaPipe run);
        ``roi`` (the labelled face box, original-image pixels): only that face
        (:meth:`FaceDescriber.describe`). ``defer``: the faces' descriptors wait for
        :meth:`complete`, which runs the network once for many analyses. ``hog``: ``fallback`` scans
        with HOG only when MediaPipe missed the ``roi`` face (:meth:`FaceDescriber.describe`)."""
        if a.described:
            return a
        faces = self.describer.describe(a.work, a.mp_work, roi=_scaled(roi, a.scale), defer=defer, hog=hog)
        if a.scale != 1.0:
            for f in faces:
                f.box = tuple(v / a.scale for v in f.box)
        a.faces = faces
        a.described = True
        a.work = None
        a.mp_work = None
        return a

    def complete(self, analyses: list[Analysis]) -> None:
        """The descriptors :meth:`describe` deferred, for all ``analyses`` in one network call."""
        self.describer.complete([f for a in analyses for f in a.faces])


def _scaled(box: tuple[float, float, float, float] | None, scale: float) -> tuple[float, ...] | None:
    """An original-image box in the analysed image's pixels."""
    return None if box is None else tuple(float(v) * scale for v in box)
