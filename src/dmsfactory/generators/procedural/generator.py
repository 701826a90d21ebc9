"""`ProceduralGenerator` (the embedded default backend), plan-entry helper and conditioning maps."""

from __future__ import annotations

import copy
from typing import Any

import cv2
import numpy as np

from dmsfactory.sample import FaceSample

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
        from .render import model_geometry

        model_geometry()  # load the face model once per worker

    def generate(self, plan_entries: list[dict], keep_depth: bool = False) -> list[FaceSample]:
        """One sample per entry (invalid entries quarantined). ``keep_depth`` adds the render's depth
        buffer as ``arrays["depth"]`` (HxW camera z, inf = background) for depth-conditioned callers;
        it is large, so callers drop it before a sample is written."""
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
            if keep_depth:
                s.arrays["depth"] = res.depth
            s.params["render"] = res.render_info
            out.append(s)
        return out


def conditioning_map(res: RenderResult, thickness: int = 0, visible_only: bool = False) -> np.ndarray:
    """Face-mesh drawing of the 478 landmarks on black (ControlNet conditioning): the full tessellation
    in grey under coloured contours and irises, as the diffusion backend draws it (``map_style: mesh``)."""
    from dmsfactory.generators.diffusion.condmap import draw_condition_map

    size = res.image.shape[1]
    return draw_condition_map(res.landmarks, size, size, res.visibility if visible_only else None, "mesh", thickness)


def depth_map(res: RenderResult, size: int | None = None) -> np.ndarray:
    """uint8 depth conditioning map of a render (see :func:`depth_to_map`)."""
    return depth_to_map(res.depth, size)


def depth_to_map(depth: np.ndarray, size: int | None = None) -> np.ndarray:
    """uint8 HxW depth conditioning map: near = bright, background = 0 (MiDaS-like inverse depth, the
    input convention of public depth ControlNets), optionally resized to ``size`` x ``size``."""
    d = np.asarray(depth, np.float32)
    fin = np.isfinite(d)
    out = np.zeros(d.shape, np.uint8)
    if fin.any():
        inv = 1.0 / d[fin]
        lo, hi = np.percentile(inv, 1), inv.max()
        out[fin] = np.clip(20 + 235 * (inv - lo) / max(hi - lo, 1e-9), 0, 255).astype(np.uint8)
    if size is not None and size != out.shape[1]:
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA if size < out.shape[1] else cv2.INTER_LINEAR)
    return out
