"""MediaPipe face mesh on real frames: detection, the measurements the labels are made of, and the
index sets (face oval ring, skin points, triangles) the warp and the relighting use.

Every measurement is the one the label verifier makes (``dmsfactory.labelers.verify``): eye aspect
ratio per eye, mouth aspect ratio, iris offset in half eye widths, head pose by ``cv2.solvePnP`` of
six mesh points against a generic face model with the frame's assumed field of view. The same
function measures the original frame and the anonymised one, so "the label is kept" means "the
same measurement reads the same value on both".
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dmsfactory.geometry import F, euler_from_matrix
from dmsfactory.labelers.verify import EAR_LEFT, EAR_RIGHT, ear, head_pose_pnp, iris_offset, mar

N_MESH = 468


def _edges_to_ring(edges) -> list[int]:
    nxt: dict[int, list[int]] = {}
    for a, b in edges:
        nxt.setdefault(a, []).append(b)
        nxt.setdefault(b, []).append(a)
    start = min(nxt)
    ring, prev, cur = [start], None, start
    while True:
        cand = [c for c in nxt[cur] if c != prev]
        if not cand:
            break
        prev, cur = cur, cand[0]
        if cur == start:
            break
        ring.append(cur)
    return ring


@functools.lru_cache(maxsize=1)
def index_sets() -> dict[str, Any]:
    """Index sets from MediaPipe's published connection lists (no renderer internals)."""
    from mediapipe.python.solutions import face_mesh_connections as C  # heavy: mediapipe

    def pts(edges) -> list[int]:
        return sorted({i for e in edges for i in e})

    oval = _edges_to_ring(C.FACEMESH_FACE_OVAL)
    eyes = pts(C.FACEMESH_LEFT_EYE) + pts(C.FACEMESH_RIGHT_EYE)
    brows = pts(C.FACEMESH_LEFT_EYEBROW) + pts(C.FACEMESH_RIGHT_EYEBROW)
    lips = pts(C.FACEMESH_LIPS)
    nose = pts(C.FACEMESH_NOSE)
    feature = set(eyes) | set(brows) | set(lips)
    # triangles: 3-cliques of the tessellation graph
    adj: dict[int, set[int]] = {}
    for a, b in C.FACEMESH_TESSELATION:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    tris = set()
    for a, nb in adj.items():
        for b in nb:
            if b <= a:
                continue
            for c in nb & adj[b]:
                if c > b:
                    tris.add((a, b, c))
    skin = [i for i in range(N_MESH) if i not in feature]
    return {
        "oval": np.array(oval, np.int64),
        "eyes": np.array(eyes, np.int64),
        "brows": np.array(brows, np.int64),
        "lips": np.array(lips, np.int64),
        "nose": np.array(nose, np.int64),
        "skin": np.array(skin, np.int64),
        "triangles": np.array(sorted(tris), np.int64),
        # control points of the warp: outline + every feature contour + nose + iris centres
        "features": np.array(sorted(feature | {1, 2, 4, 5, 6, 98, 168, 195, 197, 327, 10, 152, 468, 473}), np.int64),
    }


@dataclass
class FaceMeasure:
    """One face as MediaPipe sees it, with the label measurements."""

    landmarks: np.ndarray  # (478, 2) pixels
    z: np.ndarray  # (478,) MediaPipe's relative depth, in pixels (x-scaled)
    ear: dict[str, float]
    mar: float
    iris: dict[str, tuple[float, float]]
    head_pose: dict[str, float] | None  # rigid-mesh PnP against the canonical model (module docstring)
    bbox: tuple[float, float, float, float]
    head_pose_6pt: dict[str, float] | None = None  # the label verifier's 6-point PnP, for reference
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def face_size(self) -> float:
        """Larger of the cheek-to-cheek (234-454) and forehead-to-chin (10-152) distances, pixels."""
        p = self.landmarks
        return float(max(np.linalg.norm(p[234] - p[454]), np.linalg.norm(p[10] - p[152]), 1.0))

    def to_json(self) -> dict[str, Any]:
        return {
            "ear": {k: round(v, 4) for k, v in self.ear.items()},
            "mar": round(self.mar, 4),
            "iris_offset": {k: [round(v[0], 4), round(v[1], 4)] for k, v in self.iris.items()},
            "head_pose": None if self.head_pose is None else {k: round(v, 3) for k, v in self.head_pose.items()},
            "head_pose_6pt": None if self.head_pose_6pt is None else {k: round(v, 3) for k, v in self.head_pose_6pt.items()},
            "bbox": [round(float(v), 2) for v in self.bbox],
        }


def rigid_indices(model: np.ndarray) -> np.ndarray:
    """Mesh points that move with the skull only: above the nose tip (head-frame y), off the eyes,
    brows and irises (lids and brows move with expressions, the jaw with the mouth)."""
    ix = index_sets()
    moving = set(ix["eyes"].tolist()) | set(ix["brows"].tolist()) | set(ix["lips"].tolist())
    y_tip = model[1, 1]
    return np.array([i for i in range(N_MESH) if i not in moving and model[i, 1] > y_tip - 0.005], np.int64)


def head_pose_mesh(p: np.ndarray, K: np.ndarray, model: np.ndarray) -> tuple[dict[str, float] | None, np.ndarray | None]:
    """Camera-frame head pose (``dmsfactory.augment.pose`` convention) by ``cv2.solvePnP`` of the rigid
    mesh points (:func:`rigid_indices`) against ``model`` (478x3, head frame: x = subject's left,
    y = up, z = out of the face, metres); EPnP start, Levenberg-Marquardt refinement. Returns
    (angles, R_cam_head) or (None, None)."""
    import cv2

    idx = rigid_indices(model)
    obj = np.ascontiguousarray(model[idx], np.float64)
    img = np.ascontiguousarray(np.asarray(p, np.float64)[idx])
    ok, rv, tv = cv2.solvePnP(obj, img, K, None, flags=cv2.SOLVEPNP_EPNP)
    if not ok:
        return None, None
    ok, rv, tv = cv2.solvePnP(obj, img, K, None, rv, tv, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or tv[2, 0] <= 0:
        return None, None
    R, _ = cv2.Rodrigues(rv)
    return euler_from_matrix(F @ R), R


def measure_landmarks(p: np.ndarray, w: int, h: int, fov_deg: float | None, z: np.ndarray | None = None,
                      model: np.ndarray | None = None) -> FaceMeasure:
    """All label measurements from (478, 2) landmarks in a ``w`` x ``h`` image. ``model``: the
    canonical 3-D landmarks for :func:`head_pose_mesh` (without it ``head_pose`` is the 6-point one)."""
    p = np.asarray(p, np.float64)
    m = p[:N_MESH]
    bbox = (float(m[:, 0].min()), float(m[:, 1].min()), float(m[:, 0].max()), float(m[:, 1].max()))
    pose6 = head_pose_pnp(p, w, h, fov_deg)
    pose = pose6
    if model is not None:
        pose, _ = head_pose_mesh(p, intrinsics(w, h, fov_deg or 60.0), model)
    return FaceMeasure(
        landmarks=p,
        z=np.zeros(len(p)) if z is None else np.asarray(z, np.float64),
        ear={"right": ear(p, EAR_RIGHT), "left": ear(p, EAR_LEFT)},
        mar=mar(p),
        iris={s: iris_offset(p, s) for s in ("left", "right")},
        head_pose=pose,
        bbox=bbox,
        head_pose_6pt=pose6,
    )


class FaceMesh:
    """MediaPipe face mesh (refined, 478 points). ``video=True`` tracks between frames (the detector
    runs only when a face is lost), which is what makes video fast; images use static mode."""

    def __init__(self, video: bool = False, max_faces: int = 1, min_confidence: float = 0.5):
        self.video = bool(video)
        self.max_faces = int(max_faces)
        self.min_confidence = float(min_confidence)
        self._mesh = None

    def setup(self) -> None:
        if self._mesh is None:
            import mediapipe as mp  # heavy: mediapipe

            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=not self.video, refine_landmarks=True, max_num_faces=self.max_faces,
                min_detection_confidence=self.min_confidence, min_tracking_confidence=self.min_confidence)

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def __enter__(self) -> "FaceMesh":
        self.setup()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def landmarks(self, image: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(478x2 pixels, 478 z)] per face found, largest first."""
        self.setup()
        h, w = image.shape[:2]
        res = self._mesh.process(np.ascontiguousarray(image))
        out = []
        for f in res.multi_face_landmarks or []:
            a = np.array([[q.x * w, q.y * h, q.z * w] for q in f.landmark], np.float64)
            out.append((a[:, :2], a[:, 2]))
        out.sort(key=lambda t: -float(np.ptp(t[0][:N_MESH, 0]) * np.ptp(t[0][:N_MESH, 1])))
        return out

    def measure(self, image: np.ndarray, fov_deg: float | None, model: np.ndarray | None = None) -> list[FaceMeasure]:
        h, w = image.shape[:2]
        return [measure_landmarks(p, w, h, fov_deg, z, model) for p, z in self.landmarks(image)]


def vertex_normals(v3: np.ndarray, tris: np.ndarray | None = None) -> np.ndarray:
    """Area-weighted unit normals of the 468 mesh vertices (``v3``: camera frame, OpenCV axes),
    oriented towards the camera."""
    t = index_sets()["triangles"] if tris is None else tris
    v = np.asarray(v3[:N_MESH], np.float64)
    fn = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, t[:, k], fn)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    # towards the camera: the normal and the view ray (camera at the origin) point opposite ways
    flip = np.einsum("ij,ij->i", n, v) > 0
    if flip.mean() > 0.5:
        n = -n
    return n


def ray_rotation(u: float, v: float, K: np.ndarray) -> np.ndarray:
    """Smallest rotation taking the optical axis (0, 0, 1) to the ray through pixel (u, v)."""
    d = np.linalg.solve(K, np.array([u, v, 1.0]))
    d /= np.linalg.norm(d)
    z = np.array([0.0, 0.0, 1.0])
    ax = np.cross(z, d)
    s = float(np.linalg.norm(ax))
    c = float(d @ z)
    if s < 1e-9:
        return np.eye(3)
    ax /= s
    a = math.atan2(s, c)
    Kx = np.array([[0, -ax[2], ax[1]], [ax[2], 0, -ax[0]], [-ax[1], ax[0], 0]])
    return np.eye(3) + math.sin(a) * Kx + (1 - math.cos(a)) * Kx @ Kx


def intrinsics(w: int, h: int, fov_deg: float) -> np.ndarray:
    """K of a frame whose horizontal field of view is ``fov_deg`` (principal point at the centre);
    the same convention as ``head_pose_pnp``."""
    f = (w / 2) / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
