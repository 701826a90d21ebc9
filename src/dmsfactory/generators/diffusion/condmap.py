"""Face-mesh-style ControlNet conditioning maps drawn from renderer landmarks; square resizing to and from the generation resolution.

``mediapipe_face`` style: black background, coloured contours (face oval, brows, eyes, lips) and
iris rings plus iris centre dots, the drawing convention of public MediaPipe-face ControlNets
(colours per region, subject's left/right kept distinct so the network can tell them apart).
``mesh`` style: the full 468-vertex tesselation in dark grey under the same contours.
Edges whose endpoints are both hidden (``visibility`` False) are not drawn.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

# RGB colours per region (subject's right = the eye with corners 33/133)
COLOURS = {
    "oval": (10, 200, 10),
    "lips": (10, 180, 10),
    "right_eye": (10, 200, 180),
    "right_brow": (10, 220, 180),
    "right_iris": (10, 200, 250),
    "left_eye": (180, 200, 10),
    "left_brow": (180, 220, 10),
    "left_iris": (250, 200, 10),
    "mesh": (70, 70, 70),
}


@lru_cache(maxsize=1)
def _connections() -> dict[str, np.ndarray]:
    from mediapipe.python.solutions import face_mesh_connections as fc  # heavy: mediapipe

    def arr(s):
        return np.array(sorted(s), dtype=np.int64).reshape(-1, 2)

    return {
        "mesh": arr(fc.FACEMESH_TESSELATION),
        "oval": arr(fc.FACEMESH_FACE_OVAL),
        "lips": arr(fc.FACEMESH_LIPS),
        "right_eye": arr(fc.FACEMESH_RIGHT_EYE),
        "right_brow": arr(fc.FACEMESH_RIGHT_EYEBROW),
        "right_iris": arr(fc.FACEMESH_RIGHT_IRIS),
        "left_eye": arr(fc.FACEMESH_LEFT_EYE),
        "left_brow": arr(fc.FACEMESH_LEFT_EYEBROW),
        "left_iris": arr(fc.FACEMESH_LEFT_IRIS),
    }


def draw_condition_map(
    landmarks: np.ndarray,
    size: int,
    src_size: int | None = None,
    visibility: np.ndarray | None = None,
    style: str = "mediapipe_face",
    line_width: int = 0,
) -> np.ndarray:
    """Draw ``landmarks`` ((478, 2) pixels in an image of ``src_size``) onto a ``size``² RGB map."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] < 468:
        raise ValueError(f"landmarks must be (478, 2) or (468, 2) pixel coordinates, got shape {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise ValueError("landmarks contain non-finite values")
    if style not in ("mediapipe_face", "mesh"):
        raise ValueError(f"condition map style must be 'mediapipe_face' or 'mesh', got {style!r}")
    scale = size / float(src_size or size)
    shift = 4  # sub-pixel precision for cv2 drawing
    pts = np.round(lm * scale * (1 << shift)).astype(np.int64)
    vis = np.ones(len(lm), bool) if visibility is None else np.asarray(visibility, bool)
    lw = line_width or (size // 256 + 1)
    img = np.zeros((size, size, 3), np.uint8)
    regions = ["oval", "lips", "right_eye", "right_brow", "left_eye", "left_brow"]
    if lm.shape[0] >= 478:
        regions += ["right_iris", "left_iris"]
    if style == "mesh":
        regions = ["mesh"] + regions
    conns = _connections()
    for region in regions:
        colour = COLOURS[region]
        for i, j in conns[region]:
            if i >= len(lm) or j >= len(lm) or not (vis[i] or vis[j]):
                continue
            cv2.line(img, tuple(map(int, pts[i])), tuple(map(int, pts[j])), colour, lw, cv2.LINE_AA, shift)
    if lm.shape[0] >= 478:
        for c, region in ((468, "right_iris"), (473, "left_iris")):
            if vis[c]:
                cv2.circle(img, tuple(map(int, pts[c])), (lw + 1) << shift, COLOURS[region], -1, cv2.LINE_AA, shift)
    return img


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """``img`` (square) to ``size`` x ``size``: area when shrinking, cubic when enlarging; the same array when equal.

    Used between the renderer's image size and the generation resolution (img2img inputs, outputs).
    """
    if img.shape[0] == size and img.shape[1] == size:
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(img, (size, size), interpolation=interp)
