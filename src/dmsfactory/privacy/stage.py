"""The privacy gate as a factory stage (``name = "privacy"``), run on every sample before sharding.

The gate judges the bytes that are written: with ``encoding`` (the shards' format and quality) each
image is encoded, decoded and then checked, and the writer reuses those bytes
(:func:`dmsfactory.datasets.shards.encode_sample`), so ``dmsfactory leakcheck`` on the shards sees
exactly what the gate saw (a JPEG round trip moved one demo face from 0.638 to 0.597).

Per sample (:meth:`PrivacyStage.process`):

1. **presence** - MediaPipe, then Haar only when MediaPipe found nothing (``presence_fallback``) and the
   labels expect a face (where they do not, a face Haar found would decide nothing).
   No face where the sample's labels say one is visible => quarantined (``check="presence"``) when
   ``quarantine_faceless``. The pHash of the face region is stored as ``arrays["phash"]`` (0/1).
2. **leakage**, in one of two modes (``leakage_mode``; the report says which ran):

   * ``identity`` (backends whose identity is a parameter: the procedural renderer): the identity is
     judged once on ``identity_views`` views chosen from its whole plan
     (:mod:`dmsfactory.privacy.identity`), the worst view decides, and every image of the identity,
     augmented copies included, gets that verdict with the views that decided it. A failed identity
     quarantines all its images. The views' descriptors are stored on the views' own samples.
   * ``image`` (diffusion, whose identity can drift; copies made by an identity-changing augmentation;
     samples without an identity): every face of every image against every gallery.

   The closest match below ``threshold`` quarantines (``check="leakage"``) with gallery, file,
   distance, margin. A leaked sample's pixels are replaced by a coarse mosaic and its descriptor is not
   stored, so a real face (or its biometric template) never reaches the output, not even the
   quarantine shards: the stage also sees samples an earlier stage quarantined (``sees_quarantined``)
   and runs the leakage check (not presence) on them.

Dataset level (:meth:`PrivacyStage.finalize`, :class:`dmsfactory.privacy.report.PrivacyReport`):
memorisation across identities, pHash duplicates, identity consistency and the report.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dmsfactory.datasets.shards import decode_image, encode_sample
from dmsfactory.privacy.config import PrivacyConfig
from dmsfactory.privacy.duplicates import phash
from dmsfactory.privacy.identity import IdentityVerdict, ViewResult
from dmsfactory.privacy.report import PrivacyReport
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
    sees_quarantined = True  # run_stages hands it earlier-quarantined samples too (leakage check only)

    def __init__(
        self,
        config: PrivacyConfig | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        encoding: tuple[str, int] | None = None,
        views: Any | None = None,
        identity_cache: int = 2048,
    ):
        """``encoding``: (format, quality) of the shards; the gate then judges the encoded-decoded image.
        ``views``: a :class:`~dmsfactory.privacy.identity.ViewSource`; with it (and ``leakage_mode`` not
        ``image``) leakage is judged per identity."""
        self.cfg = config or PrivacyConfig()
        self.progress = progress
        self.encoding = encoding
        self.views = views
        self.mode = "identity" if (views is not None and self.cfg.leakage_mode != "image") else "image"
        self.analyzer = None
        self.search = None
        self.galleries: list = []
        self._identities: OrderedDict[str, Any] = OrderedDict()
        self._identity_cache = identity_cache

    # ------------------------------------------------------------ setup
    def setup(self) -> None:
        if self.analyzer is not None:
            return
        from dmsfactory.privacy.analyze import FaceAnalyzer  # heavy: torch, dlib, mediapipe
        from dmsfactory.privacy.leakage import GalleryError, GallerySearch, load_gallery  # heavy: torch

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

    # ------------------------------------------------------------ helpers
    def judged(self, s: FaceSample) -> tuple[np.ndarray, str | None]:
        """The pixels the gate judges (decoded from the bytes the writer will write) and their sha256."""
        if self.encoding is None:  # judging pixels as given (leakcheck: decoded from the bytes on disk)
            c = s.encoded
            return s.image, (hashlib.sha256(c[3]).hexdigest() if c is not None and c[2] is s.image else None)
        data = encode_sample(s, *self.encoding)
        return decode_image(data), hashlib.sha256(data).hexdigest()

    def per_image(self, s: FaceSample) -> bool:
        """Is ``s`` judged on its own pixels (rather than by its identity's verdict)?"""
        if self.mode != "identity" or not s.identity:
            return True
        judges = getattr(self.views, "judges", None)  # a view source may cover only some identities (leakcheck)
        if judges is not None and not judges(str(s.identity)):
            return True
        from dmsfactory.augment.ops import IDENTITY_CHANGING_OPS  # heavy: albumentations, torch

        return any(a.get("op") in IDENTITY_CHANGING_OPS for a in s.aug)

    def _redact(self, s: FaceSample) -> None:
        s.image = mosaic(s.image)
        s.arrays.pop("face_descriptor", None)
        s.arrays["phash"] = phash(face_crop(s.image, s.written_bbox)).astype(np.float32)

    # ------------------------------------------------------------ per batch
    def process(self, batch: list[FaceSample]) -> list[FaceSample]:
        from dmsfactory.privacy.presence import face_expected  # heavy: torch (via descriptors)

        self.setup()
        cfg = self.cfg
        by_key = {s.key: s for s in batch}
        analysed: dict[str, tuple[Any, str | None]] = {}  # key -> (analysis, sha256 of judged bytes)
        for s in batch:
            if s.image is None:
                if not s.quarantined:
                    s.quarantine(STAGE, "no image to check", check="presence")
                continue
            img, sha = self.judged(s)
            if s.quarantined:  # quarantined by an earlier stage: only the leakage check (redaction) applies
                analysed[s.key] = (self.analyzer.analyze(img, name=f"sample {s.key}", presence=False,
                                                         descriptors=self.per_image(s), hash_=False), sha)
                continue
            expected, why = face_expected(s, cfg.expect_visible_fraction)
            a = self.analyzer.analyze(img, name=f"sample {s.key}", descriptors=self.per_image(s), hash_=False,
                                      roi=s.written_bbox, face_expected=expected)
            analysed[s.key] = (a, sha)
            prim = a.primary(s.written_bbox) if a.described else None
            mp = a.presence.detections.get("mediapipe") or []
            box = s.written_bbox or (prim.box if prim else (mp[0].box if mp else None))
            s.arrays["phash"] = phash(face_crop(img, box)).astype(np.float32)
            found = a.presence.found_by()
            if a.described:
                found["hog"] = any(f.source == "hog" for f in a.faces)
            present = any(found.values())
            scores = {"detected_by": [k for k, v in found.items() if v], "run": list(found), "expected": expected,
                      "mode": "image" if self.per_image(s) else "identity", **a.presence.scores()}
            if present:
                s.add_verdict(STAGE, "presence", "keep", "face present", **scores)
            elif expected and cfg.quarantine_faceless:
                names = ", ".join(found)
                s.quarantine(STAGE, f"no face detected ({names}) although labels expect one ({why})", check="presence", **scores)
            else:
                s.add_verdict(STAGE, "presence", "undetectable", f"no face detected; expected={expected} ({why})", **scores)
            if prim is not None:
                s.arrays["face_descriptor"] = prim.descriptor.astype(np.float32)

        self._leakage_per_image([s for s in batch if s.key in analysed and self.per_image(s)], analysed)
        idents: dict[str, list[FaceSample]] = {}
        for s in batch:
            if s.key in analysed and not self.per_image(s):
                idents.setdefault(str(s.identity), []).append(s)
        verdicts = self.identity_verdicts(list(idents), by_key, analysed)
        for ident, members in idents.items():
            self._apply_identity(verdicts[ident], members)
        return batch

    def _leakage_per_image(self, samples: list[FaceSample], analysed: dict[str, tuple[Any, str | None]]) -> None:
        cfg = self.cfg
        if not self.galleries or not samples:
            return
        todo = [(s, analysed[s.key][0], analysed[s.key][1]) for s in samples]
        matches = self.search.closest([np.stack([f.descriptor for f in a.faces]) if a.faces else np.zeros((0, 128)) for _, a, _ in todo])
        with_face = [(s, a) for s, a, _ in todo if a.faces]
        per_gallery = self.search.nearest(np.stack([a.primary(s.written_bbox).descriptor for s, a in with_face])) if with_face else []
        pg = iter(per_gallery)
        for (s, a, sha), m in zip(todo, matches):
            if m is None:
                s.add_verdict(STAGE, "leakage", "undetectable", "no face for the recogniser; not compared", mode="image")
                continue
            gd = {(x.gallery if tier == "sharp" else f"{x.gallery} [low-res faces]"): round(d, 4)
                  for x in next(pg) for tier, d in x.tier_distances.items()}
            scores = {**m.as_dict(), "mode": "image", "faces": len(a.faces), "gallery_distances": gd,
                      "threshold": cfg.threshold, "sha256": sha}
            if m.leaked:
                s.quarantine(
                    STAGE,
                    f"identity leak: face matches real gallery {m.gallery!r} file {m.file!r} at distance "
                    f"{m.distance:.3f} < {m.threshold}{' (low-resolution gallery face)' if m.low_res else ''} "
                    f"(margin {m.margin:.3f}); pixels redacted",
                    check="leakage",
                    **scores,
                )
                self._redact(s)
            else:
                s.add_verdict(STAGE, "leakage", "keep", f"closest real face at {m.distance:.3f} >= {m.threshold}", **scores)

    # ------------------------------------------------------------ identity mode
    def identity_verdicts(self, identities: list[str], by_key: dict[str, FaceSample] | None = None,
                          analysed: dict[str, tuple[Any, str | None]] | None = None) -> dict[str, IdentityVerdict]:
        """The identities' verdicts from their views (cached per process: every batch gets the same one).
        Each identity's views go through the descriptor network together, one call per identity: the
        network's output moves in the last float bits with the batch it is computed in (~3e-7), so a
        call that also held the other identities this process had not judged yet made an identity's
        descriptors depend on the process's history, and once in a while a stored descriptor rounded
        differently with one worker than with two (seen with renderer 0.11.0). Per identity, the batch is
        always the same views in the same order. Costs ~2.5 ms per view (8.5 against 6 ms per chip)."""
        self.setup()
        out: dict[str, IdentityVerdict] = {}
        for identity in dict.fromkeys(identities):
            hit = self._identities.get(identity)
            if hit is not None:
                self._identities.move_to_end(identity)
                out[identity] = hit
                continue
            res, views = self._identity_views(identity, by_key or {}, analysed or {})
            self.analyzer.complete([a for _, _, a, _ in views])
            out[identity] = self._judge_identity(res, views)
        return out

    def _identity_views(self, identity: str, by_key: dict[str, FaceSample], analysed: dict[str, tuple[Any, str | None]]):
        """Up to ``identity_views`` views of the identity with a face (descriptors deferred):
        (verdict being built, [(key, sha256, analysis, written box)])."""
        res = IdentityVerdict(identity)
        views = []
        for key in self.views.candidates(identity):
            if len(views) >= self.cfg.identity_views:
                break
            res.tried += 1
            s = by_key.get(key)
            if key in analysed and s is not None and s.image is not None:
                a, sha = analysed[key]
            else:
                s = s if s is not None and s.image is not None else self.views.render(key)
                if s.image is None:
                    continue
                img, sha = self.judged(s)
                a = self.analyzer.analyze(img, name=f"view {key}", presence=False, descriptors=False, hash_=False)
            # the identity's own face only (the box as written); HOG only where MediaPipe missed it (by default)
            self.analyzer.describe(a, roi=s.written_bbox, defer=True, hog=self.cfg.identity_view_hog)
            if a.faces:
                views.append((key, sha, a, s.written_bbox))
        return res, views

    def _judge_identity(self, res: IdentityVerdict, views: list) -> IdentityVerdict:
        """The verdict from the described views: the worst view decides."""
        for key, sha, a, box in views:
            match = self.search.closest([np.stack([f.descriptor for f in a.faces])])[0] if self.galleries else None
            res.views.append(ViewResult(key, sha, len(a.faces), match, a.primary(box).descriptor.astype(np.float32)))
        matched = [v for v in res.views if v.match is not None]
        if matched:
            worst = max(matched, key=lambda v: v.match.margin)
            res.best, res.deciding_view = worst.match, worst.key
            near = self.search.nearest(np.stack([v.descriptor for v in res.views]))
            gd: dict[str, float] = {}
            for per_view in near:
                for x in per_view:
                    for tier, d in x.tier_distances.items():
                        g = x.gallery if tier == "sharp" else f"{x.gallery} [low-res faces]"
                        gd[g] = min(gd.get(g, float("inf")), round(d, 4))
            res.gallery_distances = gd
        self._identities[res.identity] = res
        if len(self._identities) > self._identity_cache:
            self._identities.popitem(last=False)
        return res

    def _apply_identity(self, v: Any, members: list[FaceSample]) -> None:
        cfg = self.cfg
        desc = {x.key: x.descriptor for x in v.views}
        for s in members:
            if not v.leaked and s.key in desc and not s.quarantined:
                s.arrays["face_descriptor"] = desc[s.key]
            if not self.galleries:
                continue
            if not v.views:
                s.add_verdict(STAGE, "leakage", "undetectable",
                              f"no face for the recogniser in any of {v.tried} views of identity {v.identity}; not compared",
                              mode="identity", identity=v.identity, views_tried=v.tried)
                continue
            scores = {**v.scores(cfg.threshold), "gallery_distances": v.gallery_distances}
            m = v.best
            if v.leaked:
                s.quarantine(
                    STAGE,
                    f"identity leak: identity {v.identity}'s view {v.deciding_view} matches real gallery {m.gallery!r} file "
                    f"{m.file!r} at distance {m.distance:.3f} < {m.threshold}{' (low-resolution gallery face)' if m.low_res else ''} "
                    f"(margin {m.margin:.3f}); every image of the identity quarantined, pixels redacted",
                    check="leakage",
                    **scores,
                )
                self._redact(s)
            else:
                s.add_verdict(STAGE, "leakage", "keep",
                              f"identity {v.identity}: closest real face over {len(v.views)} views at {m.distance:.3f} >= "
                              f"{m.threshold} (view {v.deciding_view})", **scores)

    # ------------------------------------------------------------ dataset level
    def finalize(
        self,
        dataset_dir: Path,
        records: list[dict[str, Any]],
        image_lookup: Callable[[str], np.ndarray | None] | None = None,
    ) -> CardSection:
        rep = PrivacyReport(self.cfg, [g.summary_with_low_res(self.cfg.low_res_face_px) for g in self.galleries],
                            dataset_dir=dataset_dir, image_lookup=image_lookup)
        for r in records:
            rep.add(r)
        return rep.section()
