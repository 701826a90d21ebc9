"""The privacy gate as a factory stage (``name = "privacy"``), run on every sample before sharding.

Per sample (:meth:`PrivacyStage.process`):

1. **presence** - MediaPipe + Haar (+ dlib HOG from the descriptor step). No face where the sample's
   labels say one is visible => quarantined (``check="presence"``) when ``quarantine_faceless``.
2. **descriptor** - dlib 5-point + ResNet 128-d for every face found; the one matching the labelled
   bbox is stored as ``arrays["face_descriptor"]``, the 64-bit pHash of the face region as ``arrays["phash"]`` (0/1).
3. **leakage** - every face against every configured real gallery; the closest match below
   ``threshold`` quarantines the sample (``check="leakage"``) with gallery, file, distance, margin.
   A leaked sample's pixels are replaced by a coarse mosaic and its descriptor is not stored, so a real
   face (or its biometric template) never reaches the output, not even the quarantine shards.

Dataset level (:meth:`PrivacyStage.finalize`): memorisation across identities, pHash duplicates,
identity consistency and the report (``privacy_report.json``, markdown, histograms) - see
:mod:`dmsfactory.privacy.report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from dmsfactory.privacy.config import PrivacyConfig
from dmsfactory.sample import CardSection, FaceSample

STAGE = "privacy"


def mosaic(image: np.ndarray, blocks: int = 6) -> np.ndarray:
    """Coarse pixelation (``blocks`` cells across the short side): keeps a record, loses the identity."""
    import cv2

    h, w = image.shape[:2]
    s = max(1, min(h, w) // blocks)
    small = cv2.resize(image, (max(1, w // s), max(1, h // s)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def face_crop(image: np.ndarray, box: Any, pad: float = 0.25) -> np.ndarray:
    """The face region (box grown by ``pad`` per side) for the perceptual hash; the whole image without a box.

    Hashing the whole frame would call two different people duplicates whenever the face is small and the
    cabin background is shared (measured: 42 cross-identity pairs <= 4 bits in 90 procedural renders).
    """
    if box is None:
        return image
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    px, py = (x1 - x0) * pad, (y1 - y0) * pad
    xa, ya = max(0, int(x0 - px)), max(0, int(y0 - py))
    xb, yb = min(w, int(np.ceil(x1 + px))), min(h, int(np.ceil(y1 + py)))
    if xb - xa < 8 or yb - ya < 8:
        return image
    return image[ya:yb, xa:xb]


class PrivacyStage:
    name = STAGE

    def __init__(self, config: PrivacyConfig | None = None, progress: Callable[[str, int, int], None] | None = None):
        self.cfg = config or PrivacyConfig()
        self.progress = progress
        self.analyzer = None
        self.search = None
        self.galleries: list = []

    # ------------------------------------------------------------ setup
    def setup(self) -> None:
        if self.analyzer is not None:
            return
        from dmsfactory.privacy.analyze import FaceAnalyzer
        from dmsfactory.privacy.leakage import GalleryError, GallerySearch, load_gallery

        analyzer = FaceAnalyzer(self.cfg)
        analyzer.setup()
        galleries = []
        for i, g in enumerate(self.cfg.galleries):
            cb = (lambda d, t, g=g: self.progress(f"gallery {g}", d, t)) if self.progress else None
            try:
                gal = load_gallery(g, analyzer, self.cfg, self.cfg.resolved_cache_dir(), progress=cb)
            except GalleryError as e:
                raise GalleryError(f"privacy.galleries[{i}]: {e}") from None
            if gal.n_faces == 0:
                raise GalleryError(
                    f"privacy.galleries[{i}]: {g!r} yielded no face descriptors from {gal.n_files} files "
                    f"(e.g. {gal.problems[0]['file']}: {gal.problems[0]['problem']}); nothing to compare against"
                )
            galleries.append(gal)
        self.galleries = galleries
        self.search = GallerySearch(
            galleries, self.cfg.threshold, self.cfg.index, self.cfg.search_chunk,
            low_res_face_px=self.cfg.low_res_face_px, low_res_threshold=self.cfg.low_res_threshold,
        )
        self.analyzer = analyzer

    # ------------------------------------------------------------ per batch
    def process(self, batch: list[FaceSample]) -> list[FaceSample]:
        from dmsfactory.privacy.duplicates import phash
        from dmsfactory.privacy.presence import face_expected

        self.setup()
        cfg = self.cfg
        analyses: list[Any] = []
        for s in batch:
            if s.image is None:
                s.quarantine(STAGE, "no image to check", check="presence")
                analyses.append(None)
                continue
            a = self.analyzer.analyze(s.image, name=f"sample {s.key}", hash_=False)
            analyses.append(a)
            prim = a.primary(s.bbox)
            s.arrays["phash"] = phash(face_crop(s.image, s.bbox or (prim.box if prim else None))).astype(np.float32)
            found = a.presence.found_by()
            found["hog"] = any(f.source == "hog" for f in a.faces)
            present = any(found.values())
            expected, why = face_expected(s, cfg.expect_visible_fraction)
            scores = {"detected_by": [k for k, v in found.items() if v], "expected": expected, **a.presence.scores()}
            if present:
                s.add_verdict(STAGE, "presence", "keep", "face present", **scores)
            elif expected and cfg.quarantine_faceless:
                names = ", ".join(found)
                s.quarantine(STAGE, f"no face detected ({names}) although labels expect one ({why})", check="presence", **scores)
            else:
                s.add_verdict(STAGE, "presence", "undetectable", f"no face detected; expected={expected} ({why})", **scores)
            if prim is not None:
                s.arrays["face_descriptor"] = prim.descriptor.astype(np.float32)

        if self.galleries:
            todo = [(s, a) for s, a in zip(batch, analyses) if a is not None]
            matches = self.search.closest([np.stack([f.descriptor for f in a.faces]) if a.faces else np.zeros((0, 128)) for _, a in todo])
            per_gallery = self.search.nearest(
                np.stack([a.primary(s.bbox).descriptor for s, a in todo if a.faces]) if any(a.faces for _, a in todo) else np.zeros((0, 128))
            )
            pg = iter(per_gallery)
            for (s, a), m in zip(todo, matches):
                if m is None:
                    s.add_verdict(STAGE, "leakage", "undetectable", "no face for the recogniser; not compared")
                    continue
                gd = {
                    (x.gallery if tier == "sharp" else f"{x.gallery} [low-res faces]"): round(d, 4)
                    for x in next(pg) for tier, d in x.tier_distances.items()
                }
                scores = {**m.as_dict(), "faces": len(a.faces), "gallery_distances": gd, "threshold": cfg.threshold}
                if m.leaked:
                    s.quarantine(
                        STAGE,
                        f"identity leak: face matches real gallery {m.gallery!r} file {m.file!r} at distance "
                        f"{m.distance:.3f} < {m.threshold}{' (low-resolution gallery face)' if m.low_res else ''} "
                        f"(margin {m.margin:.3f}); pixels redacted",
                        check="leakage",
                        **scores,
                    )
                    s.image = mosaic(s.image)
                    s.arrays.pop("face_descriptor", None)
                    s.arrays["phash"] = phash(face_crop(s.image, s.bbox)).astype(np.float32)
                else:
                    s.add_verdict(STAGE, "leakage", "keep", f"closest real face at {m.distance:.3f} >= {m.threshold}", **scores)
        return batch

    # ------------------------------------------------------------ dataset level
    def finalize(
        self,
        dataset_dir: Path,
        records: list[dict[str, Any]],
        image_lookup: Callable[[str], np.ndarray | None] | None = None,
    ) -> CardSection:
        from dmsfactory.privacy.report import build_report, shard_image_lookup

        lookup = image_lookup or shard_image_lookup(Path(dataset_dir))
        return build_report(records, self.cfg, self.galleries, lookup)
