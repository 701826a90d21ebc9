"""Per-frame anonymisation: fit, render a synthetic identity, blend, re-check (docs/anonymize.md).

For each face MediaPipe finds (largest first, up to ``max_faces``):

1. **Fit**: the 478-point mesh gives the measurements the labels are made of (eye aspect ratio per
   eye, mouth ratio, iris offsets, head pose by rigid-mesh PnP) and a first-order lighting estimate.
2. **Render**: the track's synthetic identity is rendered through the head generator's plan-entry
   interface (``anonymize.head``) at the pose, eye openness, mouth opening and gaze that make
   MediaPipe read the original's values on it (per-identity calibration), at about the face's size.
3. **Blend** (``anonymize.compose``): warp, relight, feathered alpha (or Poisson).
4. **Re-check**: MediaPipe runs on the anonymised frame; each label is compared with the
   original's reading. Stills get up to ``refine`` closed-loop corrections (re-render with the
   residual fed back); in video the residual is carried to the next frame of the track.

A frame without a face passes through unchanged and is reported (``no_face``).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dmsfactory.anonymize.compose import (Composite, _sample, apply_affine, compose, compose_crop, fit_shading,
                                         lighting_summary)
from dmsfactory.anonymize.config import AnonymizeConfig
from dmsfactory.anonymize.diffusion import DiffusionAnonymizer, crop_transform
from dmsfactory.anonymize.head import Calibration, HeadModel, RenderError, SyntheticIdentity, rel_matrix
from dmsfactory.anonymize.mesh import FaceMesh, FaceMeasure, index_sets, intrinsics, ray_rotation
from dmsfactory.errors import DmsFactoryError
from dmsfactory.geometry import F
from dmsfactory.privacy.descriptors import FaceDescriber, mediapipe_box_to_hog

RECOGNISABLE_BLOCKS, RECOGNISABLE_MARGIN = 8, 0.3  # pixelation of a face that stays recognisable (see _guided)
SAME_PERSON = 0.6  # dlib's same-person threshold (its documented operating point)
CORR_LIMITS = {"pose": 15.0, "ear": 0.15, "mar": 0.6, "iris": 0.6}


def _ang(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / u if u > 0 else 0.0


@dataclass
class Track:
    id: int
    identity: SyntheticIdentity
    calib: Calibration | None
    sample_seed: int
    lighting: str
    bbox: tuple[float, float, float, float]
    last_t: float
    corr: dict[str, Any] = field(default_factory=lambda: {"pose": {"yaw": 0.0, "pitch": 0.0, "roll": 0.0},
                                                          "ear": {"left": 0.0, "right": 0.0}, "mar": 0.0,
                                                          "iris": [0.0, 0.0]})


@dataclass
class FaceResult:
    track: int
    identity: dict
    labels: dict
    landmarks: np.ndarray  # (478, 2) of the synthetic face in the output frame
    bbox: tuple[float, float, float, float]
    roi: tuple[int, int, int, int]
    source: dict
    output: dict | None
    recheck: dict
    command: dict
    iterations: int
    keys: bytes | None = None  # secret (the diffusion route's z_T + embedding): only into the encrypted record

    def to_json(self) -> dict[str, Any]:
        return {"track": self.track, "synthetic_identity": self.identity, "labels": self.labels,
                "landmarks": {"format": "mediapipe_refined_478", "xy": np.round(self.landmarks.astype(np.float64), 2).tolist(),
                              "note": "the synthetic face's landmarks in the anonymised frame"} if len(self.landmarks) else None,
                "bbox": [round(float(v), 2) for v in self.bbox], "changed_region": list(self.roi),
                "source_measure": self.source, "output_measure": self.output, "recheck": self.recheck,
                "command": self.command, "iterations": self.iterations}


@dataclass
class FrameResult:
    image: np.ndarray
    faces: list[FaceResult]
    regions: list[tuple[int, int, int, int]]  # changed pixel boxes (x0, y0, x1, y1)
    no_face: bool
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Anonymizer:
    """One per worker. ``video=True``: MediaPipe tracks between frames and tracks keep their
    synthetic identity; call :meth:`reset` between videos."""

    def __init__(self, config: AnonymizeConfig | None = None, head: HeadModel | None = None, video: bool = False):
        self.cfg = config or AnonymizeConfig()
        self.head = head
        self.video = video
        self.fit_mesh = FaceMesh(video, self.cfg.max_faces, self.cfg.min_confidence)
        self.check_mesh = FaceMesh(video, self.cfg.max_faces, self.cfg.min_confidence)
        self.calib_mesh = FaceMesh(False, 1, 0.3)
        self.tracks: list[Track] = []
        self._next_track = 0
        self._diffusion = None
        # in memory only (never written): the last frame's landmarks per track, for identity metrics
        self.last_source_landmarks: dict[int, np.ndarray] = {}
        self.last_output_landmarks: dict[int, np.ndarray | None] = {}

    def setup(self) -> None:
        single_thread_blas()
        if self.head is None:
            self.head = HeadModel()
        self.head.canonical_model()
        for m in (self.fit_mesh, self.check_mesh, self.calib_mesh):
            m.setup()
        if self.cfg.backend == "diffusion" and self._diffusion is None:
            self._diffusion = DiffusionAnonymizer(self.cfg.diffusion)
            self._diffusion.setup()

    def close(self) -> None:
        for m in (self.fit_mesh, self.check_mesh, self.calib_mesh):
            m.close()

    def reset(self, video: bool | None = None) -> None:
        """Forget tracks (a new source); MediaPipe's tracker restarts too."""
        if video is not None and video != self.video:
            self.video = video
            self.fit_mesh.close()
            self.check_mesh.close()
            self.fit_mesh = FaceMesh(video, self.cfg.max_faces, self.cfg.min_confidence)
            self.check_mesh = FaceMesh(video, self.cfg.max_faces, self.cfg.min_confidence)
        elif self.video:
            for m in (self.fit_mesh, self.check_mesh):
                m.close()
        self.tracks = []
        self._next_track = 0

    # ------------------------------------------------------------------ identities and tracks
    def _identity_for(self, source_id: str, track: int, skin_rgb: np.ndarray, lighting: str, k: int = 0) -> SyntheticIdentity:
        h = hashlib.sha256(f"anon:{self.cfg.seed}:{source_id}:{track}".encode()).digest()
        slot = (int.from_bytes(h[:4], "little") + k) % self.cfg.identity_pool
        base = SyntheticIdentity.from_seed(1_000_000 + self.cfg.seed * 100_003 + slot)
        table = self.head.tone_table(lighting=lighting)
        lum = float(np.mean(skin_rgb))
        tone = min(table, key=lambda t: abs(math.log(max(lum, 1.0) / max(float(np.mean(table[t])), 1.0))))
        return SyntheticIdentity(base.id + f"t{tone}", base.seed, {**base.params, "skin_tone": int(tone)})

    def _new_track(self, source_id: str, m: FaceMeasure, image: np.ndarray, t: float) -> Track:
        tid = self._next_track
        self._next_track += 1
        lighting = "night_ir" if _is_grey(image) else "daylight"
        skin = _skin_colour(image, m)
        ident = self._identity_for(source_id, tid, skin, lighting)
        calib = None
        if self.cfg.backend == "procedural":
            for k in range(3):  # an identity MediaPipe cannot read is replaced by the next of the pool
                try:
                    ident = self._identity_for(source_id, tid, skin, lighting, k)
                    calib = self.head.calibrate(ident, self.calib_mesh, lighting=lighting)
                    break
                except RenderError:
                    calib = None
        seed = int.from_bytes(hashlib.sha256(f"anon-scene:{self.cfg.seed}:{source_id}:{tid}".encode()).digest()[:4], "little") & 0x7FFFFFFF
        tr = Track(tid, ident, calib, seed, lighting, m.bbox, t)
        tr.source_id, tr.skin, tr.new = source_id, skin, True  # type: ignore[attr-defined]
        self.tracks.append(tr)
        return tr

    def _assign(self, source_id: str, faces: list[FaceMeasure], image: np.ndarray, t: float) -> list[Track]:
        if not self.video:
            self.tracks = []
            return [self._new_track(source_id, m, image, t) for m in faces]
        live = [tr for tr in self.tracks if t - tr.last_t <= self.cfg.track_gap_s + 1e-9]
        out: list[Track] = []
        used: set[int] = set()
        for m in faces:
            best, score = None, 0.3
            for tr in live:
                if tr.id in used:
                    continue
                s = _iou(tr.bbox, m.bbox)
                if s > score:
                    best, score = tr, s
            if best is None:
                best = self._new_track(source_id, m, image, t)
            used.add(best.id)
            if _iou(best.bbox, m.bbox) < 0.5 or (getattr(best, "pose", None) and m.head_pose
                                                  and max(_ang(best.pose[k], m.head_pose[k]) for k in best.pose) > 20.0):
                # a jump (cut, fast turn): the carried corrections belonged to another view
                best.corr = Track.__dataclass_fields__["corr"].default_factory()
            best.bbox, best.last_t = m.bbox, t
            best.pose = m.head_pose  # type: ignore[attr-defined]
            out.append(best)
        self.tracks = [tr for tr in self.tracks if t - tr.last_t <= self.cfg.track_gap_s + 1e-9]
        return out

    # ------------------------------------------------------------------ one frame
    def process(self, image: np.ndarray, source_id: str = "frame", t: float = 0.0) -> FrameResult:
        """Anonymise one RGB uint8 frame. ``t``: its time in seconds (video tracks)."""
        self.setup()
        t0 = time.perf_counter()
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{source_id}: expected an HxWx3 uint8 RGB frame, got {image.dtype} {image.shape}")
        model = self.head.canonical_model()
        faces = self.fit_mesh.measure(image, self.cfg.fov_deg, model)[: self.cfg.max_faces]
        if not faces:
            return FrameResult(image, [], [], True, time.perf_counter() - t0, ["no face found by MediaPipe"])
        tracks = self._assign(source_id, faces, image, t)
        self.last_source_landmarks, self.last_output_landmarks = {}, {}
        out = image
        results: list[FaceResult] = []
        notes: list[str] = []
        for m, tr in zip(faces, tracks):
            why = ("head pose could not be solved (PnP)" if m.head_pose is None else
                   "no synthetic identity could be calibrated" if tr.calib is None and self.cfg.backend == "procedural" else None)
            if why:  # a face we cannot replace is still hidden
                notes.append(f"track {tr.id}: {why}; face pixelated")
                res, out = self._fallback(out, m, tr, why)
                results.append(res)
                continue
            try:
                if (getattr(tr, "new", False) and self.cfg.mode == "replace" and self.cfg.backend == "procedural"
                        and self.cfg.identity_candidates > 1):
                    res, out = self._guided(image, out, m, tr)
                else:
                    res, out = self._face(image, out, m, tr, len(faces))
                tr.new = False  # type: ignore[attr-defined]
            except Exception as e:  # noqa: BLE001 - a face that cannot be replaced must never pass unchanged
                why = f"{type(e).__name__}: {e}"
                notes.append(f"track {tr.id}: synthetic face failed ({why}); face pixelated instead")
                res, out = self._fallback(out, m, tr, why)
            results.append(res)
        return FrameResult(out, results, [r.roi for r in results], False, time.perf_counter() - t0, notes)

    def _command(self, m: FaceMeasure, tr: Track) -> dict[str, Any]:
        c, corr = tr.calib, tr.corr
        pose_target = {k: m.head_pose[k] + corr["pose"][k] for k in ("yaw", "pitch", "roll")}
        state = {f"eye_openness_{s}": c.openness_for(s, m.ear[s] + corr["ear"][s]) for s in ("left", "right")}
        mo = c.mouth_for(m.mar + corr["mar"])
        state["mouth_open"] = mo
        state["yawn"] = "yawning_without_hand" if m.mar >= self.cfg.yawn_mar else "none"
        iris = {s: (m.iris[s][0] + corr["iris"][0], m.iris[s][1] + corr["iris"][1]) for s in ("left", "right")}
        return {"pose": c.pose_for(pose_target), "state": state, "gaze": c.gaze_for(iris),
                "mouth_mar": max(0.0, m.mar + corr["mar"]),
                "eye_ear": {s: max(0.0, m.ear[s] + corr["ear"][s]) for s in ("left", "right")}}

    def _render_compose(self, frame: np.ndarray, base: np.ndarray, m: FaceMeasure, tr: Track, cmd: dict):
        H, W = frame.shape[:2]
        K = intrinsics(W, H, self.cfg.fov_deg)
        c = m.landmarks[[33, 263, 1, 168]].mean(0)
        R_ray = ray_rotation(float(c[0]), float(c[1]), K)
        R_cam = F @ rel_matrix(cmd["pose"])
        R_rel = F @ (R_ray.T @ R_cam)
        size = int(np.clip(round(m.face_size / 0.57 / 32.0) * 32, 96, self.cfg.render_max))
        s, entry, clipped = self.head.render_at(tr.identity, size, R_rel, cmd["state"], cmd["gaze"], tr.lighting, tr.sample_seed)
        img = s.image
        comp = compose(base, img, np.asarray(s.landmarks, float), np.asarray(s.arrays["landmarks_3d"], float),
                       m.landmarks, mode=self.cfg.mode, feather=self.cfg.feather, relight=self.cfg.relight,
                       blend=self.cfg.blend, forehead=self.cfg.forehead, mouth_mar=cmd["mouth_mar"],
                       eye_ear=cmd["eye_ear"], mouth_fill="source" if self.cfg.mouth_interior == "source" else "teeth")
        info = {"head_pose_camera_render": {k: round(float(s.params["render"]["head_pose_camera"][k]), 3) for k in ("yaw", "pitch", "roll")},
                "head_pose_car": entry["head_pose_car"], "pose_clipped": clipped, "render_size": size,
                "renderer_version": s.params["render"].get("renderer_version")}
        return comp, info

    def _face(self, frame: np.ndarray, base: np.ndarray, m: FaceMeasure, tr: Track, nfaces: int,
              max_iters: int | None = None):
        cfg = self.cfg
        if cfg.backend == "diffusion":
            return self._face_diffusion(frame, base, m, tr)
        best = None
        iters = 1 + (cfg.refine if not self.video else cfg.video_refine)
        if max_iters is not None:
            iters = min(iters, max_iters)
        for it in range(iters):
            cmd = self._command(m, tr)
            comp, info = self._render_compose(frame, base, m, tr, cmd)
            out_m = self._recheck_measure(comp, m)
            chk = self._recheck(m, out_m)
            cost = chk.pop("_cost")
            if best is None or cost < best[0]:
                best = (cost, comp, info, cmd, out_m, chk, it + 1)
            self._update_corrections(tr, m, out_m)
            if chk["all_agree"] and (self.video or chk["within_refine_tolerance"]):
                break
        _, comp, info, cmd, out_m, chk, n_it = best
        if cfg.mode == "hide":
            comp, hide = self._hide_blend(frame, base, comp, m, out_m)
            out_m = self._recheck_measure(comp, m)
            chk = self._recheck(m, out_m)
            chk.pop("_cost")
            info["hide"] = hide
        self.last_source_landmarks[tr.id] = m.landmarks
        self.last_output_landmarks[tr.id] = None if out_m is None else out_m.landmarks
        labels = self._labels(m, comp)
        res = FaceResult(
            track=tr.id, identity={**tr.identity.to_json(), "renderer_version": info["renderer_version"],
                                   "calibration": tr.calib.to_json()},
            labels=labels, landmarks=comp.landmarks, bbox=_bbox(comp.landmarks), roi=comp.roi,
            source=m.to_json(), output=None if out_m is None else out_m.to_json(), recheck=chk,
            command={"pose_camera": {k: round(v, 3) for k, v in cmd["pose"].items()},
                     "state": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in cmd["state"].items()},
                     "gaze_in_head": {k: round(v, 3) for k, v in cmd["gaze"].items()}, **info},
            iterations=n_it)
        return res, comp.image

    # ------------------------------------------------------------------ identity guidance
    def describe(self, img: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """dlib 128-d descriptor of the face with these mesh landmarks (box from the eye positions, as
        the privacy gate places MediaPipe faces). In memory only; never written."""
        if getattr(self, "_describer", None) is None:
            self._describer = FaceDescriber(detectors=("mediapipe",))
        p = np.asarray(landmarks, float)
        box = (float(p[:468, 0].min()), float(p[:468, 1].min()), float(p[:468, 0].max()), float(p[:468, 1].max()))
        eyes = [tuple(p[[33, 133]].mean(0)), tuple(p[[362, 263]].mean(0))]
        return self._describer.describe_box(np.ascontiguousarray(img), mediapipe_box_to_hog(box, eyes))

    def avoid(self, descriptors) -> None:
        """Descriptors of real people (e.g. a gallery of all drivers) every synthetic face must stay
        more than ``identity_margin`` from; the run's own originals are added as they are seen."""
        self._avoid = [np.asarray(d, np.float32) for d in descriptors]

    def _guided(self, frame: np.ndarray, base: np.ndarray, m: FaceMeasure, tr: Track):
        """Identity guidance (new track): screen up to ``identity_candidates`` synthetic identities (one
        render each) and keep the first whose anonymised face keeps every label (re-check) and is at
        least ``identity_margin`` (dlib distance) from the original and from every real face to avoid;
        else the best by (eye and yawn states kept, distance > 0.6, all labels kept, distance). The chosen identity is then rendered
        with the full closed loop and holds for the track. If dlib still matches that refined face to the
        original (distance <= 0.6), up to ``identity_retries`` next-ranked candidates are refined in turn; a face
        that stays recognisable is pixelated (``recognisable: pixelate``, the default) or kept and flagged
        (``keep``); ``identity_removed`` in the label says which."""
        cfg = self.cfg
        src_d = self.describe(frame, m.landmarks)
        avoid = getattr(self, "_avoid", [])
        G = np.stack([src_d] + list(avoid))

        def min_distance(out: np.ndarray) -> float:  # to the original and every face to avoid; -1: no face found
            lm = self.last_output_landmarks.get(tr.id)
            return -1.0 if lm is None else float(np.linalg.norm(G - self.describe(out, lm)[None], axis=1).min())

        tried: list[dict] = []
        screened: list[tuple] = []
        for k in range(cfg.identity_candidates):
            if k:
                ident = self._identity_for(tr.source_id, tr.id, tr.skin, tr.lighting, k)  # type: ignore[attr-defined]
                try:
                    calib = self.head.calibrate(ident, self.calib_mesh, lighting=tr.lighting)
                except RenderError as e:
                    tried.append({"identity": ident.id, "skipped": str(e)})
                    continue
                tr.identity, tr.calib = ident, calib
            tr.corr = Track.__dataclass_fields__["corr"].default_factory()
            # a closed eye must be showable: skip identities whose closed-eye reading (calibration) is open
            floor_ok = all(tr.calib.ear[s][0] < 0.9 * cfg.ear_closed for s in ("left", "right") if m.ear[s] < cfg.ear_closed)
            if not floor_ok and k < cfg.identity_candidates - 1:
                tried.append({"identity": tr.identity.id, "skipped": "its closed eye reads open (calibration)"})
                continue
            # screening: one render per candidate; the chosen one is refined below
            res, out = self._face(frame, base, m, tr, 1, max_iters=1)
            score = min_distance(out)
            agree = bool(res.recheck.get("all_agree"))
            ch = res.recheck
            eyes_ok = (bool(ch.get("face")) and all(ch["eyes"][s]["agree"] for s in ("left", "right"))
                       and ch["mouth"]["source_yawn"] == ch["mouth"]["output_yawn"])
            tried.append({"identity": tr.identity.id, "min_distance": round(score, 4), "labels_agree": agree})
            # eye and yawn states first (an identity's lids and jaw cannot be corrected much), then beyond the same-person
            # threshold, then all labels kept after one render (the chosen one is refined below), then distance
            rank = (eyes_ok, score > SAME_PERSON, agree, score)
            screened.append((rank, tr.identity, tr.calib))
            if agree and score >= cfg.identity_margin:
                break
        # best first; the sort is stable, so of equal ranks the first screened leads
        screened.sort(key=lambda c: c[0], reverse=True)
        score = screened[0][0][3]
        finals = []
        for _, ident, calib in screened[: 1 + cfg.identity_retries]:
            # the chosen identity with the full closed loop; if dlib still matches it to the original (the
            # refined render can come closer than the screening render), the next-ranked screened one
            tr.identity, tr.calib = ident, calib
            tr.corr = Track.__dataclass_fields__["corr"].default_factory()
            res, out = self._face(frame, base, m, tr, 1)
            final = min_distance(out)
            finals.append({"identity": ident.id, "final_min_distance": round(final, 4)})
            if final < 0 or final > SAME_PERSON:
                break
        removed = None if final < 0 else final > SAME_PERSON  # None: no face found on the output to describe
        guidance = {"recogniser": "dlib_resnet_v1", "margin": cfg.identity_margin, "tried": tried, "refined": finals,
                    "chosen_min_distance": round(score, 4), "avoid_gallery": len(avoid)}
        if removed is False and cfg.recognisable == "pixelate":
            why = (f"still recognisable: dlib distance {final:.3f} <= {SAME_PERSON} to the original or a face to avoid "
                   f"after {len(finals)} refined identities")
            # coarser and wider than the failure fallback: what kept the match is outside the replaced face
            # (outline, hairline: measured on our renders, where 16 blocks over the face box still matched)
            res, out = self._fallback(base, m, tr, why, blocks=RECOGNISABLE_BLOCKS, margin=RECOGNISABLE_MARGIN)
        res.identity["identity_removed"] = removed
        res.identity["guidance_final_min_distance"] = round(final, 4)
        res.identity["guidance"] = guidance
        self._avoid = avoid + [src_d]
        return res, out

    def _fallback(self, base: np.ndarray, m: FaceMeasure, tr: Track, why: str, blocks: int = 16, margin: float = 0.1):
        """Pixelate the face (``blocks`` across its box grown by ``margin`` on each side) when no synthetic
        face could be put in its place."""
        import cv2

        H, W = base.shape[:2]
        x0, y0, x1, y1 = m.bbox
        mx, my = margin * (x1 - x0), margin * (y1 - y0)
        x0, y0 = int(max(0, x0 - mx)), int(max(0, y0 - my))
        x1, y1 = int(min(W, x1 + mx + 1)), int(min(H, y1 + my + 1))
        out = base.copy()
        roi = out[y0:y1, x0:x1]
        small = cv2.resize(roi, (blocks, max(1, round(blocks * roi.shape[0] / max(roi.shape[1], 1)))), interpolation=cv2.INTER_AREA)
        out[y0:y1, x0:x1] = cv2.resize(small, (roi.shape[1], roi.shape[0]), interpolation=cv2.INTER_NEAREST)
        labels = self._labels(m, None)
        res = FaceResult(track=tr.id, identity={**tr.identity.to_json(), "method": "fallback_pixelate"}, labels=labels,
                         landmarks=np.zeros((0, 2), np.float32), bbox=m.bbox, roi=(x0, y0, x1, y1),
                         source=m.to_json(), output=None,
                         recheck={"face": False, "all_agree": False, "fallback": why}, command={}, iterations=0)
        return res, out

    def _hide_blend(self, frame: np.ndarray, base: np.ndarray, comp: Composite, m: FaceMeasure, out_m: FaceMeasure | None):
        """Identity hiding: the synthetic skin over the original's geometry, mixed with the original
        (``out = original + lam (synthetic - original)`` inside the face region) at the largest ``lam``
        whose dlib descriptor stays within ``hide_margin`` of the original's (bisection, 6 steps), so a
        recogniser still matches the driver while the face's appearance is the synthetic one."""
        from dataclasses import replace

        x0, y0, x1, y1 = comp.roi
        src_d = self.describe(frame, m.landmarks)
        full = comp.image[y0:y1, x0:x1].astype(np.float32)
        orig = base[y0:y1, x0:x1].astype(np.float32)

        def mix(lam: float) -> np.ndarray:
            out = base.copy()
            out[y0:y1, x0:x1] = np.clip(orig + lam * (full - orig) + 0.5, 0, 255).astype(np.uint8)
            return out

        def dist(img: np.ndarray) -> float:
            return float(np.linalg.norm(self.describe(img, m.landmarks) - src_d))

        steps = []
        d1 = dist(comp.image)
        steps.append((1.0, d1))
        if d1 <= self.cfg.hide_margin:
            lam, img = 1.0, comp.image
        else:
            lo, hi = 0.0, 1.0
            for _ in range(6):
                mid = 0.5 * (lo + hi)
                d = dist(mix(mid))
                steps.append((mid, d))
                if d <= self.cfg.hide_margin:
                    lo = mid
                else:
                    hi = mid
            lam, img = lo, mix(lo)
        info = {"lambda": round(lam, 4), "margin": self.cfg.hide_margin, "recogniser": "dlib_resnet_v1",
                "search": [[round(a, 4), round(b, 4)] for a, b in steps],
                "note": "distance measured with the original's landmarks as the face box (in memory only)"}
        return replace(comp, image=img), info

    def _face_diffusion(self, frame: np.ndarray, base: np.ndarray, m: FaceMeasure, tr: Track):
        """DiffPrivacy's route (``anonymize.diffusion``): the original's crop, inverted and denoised away
        from its dlib descriptor; the crop is blended back over the original's outline."""
        import cv2

        R = self.cfg.diffusion.resolution
        M = crop_transform(m.landmarks, R)
        crop = cv2.warpAffine(frame, M, (R, R), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
        lm_crop = apply_affine(M, m.landmarks)
        src_d = self.describe(frame, m.landmarks)
        dres = self._diffusion.anonymize_crop(crop, tr.sample_seed, lambda c: self.describe(c, lm_crop), src_d)
        comp = compose_crop(frame, base, dres.crop, M, m.landmarks, feather=self.cfg.feather, forehead=self.cfg.forehead)
        out_m = self._recheck_measure_box(comp.image, m)
        chk = self._recheck(m, out_m)
        chk.pop("_cost")
        self.last_source_landmarks[tr.id] = m.landmarks
        self.last_output_landmarks[tr.id] = None if out_m is None else out_m.landmarks
        res = FaceResult(track=tr.id, identity={"id": f"diffusion-{tr.sample_seed}", "method": "diffusion", **dres.record},
                         labels=self._labels(m, None),
                         landmarks=np.zeros((0, 2), np.float32) if out_m is None else np.asarray(out_m.landmarks, np.float32),
                         bbox=m.bbox, roi=comp.roi, source=m.to_json(), output=None if out_m is None else out_m.to_json(),
                         recheck=chk, command={"crop_resolution": R}, iterations=1, keys=dres.keys)
        return res, comp.image

    def _recheck_measure_box(self, image: np.ndarray, src: FaceMeasure) -> FaceMeasure | None:
        found = self.check_mesh.measure(image, self.cfg.fov_deg, self.head.canonical_model())
        return max(found, key=lambda f: _iou(f.bbox, src.bbox)) if found else None

    def _recheck_measure(self, comp: Composite, src: FaceMeasure) -> FaceMeasure | None:
        found = self.check_mesh.measure(comp.image, self.cfg.fov_deg, self.head.canonical_model())
        if not found:
            return None
        box = _bbox(comp.landmarks)
        return max(found, key=lambda f: _iou(f.bbox, box))

    def _recheck(self, src: FaceMeasure, out: FaceMeasure | None) -> dict[str, Any]:
        cfg = self.cfg
        if out is None or _iou(out.bbox, src.bbox) < 0.2:
            return {"face": False, "all_agree": False, "within_refine_tolerance": False, "_cost": 1e9,
                    "reason": "no face found by MediaPipe on the anonymised frame"}
        r: dict[str, Any] = {"face": True}
        eyes = {}
        for s in ("left", "right"):
            a, b = src.ear[s] < cfg.ear_closed, out.ear[s] < cfg.ear_closed
            eyes[s] = {"source_closed": bool(a), "output_closed": bool(b), "agree": bool(a == b),
                       "ear_diff": round(out.ear[s] - src.ear[s], 4)}
        r["eyes"] = eyes
        mo = {"source_open": bool(src.mar > cfg.mar_open), "output_open": bool(out.mar > cfg.mar_open),
              "source_yawn": bool(src.mar >= cfg.yawn_mar), "output_yawn": bool(out.mar >= cfg.yawn_mar),
              "mar_diff": round(out.mar - src.mar, 4)}
        mo["agree"] = mo["source_open"] == mo["output_open"] and mo["source_yawn"] == mo["output_yawn"]
        r["mouth"] = mo
        if src.head_pose and out.head_pose:
            err = {k: round(_ang(out.head_pose[k], src.head_pose[k]), 3) for k in ("yaw", "pitch", "roll")}
            r["head_pose"] = {"error_deg": err, "max_error_deg": max(err.values()),
                              "agree": max(err.values()) <= cfg.pose_tolerance_deg}
        else:
            r["head_pose"] = {"agree": False, "reason": "PnP failed"}
        d = [out.iris[s][k] - src.iris[s][k] for s in ("left", "right") for k in (0, 1)]
        r["gaze"] = {"iris_offset_diff": [round(float(np.mean(d[0::2])), 4), round(float(np.mean(d[1::2])), 4)]}
        r["all_agree"] = bool(eyes["left"]["agree"] and eyes["right"]["agree"] and mo["agree"] and r["head_pose"]["agree"])
        pe = r["head_pose"].get("max_error_deg", 90.0)
        ed = max(abs(eyes[s]["ear_diff"]) for s in ("left", "right"))
        r["within_refine_tolerance"] = bool(pe <= 2.5 and ed <= 0.05 and abs(mo["mar_diff"]) <= 0.1)
        dis = sum(not eyes[s]["agree"] for s in ("left", "right")) + (not mo["agree"]) + (not r["head_pose"]["agree"])
        r["_cost"] = 10.0 * dis + pe / 5.0 + ed / 0.05 + abs(mo["mar_diff"]) / 0.1
        return r

    def _update_corrections(self, tr: Track, src: FaceMeasure, out: FaceMeasure | None, gain: float = 0.8) -> None:
        if out is None or out.head_pose is None or src.head_pose is None:
            return
        c = tr.corr
        L = CORR_LIMITS
        for k in ("yaw", "pitch", "roll"):
            c["pose"][k] = float(np.clip(c["pose"][k] + gain * (src.head_pose[k] - out.head_pose[k]), -L["pose"], L["pose"]))
        for s in ("left", "right"):
            c["ear"][s] = float(np.clip(c["ear"][s] + gain * (src.ear[s] - out.ear[s]), -L["ear"], L["ear"]))
        c["mar"] = float(np.clip(c["mar"] + gain * (src.mar - out.mar), -L["mar"], L["mar"]))
        for k in (0, 1):
            d = np.mean([src.iris[s][k] - out.iris[s][k] for s in ("left", "right")])
            c["iris"][k] = float(np.clip(c["iris"][k] + gain * d, -L["iris"], L["iris"]))

    def _labels(self, m: FaceMeasure, comp: Composite | None) -> dict[str, Any]:
        cfg = self.cfg
        eyes = {s: {"state": "close" if m.ear[s] < cfg.ear_closed else "open", "ear": round(m.ear[s], 4)} for s in ("left", "right")}
        return {
            "head_pose": None if m.head_pose is None else {k: round(v, 3) for k, v in m.head_pose.items()},
            "head_pose_method": "solvePnP of the rigid mesh points on the generator's canonical face, "
                                f"assumed horizontal fov {cfg.fov_deg} deg",
            "eyes": eyes,
            "mouth": {"mar": round(m.mar, 4), "open": bool(m.mar > cfg.mar_open), "yawning": bool(m.mar >= cfg.yawn_mar)},
            "gaze": {"iris_offset": {s: [round(v, 4) for v in m.iris[s]] for s in ("left", "right")}},
            "lighting_estimate": None if comp is None else comp.lighting.get("source"),
            "thresholds": {"ear_closed": cfg.ear_closed, "mar_open": cfg.mar_open, "yawn_mar": cfg.yawn_mar},
        }


def single_thread_blas() -> bool:
    """Run numpy's OpenBLAS on one thread in this process. The warp solves ~150x150 systems per frame:
    on a shared 2-core box a multi-threaded OpenBLAS took 45-270 ms per solve against 3 ms single-
    threaded (measured). Returns whether the call succeeded (it is a no-op for other BLAS builds)."""
    import ctypes
    import glob
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        libs = os.path.join(os.path.dirname(np.__file__) + ".libs", "libscipy_openblas*.so")
        for lib in glob.glob(libs):
            h = ctypes.CDLL(lib)
            for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads"):
                fn = getattr(h, name, None)
                if fn is not None:
                    fn(ctypes.c_int(1))
                    return True
    except OSError:
        pass
    return False


class FaceError(DmsFactoryError, RuntimeError):
    """A detected face could not be anonymised (the frame is not written unchanged)."""


def _bbox(p: np.ndarray) -> tuple[float, float, float, float]:
    q = np.asarray(p[:468], float)
    return (float(q[:, 0].min()), float(q[:, 1].min()), float(q[:, 0].max()), float(q[:, 1].max()))


def _is_grey(img: np.ndarray) -> bool:
    s = img[::8, ::8].astype(np.int16)
    return bool(np.abs(s[..., 0] - s[..., 1]).mean() < 2.0 and np.abs(s[..., 1] - s[..., 2]).mean() < 2.0)


def _skin_colour(img: np.ndarray, m: FaceMeasure) -> np.ndarray:
    """Mean skin colour predicted by a shading fit at the skin mesh points (generic normals)."""
    import cv2

    skin = index_sets()["skin"]
    sig = max(0.6, 0.012 * m.face_size)
    H, W = img.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in m.bbox)
    mg = int(3 * sig) + 2
    x0, y0 = max(0, x0 - mg), max(0, y0 - mg)
    fb = cv2.GaussianBlur(img[y0:min(H, y1 + mg), x0:min(W, x1 + mg)].astype(np.float32), (0, 0), sig)
    v = _sample(fb, m.landmarks[skin] - 0.5 - [x0, y0])
    return np.median(v, axis=0)


__all__ = ["Anonymizer", "FrameResult", "FaceResult", "FaceError", "fit_shading", "lighting_summary"]
