"""`ProceduralGenerator` (the embedded default backend), plan-entry helper and conditioning maps."""

from __future__ import annotations

import copy
from typing import Any

import cv2
import numpy as np

from dmsfactory.sample import FaceSample

from . import topology as T
from .config import ProceduralConfig
from .render import RenderResult, render, validate


def example_plan_entry(**overrides: Any) -> dict:
    """A valid plan entry (docs/CONTRACT.md). Keyword overrides replace top-level keys; nested dicts
    (state, camera, head_pose_car, gaze_in_head, identity_params) are merged."""
    e = {
        "key": "example000-0000000", "index": 0, "split": "train", "identity": "id000000",
        "identity_seed": 1234, "sample_seed": 99,
        "identity_params": {"sex": "female", "age_group": "adult", "age": 34, "skin_tone": 3, "mixup": None},
        "class": "alert", "kss": 3, "lighting": "daylight", "illuminance_lux": 20000.0, "accessory": "none",
        "camera": {"mount": "steering_column", "fov_deg": 50.0, "distance_m": 0.65, "image_size": 256},
        "state": {"eye_openness_left": 1.0, "eye_openness_right": 1.0, "mouth_open": 0.0, "yawn": "none",
                  "brow_raise": 0.0, "smile": 0.0},
        "head_pose_car": {"yaw": 0.0, "pitch": 0.0, "roll": 0.0},
        "gaze_in_head": {"yaw": 0.0, "pitch": 0.0},
        "gaze_zone": "front", "action": "safe_drive", "phone": None,
    }
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(e.get(k), dict):
            e[k] = {**e[k], **v}
        else:
            e[k] = v
    return e


class ProceduralGenerator:
    name = "procedural"

    def __init__(self, config: ProceduralConfig | None = None):
        self.config = config or ProceduralConfig()

    def setup(self) -> None:
        T.triangles()  # load topology + mean shape once per worker

    def generate(self, plan_entries: list[dict]) -> list[FaceSample]:
        out = []
        for e in plan_entries:
            s = FaceSample(key=str(e.get("key", "")), index=int(e.get("index", 0) or 0), params=copy.deepcopy(e),
                           split=e.get("split"), identity=e.get("identity"))
            try:
                validate(e)
                res = render(e, self.config)
            except ValueError as err:
                s.quarantine("generate", f"invalid plan entry: {err}", check="plan_entry")
                out.append(s)
                continue
            s.image = res.image
            s.landmarks = res.landmarks
            s.visibility = res.visibility
            s.bbox = res.bbox
            s.arrays["landmarks_3d"] = res.landmarks_3d
            s.params["render"] = res.render_info
            out.append(s)
        return out


_REGION_COLOURS = {  # RGB, MediaPipe drawing-style palette
    "tess": (192, 192, 192), "right_eye": (255, 48, 48), "left_eye": (48, 255, 48), "right_brow": (255, 48, 48),
    "left_brow": (48, 255, 48), "oval": (224, 224, 224), "lips": (224, 224, 224), "right_iris": (255, 48, 48),
    "left_iris": (48, 255, 48),
}


def conditioning_map(res: RenderResult, thickness: int = 1, visible_only: bool = False) -> np.ndarray:
    """MediaPipe face-mesh style drawing of the 478 landmarks on black (ControlNet conditioning)."""
    from mediapipe.python.solutions import face_mesh_connections as C

    h, w = res.image.shape[:2]
    img = np.zeros((h, w, 3), np.uint8)
    lm = res.landmarks
    vis = res.visibility if visible_only else np.ones(len(lm), bool)

    def draw(edges, col, th):
        for a, b in edges:
            if vis[a] and vis[b]:
                cv2.line(img, tuple(np.round(lm[a] * 16).astype(int)), tuple(np.round(lm[b] * 16).astype(int)), col, th, cv2.LINE_AA, shift=4)

    draw(sorted(C.FACEMESH_TESSELATION), _REGION_COLOURS["tess"], thickness)
    draw(sorted(C.FACEMESH_FACE_OVAL), _REGION_COLOURS["oval"], thickness + 1)
    draw(sorted(C.FACEMESH_LIPS), _REGION_COLOURS["lips"], thickness + 1)
    draw(sorted(C.FACEMESH_RIGHT_EYE), _REGION_COLOURS["right_eye"], thickness + 1)
    draw(sorted(C.FACEMESH_LEFT_EYE), _REGION_COLOURS["left_eye"], thickness + 1)
    draw(sorted(C.FACEMESH_RIGHT_EYEBROW), _REGION_COLOURS["right_brow"], thickness + 1)
    draw(sorted(C.FACEMESH_LEFT_EYEBROW), _REGION_COLOURS["left_brow"], thickness + 1)
    draw(sorted(C.FACEMESH_RIGHT_IRIS), _REGION_COLOURS["right_iris"], thickness + 1)
    draw(sorted(C.FACEMESH_LEFT_IRIS), _REGION_COLOURS["left_iris"], thickness + 1)
    return img


def depth_map(res: RenderResult) -> np.ndarray:
    """uint8 HxW depth conditioning map: near = bright, background = 0 (MiDaS-like inverse depth)."""
    d = res.depth
    fin = np.isfinite(d)
    out = np.zeros(d.shape, np.uint8)
    if fin.any():
        inv = 1.0 / d[fin]
        lo, hi = np.percentile(inv, 1), inv.max()
        out[fin] = np.clip(20 + 235 * (inv - lo) / max(hi - lo, 1e-9), 0, 255).astype(np.uint8)
    return out
