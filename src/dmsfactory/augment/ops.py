"""Augmentation operations: ``sample`` draws parameters, ``apply`` is a pure function of them.

Every op is a pair of functions registered in :data:`OPS`:

* ``sample(rng, cfg, view) -> params``: draws the op's parameters (JSON-serialisable numbers,
  including integer seeds for any per-pixel noise) from the view's random generator;
* ``apply(view, params) -> None``: changes the view in place using only ``params`` (and the view).

Replaying the recorded ``params`` therefore reproduces a view exactly (the albumentations
``get_params``/``apply`` split). Geometry is carried with the pixels: landmarks (478 points incl.
the two pupils), their visibility, the face box as four corner keypoints, and the labels that
depend on geometry (head pose roll, gaze vectors, left/right under a flip, eye visibility under an
occluder, "yawning_with_hand" under a hand over the mouth).

Coordinates: continuous pixel coordinates, pixel (i, j) covers [i, i+1) x [j, j+1), so its centre
is (i + 0.5, j + 0.5) -- MediaPipe's normalised coordinates times the image size. A flip maps
x -> W - x. OpenCV's warps index pixel centres at integers, so a matrix ``A`` in our coordinates
is applied to pixels as ``T(-0.5) A T(+0.5)``.

Implementation (round 2): the standard ops run through albumentations 2.0.8 transforms with explicit
parameters (``transform.apply(img, **params)`` / ``apply_to_keypoints``; the sampling half is
albumentations' own ``get_params`` where its ranges fit, seeded from the view's generator, or ours
where the op is placed relative to the face): ``affine`` (``A.Affine``), ``brightness_contrast``
(``A.RandomBrightnessContrast``), ``saturation`` (``A.ColorJitter``), ``occlusion``
(``A.CoarseDropout``'s cutout), ``motion_blur`` (``A.MotionBlur``), ``jpeg`` (``A.ImageCompression``).
Our own code remains where albumentations cannot do the job or is slower (docs/augment.md has the
per-op reasons and timings): ``hflip`` (left/right landmark identities), ``gaussian_noise`` (noise
bank, ~10x faster), ``salt_pepper`` (2x faster), ``glare`` (RandomSunFlare ~15x slower and cannot
place a lens reflection), ``nir``, ``low_light``, ``backlight`` and the landmark-placed occluders.
Records made by round 1 (no ``impl`` key: :func:`record_version` 1) still replay through the round-1
code paths.
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import cv2
import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network update check on import
import albumentations as A  # noqa: E402
from albumentations.augmentations.dropout.functional import cutout as _alb_cutout  # noqa: E402

ALB = f"albumentations {A.__version__}"

from dmsfactory.augment.config import AugmentConfig
from dmsfactory.augment.mirror import mirror_index, mirror_labels
from dmsfactory.geometry import gaze_angles, image_rotation_cam, rotate_head_pose

def record_version(p: dict) -> int:
    """The format of an op's recorded parameters: 1 = round 1 (no ``impl`` key; replayed by the old
    code paths kept in ``affine``, ``occlusion``, ``brightness_contrast``, ``saturation``,
    ``motion_blur`` and ``jpeg``), 2 = current (``impl`` names the albumentations transform or ours).
    The one place that tells them apart."""
    return 1 if p.get("impl") is None else 2


_BORDER = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101}

# landmark groups (MediaPipe refined indices); subject's right eye = corners 33/133 + iris 468-472
EYE_RIGHT = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173, 468, 469, 470, 471, 472)
EYE_LEFT = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398, 473, 474, 475, 476, 477)
MOUTH = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146,
         78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
BROW_RIGHT = (70, 63, 105, 66, 107)
BROW_LEFT = (300, 293, 334, 296, 336)


@dataclass
class View:
    """The mutable state an op chain works on.

    ``image`` starts as the *source's* array (no copy); an op that writes pixels in place must take
    :meth:`writable_image` first, ops that return a new array just assign it. ``labels`` is a private
    copy; ``arrays`` a private dict whose arrays are replaced, never written in place."""

    image: np.ndarray  # uint8 HxWx3
    landmarks: np.ndarray | None  # (N, 2) float64
    visibility: np.ndarray | None  # (N,) bool
    corners: np.ndarray | None  # (4, 2) float64: bbox corners (x0,y0),(x1,y0),(x1,y1),(x0,y1)
    labels: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    source_image: np.ndarray | None = None  # the array the view started from (never written)

    def writable_image(self) -> np.ndarray:
        if self.source_image is not None and np.may_share_memory(self.image, self.source_image):
            self.image = self.image.copy()
        return self.image

    def owned_image(self) -> np.ndarray:
        """The image, as an array the source does not share (copied only when needed)."""
        return self.writable_image()

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    def face_box(self) -> tuple[float, float, float, float]:
        """Current face box (from the corners, else the landmarks, else the whole image)."""
        h, w = self.hw
        if self.corners is not None:
            x0, y0 = self.corners.min(0)
            x1, y1 = self.corners.max(0)
        elif self.landmarks is not None:
            x0, y0 = self.landmarks[:468].min(0)
            x1, y1 = self.landmarks[:468].max(0)
        else:
            return 0.0, 0.0, float(w), float(h)
        x0, x1 = max(0.0, float(x0)), min(float(w), float(x1))
        y0, y1 = max(0.0, float(y0)), min(float(h), float(y1))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return 0.0, 0.0, float(w), float(h)
        return x0, y0, x1, y1

    def point(self, idx: tuple[int, ...]) -> np.ndarray | None:
        if self.landmarks is None or len(self.landmarks) <= max(idx):
            return None
        return self.landmarks[list(idx)].mean(0)

    def hide_under(self, mask: np.ndarray) -> int:
        """Mark landmarks whose pixel lies in ``mask`` (uint8, nonzero = occluded) not visible."""
        if self.landmarks is None:
            return 0
        h, w = self.hw
        xi = np.floor(self.landmarks[:, 0]).astype(np.int64)
        yi = np.floor(self.landmarks[:, 1]).astype(np.int64)
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        hit = np.zeros(len(xi), bool)
        hit[inside] = mask[yi[inside], xi[inside]] > 0
        if self.visibility is None:
            self.visibility = np.ones(len(xi), bool)
        n = int((hit & self.visibility).sum())
        self.visibility = self.visibility & ~hit
        return n


# ------------------------------------------------------------------------------------------------
# helpers
def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * rng.random())


def _scaled(lo: float, hi: float, ident: float, k: float) -> tuple[float, float]:
    """Scale an interval's distance from the identity value by strength ``k``."""
    return ident + (lo - ident) * k, ident + (hi - ident) * k


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def _clip_u8(a: np.ndarray) -> np.ndarray:
    return np.clip(a, 0, 255, out=a).astype(np.uint8)


def copy_labels(labels: dict[str, Any]) -> dict[str, Any]:
    """Deep copy of JSON-like labels (pickle round trip: ~5x faster than copy.deepcopy here)."""
    return pickle.loads(pickle.dumps(labels, protocol=pickle.HIGHEST_PROTOCOL))


@lru_cache(maxsize=None)
def _alb_affine(border: str) -> "A.Affine":
    return A.Affine(border_mode=_BORDER[border], fill=0, interpolation=cv2.INTER_LINEAR, p=1.0)


def update_eye_visibility(view: View, frac: float, why: str) -> list[str]:
    """Set labels eyes.<side>.visible False when more than ``frac`` of that eye's points are hidden."""
    changed = []
    eyes = view.labels.get("eyes")
    if view.visibility is None or not isinstance(eyes, dict) or len(view.visibility) < 478:
        return changed
    for side, idx in (("right", EYE_RIGHT), ("left", EYE_LEFT)):
        hidden = 1.0 - float(view.visibility[list(idx)].mean())
        e = eyes.get(side)
        if isinstance(e, dict) and hidden > frac and e.get("visible", True):
            e["visible"] = False
            e["hidden_by"] = why
            changed.append(f"eyes.{side}.visible")
    return changed


# ------------------------------------------------------------------------------------------------
# geometry
def _rot_z(deg: float) -> np.ndarray:
    """Rotation about the camera's optical axis that turns image content by ``deg`` counter-clockwise
    as displayed (x right, y down): the camera-frame analogue of cv2.getRotationMatrix2D(angle=deg)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def _apply_matrix_to_view(view: View, a: np.ndarray, border: str, impl: str | None = None) -> None:
    """Warp pixels and carry landmarks + bbox corners. ``impl`` None = round-1 path (own cv2 code,
    float64 points); otherwise albumentations' ``Affine.apply`` (pixels, with the pixel-centre matrix
    T(-0.5) A T(+0.5), as its ``matrix``) and ``Affine.apply_to_keypoints`` (landmarks and the four
    bbox corners in one keypoint array, with ``A`` itself: our continuous coordinates, like its
    ``bbox_matrix``). Keypoints go through a BORDER_CONSTANT instance: with reflect borders
    albumentations would add mirrored copies of every keypoint."""
    h, w = view.hw
    m_cv = np.eye(3)
    m_cv[:2] = a
    m_cv[:2, 2] = a[:, :2] @ np.array([0.5, 0.5]) + a[:, 2] - 0.5
    if impl is None:
        view.image = cv2.warpAffine(view.image, m_cv[:2], (w, h), flags=cv2.INTER_LINEAR,
                                    borderMode=_BORDER[border], borderValue=(0, 0, 0))
        if view.landmarks is not None:
            view.landmarks = view.landmarks @ a[:, :2].T + a[:, 2]
        if view.corners is not None:
            view.corners = view.corners @ a[:, :2].T + a[:, 2]
    else:
        view.image = _alb_affine(border).apply(view.image, matrix=m_cv, output_shape=(h, w))
        n = 0 if view.landmarks is None else len(view.landmarks)
        pts = [p for p in (view.landmarks, view.corners) if p is not None]
        if pts:
            kp = np.zeros((n + (4 if view.corners is not None else 0), 5), np.float32)
            kp[:, :2] = np.concatenate(pts) if len(pts) > 1 else pts[0]
            kp[:, 4] = 1.0
            m3 = np.eye(3)
            m3[:2] = a
            s = math.sqrt(abs(float(np.linalg.det(a[:, :2]))))
            out = _alb_affine("constant").apply_to_keypoints(kp, matrix=m3, scale={"x": s, "y": s}, shape=(h, w))
            xy = np.asarray(out[:, :2], np.float64)
            if view.landmarks is not None:
                view.landmarks = xy[:n]
            if view.corners is not None:
                view.corners = xy[n:]
    if view.landmarks is not None:
        lm = view.landmarks
        inside = (lm[:, 0] >= 0) & (lm[:, 0] < w) & (lm[:, 1] >= 0) & (lm[:, 1] < h)
        view.visibility = (view.visibility if view.visibility is not None else np.ones(len(lm), bool)) & inside


def sample_hflip(rng, cfg: AugmentConfig, view: View) -> dict | None:
    zone = (view.labels.get("gaze") or {}).get("zone", view.labels.get("gaze_zone_dmd"))
    if zone == "front_right" and cfg.flip_front_right == "skip":
        return None  # no mirrored DMD zone: don't flip (docs/augment.md)
    return {}


def apply_hflip(view: View, p: dict) -> None:
    h, w = view.hw
    view.image = np.ascontiguousarray(view.image[:, ::-1])
    if view.landmarks is not None:
        lm = view.landmarks.copy()
        lm[:, 0] = w - lm[:, 0]
        if len(lm) == 478:
            mi = mirror_index()
            lm = lm[mi]
            if view.visibility is not None:
                view.visibility = view.visibility[mi]
        else:
            raise ValueError(f"hflip needs the 478-point MediaPipe refined layout (got {len(lm)} landmarks)")
        view.landmarks = lm
    if view.corners is not None:
        c = view.corners.copy()
        c[:, 0] = w - c[:, 0]
        view.corners = c[[1, 0, 3, 2]]
    l3 = view.arrays.get("landmarks_3d")
    if l3 is not None and len(l3) == 478:
        l3 = np.asarray(l3, np.float64).copy()
        l3[:, 0] = -l3[:, 0]  # exact when the principal point is the image centre (our renderer)
        view.arrays["landmarks_3d"] = l3[mirror_index()]
    zone_before = (view.labels.get("gaze") or {}).get("zone")
    view.labels = mirror_labels(view.labels)
    if zone_before == "front_right":  # only reached with flip_front_right = "not_valid"
        view.labels.setdefault("gaze", {})["zone"] = "not_valid"
        if "gaze_zone_dmd" in view.labels:
            view.labels["gaze_zone_dmd"] = "not_valid"


def sample_affine(rng, cfg: AugmentConfig, view: View) -> dict:
    h, w = view.hw
    k = cfg.strength
    ang = _u(rng, -cfg.rotate_deg * k, cfg.rotate_deg * k)
    s = _u(rng, *_scaled(cfg.scale.min, cfg.scale.max, 1.0, k))
    tx = _u(rng, -cfg.translate * k, cfg.translate * k) * w
    ty = _u(rng, -cfg.translate * k, cfg.translate * k) * h
    x0, y0, x1, y1 = view.face_box()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    a = math.radians(ang)
    lin = s * np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    t = np.array([cx, cy]) - lin @ np.array([cx, cy]) + np.array([tx, ty])
    mat = np.concatenate([lin, t[:, None]], axis=1)
    return {"angle_deg": ang, "scale": s, "tx": tx, "ty": ty, "center": [cx, cy], "matrix": mat.tolist(),
            "border": cfg.border, "impl": "A.Affine"}


def _rotate_pose_labels(labels: dict, ang: float) -> None:
    """Image rotation = camera roll about its optical axis: camera-frame pose/gaze turn with it,
    car-frame labels (head_pose_car, gaze zone) do not change (dmsfactory.geometry)."""
    rc = image_rotation_cam(ang)
    hp = labels.get("head_pose")
    if isinstance(hp, dict) and all(isinstance(hp.get(k), (int, float)) for k in ("yaw", "pitch", "roll")):
        new = dict(hp, **rotate_head_pose(hp, ang))
        if new.get("rotation_matrix") is not None:
            new["rotation_matrix"] = (rc @ np.asarray(new["rotation_matrix"], np.float64)).tolist()
        if new.get("translation_m") is not None:  # the 2-D warp turns about the face, not the principal point
            new["translation_m"] = None
        labels["head_pose"] = new
    if labels.get("head_rotation_matrix") is not None:
        labels["head_rotation_matrix"] = (rc @ np.asarray(labels["head_rotation_matrix"], np.float64)).tolist()
    gz = labels.get("gaze")
    if isinstance(gz, dict):
        for side in ("left", "right"):
            g = gz.get(side)
            if isinstance(g, dict) and isinstance(g.get("vector"), (list, tuple)) and len(g["vector"]) == 3:
                v = rc @ np.asarray(g["vector"], np.float64)
                g["vector"] = v.tolist()
                if g.get("yaw") is not None or g.get("pitch") is not None:
                    g.update(gaze_angles(v))


def apply_affine(view: View, p: dict) -> None:
    a = np.asarray(p["matrix"], np.float64)
    _apply_matrix_to_view(view, a, p.get("border", "constant"), p.get("impl"))
    if "landmarks_3d" in view.arrays:  # a 2-D similarity has no exact camera-space equivalent
        del view.arrays["landmarks_3d"]
        view.notes.append("arrays.landmarks_3d dropped (2-D affine)")
    _rotate_pose_labels(view.labels, float(p["angle_deg"]))


# ------------------------------------------------------------------------------------------------
# occluders
def _face_colour(view: View) -> list[float]:
    x0, y0, x1, y1 = view.face_box()
    cx, cy = int((x0 + x1) / 2), int(y0 + 0.6 * (y1 - y0))
    h, w = view.hw
    r = max(2, int(0.08 * (x1 - x0)))
    patch = view.image[max(0, cy - r): min(h, cy + r), max(0, cx - r): min(w, cx + r)]
    if patch.size == 0:
        return [150.0, 120.0, 100.0]
    return np.median(patch.reshape(-1, 3), axis=0).astype(float).tolist()


def _finish_occluder(view: View, mask: np.ndarray, colour: list[float], cfg_frac: float, why: str,
                     shade: np.ndarray | None = None) -> None:
    col = np.array(colour, np.float32)
    m = mask > 0
    img = view.writable_image()
    if shade is None:
        img[m] = np.clip(col, 0, 255).astype(np.uint8)
    else:
        img[m] = np.clip(col[None, :] * shade[m][:, None], 0, 255).astype(np.uint8)
    view.hide_under(mask)
    update_eye_visibility(view, cfg_frac, why)


def sample_occlusion(rng, cfg: AugmentConfig, view: View) -> dict:
    x0, y0, x1, y1 = view.face_box()
    fw, fh = x1 - x0, y1 - y0
    area = _u(rng, *_scaled(cfg.occlusion_area.min, cfg.occlusion_area.max, 0.0, cfg.strength)) * fw * fh
    aspect = math.exp(_u(rng, math.log(0.5), math.log(2.0)))
    rw, rh = math.sqrt(area * aspect), math.sqrt(area / aspect)
    cx, cy = _u(rng, x0, x1), _u(rng, y0, y1)
    grey = _u(rng, 0, 255)
    return {"x0": cx - rw / 2, "y0": cy - rh / 2, "x1": cx + rw / 2, "y1": cy + rh / 2, "colour": [grey] * 3,
            "eye_fraction": cfg.occluded_eye_fraction, "impl": "A.CoarseDropout"}


_UNUSED_RNG = np.random.default_rng(0)  # cutout only draws from it for random fills (never used here)


def apply_occlusion(view: View, p: dict) -> None:
    """A grey rectangle on the face box (coarse dropout with one hole). Pixels: albumentations'
    ``CoarseDropout`` cutout with our hole; landmarks under it are set not visible (CoarseDropout's
    own keypoint handling would delete them, which breaks the fixed 478-point layout)."""
    h, w = view.hw
    mask = np.zeros((h, w), np.uint8)
    x0, y0 = max(0, int(round(p["x0"]))), max(0, int(round(p["y0"])))
    x1, y1 = min(w, int(round(p["x1"]))), min(h, int(round(p["y1"])))
    mask[y0:y1, x0:x1] = 1
    if record_version(p) == 1 or x1 <= x0 or y1 <= y0:
        _finish_occluder(view, mask, p["colour"], p["eye_fraction"], "occlusion")
        return
    fill = tuple(float(np.clip(c, 0, 255)) for c in p["colour"])
    view.image = _alb_cutout(view.image, np.array([[x0, y0, x1, y1]]), fill, _UNUSED_RNG)
    view.hide_under(mask)
    update_eye_visibility(view, p["eye_fraction"], "occlusion")


def sample_hand_over_mouth(rng, cfg: AugmentConfig, view: View) -> dict | None:
    c = view.point((13, 14))
    if c is None:
        return None
    ml, mr = view.landmarks[61], view.landmarks[291]
    mw = float(np.linalg.norm(mr - ml))
    ang = math.degrees(math.atan2(mr[1] - ml[1], mr[0] - ml[0]))
    k = _u(rng, 1.0, 1.3)
    col = [v * _u(rng, 0.85, 1.1) for v in _face_colour(view)]
    return {"cx": float(c[0]), "cy": float(c[1] + _u(rng, -0.05, 0.15) * mw), "ax": 0.65 * k * mw,
            "ay": 0.45 * k * mw, "angle": ang + _u(rng, -20, 20), "colour": col, "fingers": int(rng.integers(3, 5)),
            "hand": "left" if rng.random() < 0.5 else "right", "eye_fraction": cfg.occluded_eye_fraction}


def apply_hand_over_mouth(view: View, p: dict) -> None:
    h, w = view.hw
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (int(round(p["cx"])), int(round(p["cy"]))), (max(1, int(p["ax"])), max(1, int(p["ay"]))),
                p["angle"], 0, 360, 1, -1)
    shade = np.ones((h, w), np.float32)
    # finger gaps: darker lines across the hand, along its short axis
    a = math.radians(p["angle"])
    ux, uy = math.cos(a), math.sin(a)
    for i in range(1, p["fingers"]):
        t = -p["ax"] + 2 * p["ax"] * i / p["fingers"]
        px, py = p["cx"] + t * ux, p["cy"] + t * uy
        dx, dy = -uy * p["ay"], ux * p["ay"]
        cv2.line(shade, (int(px - dx), int(py - dy)), (int(px + dx), int(py + dy)), 0.7, max(1, int(p["ax"] / 25)))
    _finish_occluder(view, mask, p["colour"], p["eye_fraction"], "hand_over_mouth", shade)
    m = view.labels.get("mouth")
    if isinstance(m, dict):
        m["visible"] = False
        if m.get("yawn") == "yawning_without_hand":
            m["yawn"] = "yawning_with_hand"  # DMD: a hand covering a yawning mouth
            view.notes.append("labels.mouth.yawn -> yawning_with_hand")
    how = view.labels.get("hands_on_wheel")
    if isinstance(how, str):  # the hand at the mouth has left the wheel
        other = "only_right" if p["hand"] == "left" else "only_left"
        view.labels["hands_on_wheel"] = {"both": other, "only_left": "none" if p["hand"] == "left" else how,
                                         "only_right": "none" if p["hand"] == "right" else how}.get(how, how)
    view.labels["hand_over_mouth"] = p["hand"]


def sample_hair_over_eye(rng, cfg: AugmentConfig, view: View) -> dict | None:
    side = "right" if rng.random() < 0.5 else "left"
    eye = view.point(EYE_RIGHT[:16] if side == "right" else EYE_LEFT[:16])
    brow = view.point(BROW_RIGHT if side == "right" else BROW_LEFT)
    if eye is None or brow is None:
        return None
    ew = float(np.linalg.norm(view.landmarks[33] - view.landmarks[133])) if side == "right" else float(
        np.linalg.norm(view.landmarks[263] - view.landmarks[362]))
    dark = _u(rng, 10, 70)
    strands = []
    top = brow - (eye - brow) * 1.5
    bottom = eye + (eye - brow) * _u(rng, 0.6, 1.2)
    for _ in range(int(rng.integers(5, 9))):
        off = _u(rng, -0.7, 0.7) * ew
        bend = _u(rng, -0.4, 0.4) * ew
        strands.append({"top": [float(top[0] + off), float(top[1])],
                        "mid": [float((top[0] + bottom[0]) / 2 + off + bend), float((top[1] + bottom[1]) / 2)],
                        "bottom": [float(bottom[0] + off + 2 * bend), float(bottom[1])],
                        "width": max(2.0, _u(rng, 0.15, 0.35) * ew)})
    return {"side": side, "colour": [dark * 1.2, dark, dark * 0.8], "strands": strands,
            "eye_fraction": cfg.occluded_eye_fraction}


def apply_hair_over_eye(view: View, p: dict) -> None:
    h, w = view.hw
    mask = np.zeros((h, w), np.uint8)
    for s in p["strands"]:
        pts = np.array([s["top"], s["mid"], s["bottom"]], np.float64)
        # quadratic curve through the three points, drawn as a thick polyline
        t = np.linspace(0, 1, 12)[:, None]
        curve = (1 - t) ** 2 * pts[0] + 2 * (1 - t) * t * (2 * pts[1] - (pts[0] + pts[2]) / 2) + t ** 2 * pts[2]
        cv2.polylines(mask, [np.round(curve).astype(np.int32)], False, 1, max(1, int(round(s["width"]))))
    _finish_occluder(view, mask, p["colour"], p["eye_fraction"], "hair_over_eye")


def sample_wheel_edge(rng, cfg: AugmentConfig, view: View) -> dict:
    h, w = view.hw
    x0, y0, x1, y1 = view.face_box()
    r = _u(rng, 1.5, 3.0) * w
    top = y1 - _u(rng, 0.05, 0.35) * (y1 - y0)  # rim top crosses the lower face
    cx = _u(rng, 0.3, 0.7) * w
    return {"cx": cx, "cy": top + r, "radius": r, "thickness": _u(rng, 0.06, 0.12) * h,
            "colour": [_u(rng, 15, 50)] * 3, "eye_fraction": cfg.occluded_eye_fraction}


def apply_wheel_edge(view: View, p: dict) -> None:
    h, w = view.hw
    mask = np.zeros((h, w), np.uint8)
    t = max(1, int(round(p["thickness"])))
    cv2.circle(mask, (int(round(p["cx"])), int(round(p["cy"] + t / 2))), int(round(p["radius"] + t / 2)), 1, t)
    _finish_occluder(view, mask, p["colour"], p["eye_fraction"], "wheel_edge")


# ------------------------------------------------------------------------------------------------
# photometric
@lru_cache(maxsize=64)
def _alb_brightness_contrast(brightness: float, contrast: float) -> "A.RandomBrightnessContrast":
    return A.RandomBrightnessContrast(brightness_limit=(-brightness, brightness), contrast_limit=(-contrast, contrast),
                                      brightness_by_max=True, p=1.0)


def sample_brightness_contrast(rng, cfg: AugmentConfig, view: View) -> dict:
    """albumentations' own sampler (seeded from the view): alpha = 1 + U(+-contrast), beta =
    U(+-brightness) * 255; the image becomes ``img * alpha + beta`` (a 256-entry LUT)."""
    k = cfg.strength
    t = _alb_brightness_contrast(cfg.brightness * k, cfg.contrast * k)
    t.set_random_seed(_seed(rng))
    q = t.get_params_dependent_on_data({"shape": view.image.shape}, {"image": view.image})
    return {"alpha": float(q["alpha"]), "beta": float(q["beta"]), "impl": "A.RandomBrightnessContrast"}


def apply_brightness_contrast(view: View, p: dict) -> None:
    if record_version(p) == 1:  # round 1: contrast around the image mean
        mean = float(cv2.cvtColor(view.image, cv2.COLOR_RGB2GRAY).mean())
        lut = np.arange(256, dtype=np.float64) * p["alpha"] + (1 - p["alpha"]) * mean + p["beta"]
        view.image = cv2.LUT(view.image, np.clip(np.round(lut), 0, 255).astype(np.uint8))
        return
    view.image = _alb_brightness_contrast(0.0, 0.0).apply(view.image, alpha=float(p["alpha"]), beta=float(p["beta"]))


_ALB_JITTER = None


def _alb_jitter() -> "A.ColorJitter":
    global _ALB_JITTER
    if _ALB_JITTER is None:
        _ALB_JITTER = A.ColorJitter(brightness=0, contrast=0, saturation=0, hue=0, p=1.0)
    return _ALB_JITTER


def sample_saturation(rng, cfg: AugmentConfig, view: View) -> dict:
    k = cfg.strength
    return {"factor": _u(rng, 1 - cfg.saturation * k, 1 + cfg.saturation * k), "impl": "A.ColorJitter"}


def apply_saturation(view: View, p: dict) -> None:
    """Blend with the grey image by ``factor`` (torchvision's definition; ColorJitter's saturation step
    alone, ``order=[2]``). Round-1 records run the identical own formula."""
    if record_version(p) == 1:
        g = cv2.cvtColor(cv2.cvtColor(view.image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        view.image = cv2.addWeighted(view.image, p["factor"], g, 1 - p["factor"], 0)
        return
    view.image = _alb_jitter().apply(view.image, brightness=1.0, contrast=1.0, saturation=float(p["factor"]),
                                     hue=0.0, order=[2])


def _radial(h: int, w: int, cx: float, cy: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2) / (0.25 * (w * w + h * h))
    return r2  # 0 at the centre, 1 at the corners


def _bank_draw(rng, n: int) -> dict:
    """Noise source for n values: a window of the noise bank (recorded offset), or a seed when too big."""
    if n > NOISE_BANK_SIZE // 2:
        return {"seed": _seed(rng)}
    return {"bank": NOISE_BANK_ID, "offset": int(rng.integers(0, NOISE_BANK_SIZE - n + 1))}


def _normals(p: dict, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normals for ``shape`` from a record: ``seed`` (round 1) or a noise-bank window."""
    if "seed" in p:
        return np.random.default_rng(p["seed"]).standard_normal(shape, dtype=np.float32)
    if p.get("bank") != NOISE_BANK_ID:
        raise ValueError(f"unknown noise bank {p.get('bank')!r} (this build has {NOISE_BANK_ID})")
    n, off = int(np.prod(shape)), int(p["offset"])
    if off < 0 or off + n > NOISE_BANK_SIZE:
        raise ValueError(f"noise bank offset {off} out of range for shape {shape}")
    return noise_bank()[off: off + n].reshape(shape)


def sample_nir(rng, cfg: AugmentConfig, view: View) -> dict:
    h, w = view.hw
    return {"weights": [0.6, 0.3, 0.1], "falloff": _u(rng, *_scaled(cfg.nir_falloff.min, cfg.nir_falloff.max, 0, cfg.strength)),
            "gain": _u(rng, 0.9, 1.3), "cx": w * _u(rng, 0.4, 0.6), "cy": h * _u(rng, 0.4, 0.6),
            "noise": _u(rng, *_scaled(cfg.nir_noise.min, cfg.nir_noise.max, 0, cfg.strength)),
            **_bank_draw(rng, h * w)}


def apply_nir(view: View, p: dict) -> None:
    """Near-IR look: skin is bright and flat at 850-940 nm (weighted towards red), the illuminator
    falls off towards the corners, a mono sensor adds noise; the output is grey in 3 channels."""
    h, w = view.hw
    wts = np.asarray(p["weights"], np.float32)
    g = view.image.astype(np.float32) @ wts
    g *= p["gain"] * (1.0 - p["falloff"] * _radial(h, w, p["cx"], p["cy"]))
    g += _normals(p, (h, w)) * np.float32(p["noise"] * 255.0)
    g = _clip_u8(g)
    view.image = np.repeat(g[:, :, None], 3, axis=2)
    view.labels["appearance_modality"] = "nir_simulated"


def sample_low_light(rng, cfg: AugmentConfig, view: View) -> dict:
    lo, hi = _scaled(cfg.low_light_gain.min, cfg.low_light_gain.max, 1.0, cfg.strength)
    h, w = view.hw
    return {"gain": _u(rng, lo, hi), "gamma": _u(rng, 1.0, 1.5), "noise": _u(rng, 0.01, 0.03), **_bank_draw(rng, h * w)}


def apply_low_light(view: View, p: dict) -> None:
    h, w = view.hw
    # gamma and gain as one 256-entry LUT, then the (channel-shared) sensor noise
    lut = np.clip(np.round((np.arange(256, dtype=np.float64) / 255.0) ** p["gamma"] * (p["gain"] * 255.0)), 0, 255)
    if "seed" in p:  # round-1 records: float path, unchanged
        x = (view.image.astype(np.float32) / 255.0) ** p["gamma"] * (p["gain"] * 255.0)
        x += _normals(p, (h, w, 1)) * (p["noise"] * 255.0)
        view.image = _clip_u8(x)
        return
    x = cv2.LUT(view.image, lut.astype(np.uint8))
    noise = _normals(p, (h, w)) * np.float32(p["noise"] * 255.0)
    view.image = cv2.add(x, cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U)


def sample_glare(rng, cfg: AugmentConfig, view: View) -> dict:
    h, w = view.hw
    if view.landmarks is not None and len(view.landmarks) >= 478 and rng.random() < 0.6:
        c = view.landmarks[468 if rng.random() < 0.5 else 473] + rng.normal(0, 0.02 * w, 2)  # on a lens
    else:
        x0, y0, x1, y1 = view.face_box()
        c = np.array([_u(rng, x0, x1), _u(rng, y0, y1)])
    r = _u(rng, *_scaled(cfg.glare_radius.min, cfg.glare_radius.max, 0, cfg.strength)) * w
    return {"cx": float(c[0]), "cy": float(c[1]), "radius": r, "intensity": _u(rng, 0.5, 1.0)}


def apply_glare(view: View, p: dict) -> None:
    h, w = view.hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d2 = (xx + 0.5 - p["cx"]) ** 2 + (yy + 0.5 - p["cy"]) ** 2
    blob = np.exp(-d2 / (2 * max(p["radius"], 1e-3) ** 2)) * (p["intensity"] * 255.0)
    view.image = _clip_u8(view.image.astype(np.float32) + blob[:, :, None])


def sample_backlight(rng, cfg: AugmentConfig, view: View) -> dict:
    x0, y0, x1, y1 = view.face_box()
    lo, hi = _scaled(cfg.backlight_gain.min, cfg.backlight_gain.max, 1.0, cfg.strength)
    return {"gain": _u(rng, lo, hi), "face": [x0, y0, x1, y1], "softness": _u(rng, 0.1, 0.3)}


def apply_backlight(view: View, p: dict) -> None:
    """Bright window behind the driver: background brightened, the face under-exposed."""
    h, w = view.hw
    x0, y0, x1, y1 = p["face"]
    m = np.zeros((h, w), np.float32)
    cv2.ellipse(m, (int((x0 + x1) / 2), int((y0 + y1) / 2)), (max(1, int((x1 - x0) / 2)), max(1, int((y1 - y0) / 2))),
                0, 0, 360, 1.0, -1)
    k = int(max(3, p["softness"] * max(1.0, x1 - x0))) | 1
    m = cv2.GaussianBlur(m, (k, k), 0)
    face_gain = 1.0 / math.sqrt(p["gain"])
    mult = p["gain"] * (1 - m) + face_gain * m
    view.image = _clip_u8(view.image.astype(np.float32) * mult[:, :, None])


@lru_cache(maxsize=64)
def _alb_motion_blur(lo: int, hi: int) -> "A.MotionBlur":
    return A.MotionBlur(blur_limit=(lo, hi), allow_shifted=False, p=1.0)


def sample_motion_blur(rng, cfg: AugmentConfig, view: View) -> dict:
    """albumentations' MotionBlur sampler (odd kernel size in the scaled ``motion_blur_px`` range,
    random line angle/direction, centred); the kernel itself is recorded."""
    lo, hi = _scaled(cfg.motion_blur_px.min, cfg.motion_blur_px.max, 1.0, cfg.strength)
    lo_i = max(3, int(round(lo)) | 1)
    hi_i = max(lo_i, int(round(hi)) | 1)
    t = _alb_motion_blur(lo_i, hi_i)
    t.set_random_seed(_seed(rng))
    kern = np.asarray(t.get_params()["kernel"], np.float32)
    return {"length": int(kern.shape[0]), "kernel": kern.tolist(), "impl": "A.MotionBlur"}


def apply_motion_blur(view: View, p: dict) -> None:
    if record_version(p) == 1:  # round 1: own line kernel from (length, angle)
        n = int(p["length"])
        k = np.zeros((n, n), np.float32)
        c = (n - 1) / 2
        a = math.radians(p["angle"])
        dx, dy = math.cos(a) * c, math.sin(a) * c
        cv2.line(k, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1)
        k /= k.sum()
        view.image = cv2.filter2D(view.image, -1, k, borderType=cv2.BORDER_REFLECT_101)
        return
    kern = np.asarray(p["kernel"], np.float32)
    view.image = _alb_motion_blur(3, 3).apply(view.image, kernel=kern)


# --- Gaussian noise from a fixed noise bank --------------------------------------------------------
# Drawing 196,608 normals per 256^2 view dominated round 1 (~55 % of the time). Instead one bank of
# standard normals is drawn once per process from a fixed seed; a view takes a window at a recorded
# random offset, scales it by sigma and adds it with saturation in one cv2.add. Replay is exact (same
# bank, same offset). Windows of different views are shifted copies of one sequence; with a 4M bank
# and offsets drawn uniformly, two views share a window alignment with probability ~1/4M.
NOISE_BANK_SEED = 20250101
NOISE_BANK_SIZE = 1 << 22
NOISE_BANK_ID = f"normal-f32-pcg64-{NOISE_BANK_SEED}-{NOISE_BANK_SIZE}"


@lru_cache(maxsize=1)
def noise_bank() -> np.ndarray:
    b = np.random.default_rng(NOISE_BANK_SEED).standard_normal(NOISE_BANK_SIZE, dtype=np.float32)
    b.setflags(write=False)
    return b


def sample_gaussian_noise(rng, cfg: AugmentConfig, view: View) -> dict:
    sigma = _u(rng, *_scaled(cfg.noise_sigma.min, cfg.noise_sigma.max, 0, cfg.strength))
    n = int(view.image.size)
    if n > NOISE_BANK_SIZE // 2:  # very large images: per-pixel draws from a recorded seed
        return {"sigma": sigma, "seed": _seed(rng)}
    return {"sigma": sigma, "bank": NOISE_BANK_ID, "offset": int(rng.integers(0, NOISE_BANK_SIZE - n + 1))}


def apply_gaussian_noise(view: View, p: dict) -> None:
    """Own op (albumentations' GaussNoise: sampling 2.2 ms + ``add_noise`` 4.5 ms per 256^2 view,
    float32 round trip, vs 0.3 ms here)."""
    img = view.image
    if "seed" in p:  # round-1 records and very large images
        n = np.random.default_rng(p["seed"]).standard_normal(img.shape, dtype=np.float32)
        n *= p["sigma"] * 255.0
        n += img
        view.image = _clip_u8(n)
        return
    if p.get("bank") != NOISE_BANK_ID:
        raise ValueError(f"gaussian_noise: unknown noise bank {p.get('bank')!r} (this build has {NOISE_BANK_ID})")
    off, n = int(p["offset"]), int(img.size)
    if off < 0 or off + n > NOISE_BANK_SIZE:
        raise ValueError(f"gaussian_noise: offset {off} out of the bank for a {img.shape} image")
    noise = noise_bank()[off: off + n].reshape(img.shape) * np.float32(p["sigma"] * 255.0)
    view.image = cv2.add(img, noise, dtype=cv2.CV_8U)


def sample_salt_pepper(rng, cfg: AugmentConfig, view: View) -> dict:
    return {"amount": _u(rng, *_scaled(cfg.salt_pepper.min, cfg.salt_pepper.max, 0, cfg.strength)), "seed": _seed(rng)}


def apply_salt_pepper(view: View, p: dict) -> None:
    """Own op (albumentations' SaltAndPepper: 2.3 ms per 256^2 view vs 1.0 ms here)."""
    h, w = view.hw
    r = np.random.default_rng(p["seed"]).random((h, w), dtype=np.float32)
    img = view.image.copy()
    img[r < p["amount"] / 2] = 0
    img[(r >= p["amount"] / 2) & (r < p["amount"])] = 255
    view.image = img


_ALB_JPEG = None


def sample_jpeg(rng, cfg: AugmentConfig, view: View) -> dict:
    lo, hi = _scaled(cfg.jpeg_quality.min, cfg.jpeg_quality.max, 100.0, cfg.strength)
    return {"quality": int(round(min(100, max(1, _u(rng, lo, hi))))), "impl": "A.ImageCompression"}


def apply_jpeg(view: View, p: dict) -> None:
    global _ALB_JPEG
    if record_version(p) == 1:  # round 1: encode as BGR (true colour order for the codec's YCbCr)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(view.image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(p["quality"])])
        if not ok:
            raise RuntimeError("JPEG encode failed")
        view.image = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return
    if _ALB_JPEG is None:
        _ALB_JPEG = A.ImageCompression(quality_range=(1, 100), compression_type="jpeg", p=1.0)
    view.image = _ALB_JPEG.apply(view.image, quality=int(p["quality"]), image_type=".jpg")


Sampler = Callable[[np.random.Generator, AugmentConfig, View], "dict | None"]
Applier = Callable[[View, dict], None]

# order of application within a view (geometry first, occluders at transformed landmarks, then light)
# Ops that could change who a face is (a face swap, an identity-mixing blend). The privacy gate gives an
# augmented copy its identity's verdict only when none of the copy's ops is listed here; a copy made by
# such an op is checked on its own pixels (docs/privacy.md). Every op below is geometric, photometric
# or an occluder: none changes the identity, so the set is empty. An op added here must say why.
IDENTITY_CHANGING_OPS: frozenset[str] = frozenset()

OPS: dict[str, tuple[Sampler, Applier]] = {
    "hflip": (sample_hflip, apply_hflip),
    "affine": (sample_affine, apply_affine),
    "occlusion": (sample_occlusion, apply_occlusion),
    "hand_over_mouth": (sample_hand_over_mouth, apply_hand_over_mouth),
    "hair_over_eye": (sample_hair_over_eye, apply_hair_over_eye),
    "wheel_edge": (sample_wheel_edge, apply_wheel_edge),
    "nir": (sample_nir, apply_nir),
    "low_light": (sample_low_light, apply_low_light),
    "backlight": (sample_backlight, apply_backlight),
    "brightness_contrast": (sample_brightness_contrast, apply_brightness_contrast),
    "saturation": (sample_saturation, apply_saturation),
    "glare": (sample_glare, apply_glare),
    "motion_blur": (sample_motion_blur, apply_motion_blur),
    "gaussian_noise": (sample_gaussian_noise, apply_gaussian_noise),
    "salt_pepper": (sample_salt_pepper, apply_salt_pepper),
    "jpeg": (sample_jpeg, apply_jpeg),
}
GEOMETRIC = ("hflip", "affine")
