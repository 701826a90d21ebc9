"""Head-pose and gaze angle conventions (the dataset's; the procedural renderer defines them).

Frames: head frame x = subject's left, y = up, z = out of the face; camera frame OpenCV's (x image
right, y down, z along the optical axis). Camera-frame head angles are those of
``R_rel = F @ R_cam_head`` with ``F = diag(1, -1, -1)`` and ``R_rel = Ry(yaw) @ Rx(-pitch) @ Rz(-roll)``
(standard right-handed elementary rotations): yaw > 0 turns the face to the subject's left (image
right), pitch > 0 looks up, roll > 0 tilts towards the subject's left shoulder; a head facing the
camera squarely has all three 0. Gaze: camera-frame vector ``g``; with ``r = F g``,
``yaw = atan2(r_x, r_z)``, ``pitch = asin(r_y)``.

An in-plane image rotation by ``a`` degrees counter-clockwise (as displayed) is a camera roll about
the optical axis: ``R_cam_head' = Rc(a) @ R_cam_head`` with ``Rc`` the matrix below, so
``R_rel' = Rz(a) @ R_rel``; for a frontal head that is ``roll' = roll - a``.
"""

from __future__ import annotations

import math

import numpy as np

F = np.diag([1.0, -1.0, -1.0])


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float64)


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float64)


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float64)


def matrix_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R_rel for camera-frame (yaw, pitch, roll) in degrees."""
    d = math.radians
    return _ry(d(yaw)) @ _rx(-d(pitch)) @ _rz(-d(roll))


def euler_from_matrix(r: np.ndarray) -> dict[str, float]:
    """Inverse of :func:`matrix_from_euler` (|pitch| < 90)."""
    r = np.asarray(r, np.float64)
    p = math.asin(float(np.clip(-r[1, 2], -1, 1)))
    rr = math.atan2(r[1, 0], r[1, 1])
    y = math.atan2(r[0, 2], r[2, 2])
    return {"yaw": math.degrees(y), "pitch": -math.degrees(p), "roll": -math.degrees(rr)}


def image_rotation_cam(deg: float) -> np.ndarray:
    """Camera-frame rotation that turns image content ``deg`` counter-clockwise as displayed
    (the 3-D counterpart of ``cv2.getRotationMatrix2D(angle=deg)``)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def rotate_head_pose(pose: dict[str, float], deg: float) -> dict[str, float]:
    """Camera-frame head angles after an in-plane image rotation by ``deg`` (counter-clockwise)."""
    r = matrix_from_euler(pose["yaw"], pose["pitch"], pose["roll"])
    return euler_from_matrix(F @ image_rotation_cam(deg) @ F @ r)


def gaze_angles(v) -> dict[str, float]:
    """(yaw, pitch) in degrees of a camera-frame gaze vector."""
    r = F @ np.asarray(v, np.float64)
    n = float(np.linalg.norm(r)) or 1.0
    r = r / n
    return {"yaw": math.degrees(math.atan2(r[0], r[2])), "pitch": math.degrees(math.asin(float(np.clip(r[1], -1, 1))))}


def forward(yaw: float, pitch: float) -> np.ndarray:
    """Camera-frame unit gaze vector for (yaw, pitch); inverse of :func:`gaze_angles`."""
    y, p = math.radians(yaw), math.radians(pitch)
    return F @ np.array([math.sin(y) * math.cos(p), math.sin(p), math.cos(y) * math.cos(p)])
