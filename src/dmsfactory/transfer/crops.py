"""The crop rules shared by synthetic and real images (docs/transfer.md, "Crop rules").

One rule per input kind, applied to the 478 (or 468) MediaPipe-ordered landmarks of a face: on a
synthetic sample these are the renderer's exact landmarks, on a real image MediaPipe face mesh's
detection. Neither rule ever looks at a label, so the two domains are framed the same way and a
model sees real faces as it saw synthetic ones.

* **Face crop** (yawn, landmarks, head pose, gaze): the axis-aligned box of the 468 mesh points,
  made square around its centre with side ``FACE_SCALE`` (1.2) x its longer side; pixels outside the
  image are black. The mesh runs from the upper forehead to the chin and from ear to ear, so the
  margin is 10 % of the longer side on each end.
* **Eye crop** (eye state, one crop per eye): a square centred on the midpoint of the eye's two
  corners (subject's right eye 33/133, left eye 362/263), side ``EYE_SCALE`` (2.0) x the corner
  distance; axis-aligned, black outside the image. A folder of real eye crops (``eye_crops/``) is
  taken as framed by its maker: the image is made square around its centre by repeating its edge
  pixels (not black: a non-square crop would otherwise carry bars that no training crop has).

Both are converted to one grey channel (ITU-R BT.601 luma, ``cv2.COLOR_RGB2GRAY``): near-IR cabin
cameras are monochrome and colour is a nuisance here, and then resized (``INTER_AREA`` when
shrinking, ``INTER_LINEAR`` when enlarging).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FACE_SCALE = 1.2
EYE_SCALE = 2.0
EYE_CORNERS = {"right": (33, 133), "left": (362, 263)}  # subject's right eye = image left in a frontal view
FACE_SIZE = 64  # yawn, head pose, gaze
LANDMARK_SIZE = 64  # 68-point landmarks
EYE_SIZE = 48


@dataclass(frozen=True)
class Box:
    """A square crop: centre (cx, cy) and side in source pixels."""

    cx: float
    cy: float
    side: float

    @property
    def x0(self) -> float:
        return self.cx - self.side / 2

    @property
    def y0(self) -> float:
        return self.cy - self.side / 2

    def as_xyxy(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x0 + self.side, self.y0 + self.side)

    def to_crop(self, pts: np.ndarray, size: int) -> np.ndarray:
        """Source pixel coordinates -> crop coordinates in [0, 1] (0 = left/top edge of the crop)."""
        p = np.asarray(pts, np.float64)
        return np.stack([(p[:, 0] - self.x0) / self.side, (p[:, 1] - self.y0) / self.side], 1)

    def from_crop(self, uv: np.ndarray) -> np.ndarray:
        """Crop coordinates in [0, 1] -> source pixel coordinates."""
        q = np.asarray(uv, np.float64)
        return np.stack([self.x0 + q[:, 0] * self.side, self.y0 + q[:, 1] * self.side], 1)


def face_box(points: np.ndarray, scale: float = FACE_SCALE) -> Box:
    """The face crop of a face whose landmarks (MediaPipe order, >= 468 points, pixels) are ``points``."""
    p = np.asarray(points, np.float64)
    if p.ndim != 2 or p.shape[0] < 468 or p.shape[1] != 2:
        raise ValueError(f"face_box needs (>=468, 2) MediaPipe-ordered landmarks, got shape {p.shape}")
    p = p[:468]
    x0, y0 = p.min(0)
    x1, y1 = p.max(0)
    return Box(float((x0 + x1) / 2), float((y0 + y1) / 2), float(scale * max(x1 - x0, y1 - y0, 1.0)))


def eye_box(points: np.ndarray, side: str, scale: float = EYE_SCALE) -> Box:
    """The crop of the subject's ``side`` ("left"/"right") eye from MediaPipe-ordered landmarks."""
    p = np.asarray(points, np.float64)
    a, b = p[EYE_CORNERS[side][0]], p[EYE_CORNERS[side][1]]
    c = (a + b) / 2
    return Box(float(c[0]), float(c[1]), float(scale * max(np.linalg.norm(b - a), 1.0)))


def grey(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        return img.astype(np.uint8, copy=False)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {img.shape}")
    return cv2.cvtColor(np.ascontiguousarray(img.astype(np.uint8, copy=False)), cv2.COLOR_RGB2GRAY)


def crop(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Grey ``size`` x ``size`` uint8 crop of ``box`` (black outside the image)."""
    g = grey(image)
    h, w = g.shape
    s = max(1, int(round(box.side)))
    a, b = int(round(box.x0)), int(round(box.y0))
    pad = max(0, -a, -b, a + s - w, b + s - h)
    if pad:
        g = cv2.copyMakeBorder(g, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        a, b = a + pad, b + pad
    patch = g[b : b + s, a : a + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def exact_box(box: Box) -> Box:
    """The box :func:`crop` actually cuts (integer corner and side), for exact coordinate transforms."""
    s = max(1, int(round(box.side)))
    a, b = int(round(box.x0)), int(round(box.y0))
    return Box(a + s / 2, b + s / 2, float(s))


def whole_image_crop(image: np.ndarray, size: int) -> np.ndarray:
    """A pre-cropped image (``eye_crops/``): made square around its centre by repeating its edge rows
    or columns (no black bars: no training crop has them, and a tall or wide crop would carry them
    into the model), grey, resized."""
    g = grey(image)
    h, w = g.shape
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    g = cv2.copyMakeBorder(g, top, s - h - top, left, s - w - left, cv2.BORDER_REPLICATE)
    return crop(g, Box(s / 2, s / 2, float(s)), size)


def framing_agreement(a: Box, b: Box) -> dict[str, float]:
    """How alike two crops frame a face: IoU, centre offset and side ratio (in units of ``a``'s side)."""
    ax0, ay0, ax1, ay1 = a.as_xyxy()
    bx0, by0, bx1, by1 = b.as_xyxy()
    ix = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    iy = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = ix * iy
    union = a.side**2 + b.side**2 - inter
    return {
        "iou": inter / union if union > 0 else 0.0,
        "centre_offset": float(np.hypot(a.cx - b.cx, a.cy - b.cy) / a.side),
        "side_ratio": b.side / a.side,
    }
