"""MediaPipe face-mesh topology: contours, regions, iBUG-68 subset (constants: :mod:`dmsfactory.landmarks`).

The 468 landmark indices mean what MediaPipe's face mesh means (33/263 outer eye corners, 133/362
inner eye corners, 1 nose tip, 13/14 inner lip midpoints, 152 chin, 10 forehead top). They are
barycentric points on the face model's surface (``facemodel.py``, ``scripts/make_face_model.py``);
the model's own triangles are what is rendered. ``edges`` is MediaPipe's tessellation (drawing).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from dmsfactory.landmarks import (  # noqa: F401  the topology constants live in dmsfactory.landmarks
    R_EYE_LOWER,
    R_EYE_UPPER,
    L_EYE_LOWER,
    L_EYE_UPPER,
    R_UPPER_RING1,
    R_UPPER_RING2,
    L_UPPER_RING1,
    L_UPPER_RING2,
    R_LOWER_RING1,
    L_LOWER_RING1,
    R_BROW,
    L_BROW,
    LIPS_OUTER,
    LIPS_INNER,
    UPPER_LIP_INNER,
    LOWER_LIP_INNER,
    FACE_OVAL,
    IBUG68_FROM_MEDIAPIPE,
    EAR_RIGHT,
    EAR_LEFT,
)

from . import facemodel as FM


def mean_landmarks() -> np.ndarray:
    """(468, 3) landmarks of the face model's mean (head frame, metres)."""
    m = FM.load()
    return m.landmarks(m.mean)


@lru_cache(maxsize=1)
def edges() -> np.ndarray:
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION  # heavy: mediapipe

    return np.array(sorted({tuple(sorted(e)) for e in FACEMESH_TESSELATION}), np.int64)


def region_masks() -> dict[str, np.ndarray]:
    """Boolean (468,) masks for regions used by the conditioning map and the tests."""
    m = {}

    def mk(idx):
        a = np.zeros(468, bool)
        a[list(idx)] = True
        return a

    m["right_eye"] = mk(R_EYE_LOWER + R_EYE_UPPER)
    m["left_eye"] = mk(L_EYE_LOWER + L_EYE_UPPER)
    m["lips"] = mk(LIPS_OUTER + LIPS_INNER)
    m["right_brow"] = mk(R_BROW)
    m["left_brow"] = mk(L_BROW)
    m["oval"] = mk(FACE_OVAL)
    return m
