"""Labels as a pure function of the recorded generation parameters (schema: docs/labels.md).

No label is ever derived from prompt words. Geometry that only the generator knows (head pose in
the camera frame, per-eye gaze vectors, eyelid aperture in mm) is read from ``params["render"]``
(the procedural renderer, also used for ControlNet/img2img geometry) when present; without it
(diffusion text-to-image) those fields are ``None`` and ``geometry_source`` says so.
"""

from __future__ import annotations

from typing import Any

from dmsfactory.errors import ErrorPolicy, check_policy
from dmsfactory.landmarks import IBUG68_FROM_MEDIAPIPE
from dmsfactory.sample import FaceSample
from dmsfactory.taxonomy import CLOSED_OPENNESS, DRIVING_ZONES, FATIGUE_LEVEL  # noqa: F401  (re-exported)

SCHEMA_VERSION = "1.6.0"  # 1.6.0: mouth.opening_mm is the lips' vertical gap (0 where they meet), not the 3D distance of 13/14; 1.5.0: eyes.<side>.visible from the renderer's eye-contour visibility (a turned or bowed head, hair, a hand, the frame edge); 1.4.0: a yawning still is a moment of a yawn (mouth >= 0.3, as clips label it), not only its widest point; 1.3.0: mouth.visible from the renderer's lip-landmark visibility (a hand over a yawn, a mask); 1.2.0: face-model head: aperture/mouth opening measured on its surface, expression weights
# 1.1.0: gaze.in_head.distance_m (fixation distance; per-eye gaze converges)



def ibug68_index_map() -> tuple[int, ...]:
    """The 68-point iBUG subset as indices into the 478 landmarks (:mod:`dmsfactory.landmarks`)."""
    return tuple(int(i) for i in IBUG68_FROM_MEDIAPIPE)


def eye_state(openness: float) -> str:
    """DMD eye state for a single frame: "open" or "close" (closing/opening need time: clips)."""
    return "close" if openness <= CLOSED_OPENNESS else "open"


def hands_on_wheel(action: str, yawn: str) -> str:
    busy = None
    if action.endswith("_left"):
        busy = "left"
    elif action.endswith("_right"):
        busy = "right"
    if yawn == "yawning_with_hand":
        busy = "both" if busy else "left"
    if busy == "both":
        return "none"
    if busy == "left":
        return "only_right"
    if busy == "right":
        return "only_left"
    return "both"


def camera_labels(params: dict[str, Any]) -> dict[str, Any]:
    cam = params["camera"]
    nir = params["lighting"] == "night_ir"
    return {
        "mount": cam["mount"],
        "modality": "nir_mono" if nir else "rgb",
        "wavelength_nm": 940 if nir else None,
        "fov_deg": cam["fov_deg"],
        "distance_m": cam["distance_m"],
        "image_size": cam["image_size"],
    }


# labels.mouth.visible: false when at least this share of the lip landmarks that the head does not hide
# itself is covered by something else (renderer 0.4.1 records the counts). On renders: 0.73-1.0 covered
# behind a hand over a yawn, 0.48-0.98 of all 40 points under a mask (all of the unhidden ones at yaw 30),
# 0 otherwise, profiles (yaw 60-80) included.
MOUTH_COVERED_MAX = 0.5


def mouth_visibility(render: dict[str, Any]) -> dict[str, Any]:
    """``{"visible": bool}`` from the renderer's lip-landmark counts: not visible when none shows or at
    least half of those the head does not hide itself are covered (hand, mask); nothing when the backend
    recorded no counts (an augmented occluder still sets it False later)."""
    lp = render.get("lip_points")
    if not isinstance(lp, dict):
        return {}
    seen, covered = int(lp.get("visible", 0)), int(lp.get("covered", 0))
    return {"visible": bool(seen > 0 and covered / (seen + covered) < MOUTH_COVERED_MAX)}


# labels.eyes.<side>.visible: false when fewer than this share of the eye's 16 lid-contour landmarks is
# visible in the render (renderer 0.5.0 records the counts). Measured on a 300 x 10 demo-spec set (renderer
# 0.4.2, its 1,029 validation eyes and their stored landmark visibility): 7 % showed none of their contour
# and 8 % some but under half; a reference eye-state model trained on every eye was right on 42 % and 47 %
# of those (chance) and on 81 % of the rest. Their state is not in the pixels, so no label claims it is.
EYE_SEEN_MIN = 0.5


def eye_visibility(render: dict[str, Any], side: str) -> bool | None:
    """Whether at least half of the eye's lid-contour landmarks show in the render; None when the backend
    recorded no counts (then only dark lenses and augmented occluders hide an eye)."""
    ep = (render.get("eye_points") or {}).get(side)
    if not isinstance(ep, dict) or not ep.get("of"):
        return None
    return bool(int(ep.get("visible", 0)) >= EYE_SEEN_MIN * int(ep["of"]))


def make_labels(params: dict[str, Any]) -> dict[str, Any]:
    """The label document for one sample; a pure function of ``params`` (no pixels, no prompts)."""
    st = params["state"]
    render = params.get("render") or {}
    cls = params["class"]
    acc = params["accessory"]
    nir = params["lighting"] == "night_ir"
    # sunglasses block visible light; at 940 nm most are transparent (DESIGN.md: IR transmittance).
    # The renderer records the lens transmittance it used; below 0.5 the eyes count as hidden.
    lens_t = render.get("lens_transmittance")
    if acc == "sunglasses":
        eyes_hidden = (lens_t < 0.5) if isinstance(lens_t, (int, float)) else not nir
    else:
        eyes_hidden = False
    aperture = render.get("eye_aperture_mm") or {}
    gaze_cam = render.get("gaze_camera") or {}

    def eye(side: str) -> dict[str, Any]:
        o = float(st[f"eye_openness_{side}"])
        return {
            "state": eye_state(o),
            "openness": o,
            "aperture_mm": aperture.get(side),
            "visible": not eyes_hidden and eye_visibility(render, side) is not False,
        }

    def gaze(side: str) -> dict[str, Any]:
        g = gaze_cam.get(side)
        if isinstance(g, dict):
            return {"vector": g.get("vector"), "yaw": g.get("yaw"), "pitch": g.get("pitch")}
        yp = gaze_cam.get(f"{side}_yaw_pitch_deg") or (None, None)
        return {"vector": g, "yaw": yp[0], "pitch": yp[1]}

    ident = params["identity_params"]
    mix = ident.get("mixup")
    phone = params.get("phone")
    labels: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "geometry_source": "renderer" if render else "none",
        "class": cls,
        "fatigue_level": FATIGUE_LEVEL[cls],
        "kss": params["kss"],
        "drowsy": params["kss"] >= 7,
        "eyes": {"left": eye("left"), "right": eye("right")},
        "mouth": {
            "openness": float(st["mouth_open"]),
            "opening_mm": render.get("mouth_opening_mm"),
            "yawn": st["yawn"],
            "yawning": st["yawn"] != "none",
            **mouth_visibility(render),
        },
        "gaze": {
            "left": gaze("left"),
            "right": gaze("right"),
            "in_head": params["gaze_in_head"],
            "zone": params["gaze_zone"],
            "on_road": params["gaze_zone"] in DRIVING_ZONES,
        },
        "gaze_zone_dmd": params["gaze_zone"],
        # ARKit-named blendshape weights the renderer used (face-model renderer; None without geometry)
        "expression": render.get("expression"),
        "head_pose": {k: render["head_pose_camera"][k] for k in ("yaw", "pitch", "roll")}
        if render.get("head_pose_camera")
        else None,
        "head_pose_car": params["head_pose_car"],
        "head_rotation_matrix": (render.get("head_pose_camera") or {}).get("rotation_matrix"),
        "head_translation_m": (render.get("head_pose_camera") or {}).get("translation_m"),
        "action": params["action"],
        "distracted": cls == "distracted",
        "phone": {
            "present": phone is not None,
            "hand": phone["hand"] if phone else None,
            "use": phone["use"] if phone else None,
            "location": (("at_ear_" + phone["hand"]) if phone["use"] == "call" else ("in_hand_" + phone["hand"]))
            if phone
            else None,
        },
        "uses_phone": phone is not None,
        "hands_on_wheel": hands_on_wheel(params["action"], st["yawn"]),
        "lighting": params["lighting"],
        "illuminance_lux": params["illuminance_lux"],
        "camera": camera_labels(params),
        "accessory": acc,
        "identity": {
            "id": params["identity"],
            "mixup": None
            if not mix
            else {"a": mix["a"], "b": mix["b"], "lam": mix["lam"], "soft": {mix["a"]: 1 - mix["lam"], mix["b"]: mix["lam"]}},
        },
        "demographics": {k: ident[k] for k in ("sex", "age", "age_group", "skin_tone")},
        "clip": {"clip_id": params.get("clip_id"), "frame_index": params.get("frame_index")},
        "landmark_format": {
            "order": "mediapipe_refined_478",
            "right_iris_center": 468,
            "left_iris_center": 473,
            "ibug68": "manifest.json: landmark_format.ibug68_from_mediapipe",
        },
    }
    return labels


class LabelStage:
    """Stage: fills ``sample.labels`` from ``sample.params`` (exact, versioned)."""

    name = "label"

    def __init__(self, on_error: ErrorPolicy = "quarantine"):
        self.on_error = check_policy(on_error)  # dmsfactory.errors: quarantine | raise

    def setup(self) -> None:
        pass

    def process(self, batch: list[FaceSample]) -> list[FaceSample]:
        for s in batch:
            try:
                s.labels = make_labels(s.params)
            except (KeyError, TypeError, ValueError) as e:
                if self.on_error == "raise":
                    raise
                s.quarantine("label", f"cannot derive labels from params: {e!r}")
        return batch
