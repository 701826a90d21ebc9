"""MediaPipe face-mesh topology: contours, regions, iBUG-68 subset.

The 468 landmark indices mean what MediaPipe's face mesh means (33/263 outer eye corners, 133/362
inner eye corners, 1 nose tip, 13/14 inner lip midpoints, 152 chin, 10 forehead top). They are
barycentric points on the face model's surface (``facemodel.py``, ``scripts/make_face_model.py``);
the model's own triangles are what is rendered. ``edges`` is MediaPipe's tessellation (drawing).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


# Eye contours (MediaPipe): lower lid runs corner -> corner, upper lid likewise.
# Subject's right eye (image left in a frontal view): outer corner 33, inner 133.
R_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
R_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
L_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
L_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
# rings of lid skin around each contour (upper part), used for graded lid motion
R_UPPER_RING1 = (130, 247, 30, 29, 27, 28, 56, 190, 243)
R_UPPER_RING2 = (226, 113, 225, 224, 223, 222, 221, 189, 244)
L_UPPER_RING1 = (359, 467, 260, 259, 257, 258, 286, 414, 463)
L_UPPER_RING2 = (446, 342, 445, 444, 443, 442, 441, 413, 464)
R_LOWER_RING1 = (130, 25, 110, 24, 23, 22, 26, 112, 243)
L_LOWER_RING1 = (359, 255, 339, 254, 253, 252, 256, 341, 463)
R_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
L_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
LIPS_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
LIPS_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
UPPER_LIP_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_LIP_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)

# iBUG 300-W 68-point subset as MediaPipe mesh indices (subject's right = iBUG's first half of the
# jaw, image left in a frontal view). Jaw 0-16, brows 17-26, nose 27-35, eyes 36-47 (EAR order),
# outer lips 48-59, inner lips 60-67. Approximate correspondence: the mesh has no vertex exactly
# at every iBUG point (jaw points especially sit on the mesh's face oval).
IBUG68_FROM_MEDIAPIPE: tuple[int, ...] = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # jaw
    70, 63, 105, 66, 107,  # right brow (subject's right, image left)
    336, 296, 334, 293, 300,  # left brow
    168, 197, 5, 4,  # nose bridge
    75, 97, 2, 326, 305,  # nostrils
    33, 160, 158, 133, 153, 144,  # right eye
    362, 385, 387, 263, 373, 380,  # left eye
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips
)
assert len(IBUG68_FROM_MEDIAPIPE) == 68

EAR_RIGHT = (33, 160, 158, 133, 153, 144)  # subject's right eye
EAR_LEFT = (362, 385, 387, 263, 373, 380)


def mean_landmarks() -> np.ndarray:
    """(468, 3) landmarks of the face model's mean (head frame, metres)."""
    from . import facemodel as FM

    m = FM.load()
    return m.landmarks(m.mean)


@lru_cache(maxsize=1)
def edges() -> np.ndarray:
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

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
