"""Head-pose and gaze angle conventions: the one definition every stage uses (domain layer).

Frames: head frame x = subject's left, y = up, z = out of the face; car frame x = driver's left,
y = up, z = forward; camera frame OpenCV's (x image right, y down, z along the optical axis).
Euler convention (car and camera frame alike): ``R = Ry(yaw) @ Rx(-pitch) @ Rz(-roll)`` (standard
right-handed elementary rotations): yaw > 0 turns the face to the subject's left (image right),
pitch > 0 looks up, roll > 0 tilts towards the subject's left shoulder. Camera-frame head angles
are those of ``R_rel = F @ R_cam_head`` with ``F = diag(1, -1, -1)``; a head facing the camera
squarely has all three 0. Gaze: camera-frame vector ``g``; with ``r = F g``,
``yaw = atan2(r_x, r_z)``, ``pitch = asin(r_y)``.

An in-plane image rotation by ``a`` degrees counter-clockwise (as displayed) is a camera roll about
the optical axis: ``R_cam_head' = Rc(a) @ R_cam_head`` with ``Rc`` = :func:`image_rotation_cam`, so
``R_rel' = Rz(a) @ R_rel``; for a frontal head that is ``roll' = roll - a``.

Moved here (issue 22) from ``generators/procedural/render.py`` (``Rx/Ry/Rz``, ``euler_to_R``,
``R_to_euler``, ``camera_euler``, ``F_FLIP``: still importable there under those names) and
``augment/pose.py`` (re-exports this module), which held the same convention twice.
"""

from __future__ import annotations

import math

import numpy as np

F = np.diag([1.0, -1.0, -1.0])


def rx(a: float) -> np.ndarray:
    """Rotation by ``a`` radians about x."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float64)


def ry(a: float) -> np.ndarray:
    """Rotation by ``a`` radians about y."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float64)


def rz(a: float) -> np.ndarray:
    """Rotation by ``a`` radians about z."""
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float64)


def matrix_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``R = Ry(yaw) @ Rx(-pitch) @ Rz(-roll)`` for angles in degrees."""
    d = math.radians
    return ry(d(yaw)) @ rx(-d(pitch)) @ rz(-d(roll))


def angles_from_matrix(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees: inverse of :func:`matrix_from_euler` (|pitch| < 90)."""
    r = np.asarray(r, np.float64)
    p = math.asin(float(np.clip(-r[1, 2], -1, 1)))
    rr = math.atan2(r[1, 0], r[1, 1])
    y = math.atan2(r[0, 2], r[2, 2])
    return math.degrees(y), -math.degrees(p), -math.degrees(rr)


def euler_from_matrix(r: np.ndarray) -> dict[str, float]:
    """:func:`angles_from_matrix` as ``{"yaw", "pitch", "roll"}``."""
    y, p, rr = angles_from_matrix(r)
    return {"yaw": y, "pitch": p, "roll": rr}


def camera_euler(r_cam_head: np.ndarray) -> tuple[float, float, float]:
    """Camera-frame head angles (yaw, pitch, roll) of a head-to-camera rotation."""
    return angles_from_matrix(F.T @ r_cam_head)


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
