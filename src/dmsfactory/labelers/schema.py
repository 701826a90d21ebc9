"""The label schema, declared: every field of ``labels`` with its type (docs/labels.md).

:func:`dmsfactory.labelers.params.make_labels` builds the labels; this module says what they are,
so that readers can be given types that never depend on which sample they see first (Hugging Face
``datasets`` features, the Croissant field list: ``dmsfactory.datasets.record_schema``). Stages
that add keys (augmentation, verification, clips) declare them here too, tagged ``added_by``.

A leaf is a :class:`Leaf` (``dtype`` one of string, int64, float64, bool, json; ``shape`` for
lists: ``(3,)`` a 3-vector, ``(3, 3)`` a matrix, ``-1`` any length); a ``dict`` is a nested struct.
Every field may be ``null`` (e.g. ``head_pose`` without renderer geometry). ``json`` is only for
maps whose keys are data (``identity.mixup.soft`` is keyed by identity ids, ``relabelled`` by label
paths): a struct cannot declare them.

:func:`check_labels` validates a label document against the schema (undeclared keys, wrong
types, values outside a declared value set); the tests run it on real renders, augmented views,
relabelled samples and clip frames, so a stage that adds a label field without declaring it fails.
:data:`SCHEMA_FINGERPRINTS` pins the structure to :data:`SCHEMA_VERSION` (and
:data:`CLIP_SCHEMA_FINGERPRINTS` a clip's ``labels.temporal`` to ``CLIP_SCHEMA_VERSION``): change a
field or a type and a test asks for a version bump, then record the new fingerprint
(``python -c "from dmsfactory.labelers.schema import fingerprint; print(fingerprint())"``). Value
sets are checked by :func:`check_labels` but are not part of the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterator, Union

from dmsfactory.conditions import ACCESSORIES, CAMERA_MOUNTS, LIGHTING
from dmsfactory.labelers.params import SCHEMA_VERSION
from dmsfactory.taxonomy import CLASS_STATES, FATIGUE_LEVEL, GAZE_ZONES

DTYPES = ("string", "int64", "float64", "bool", "json")


@dataclass(frozen=True)
class Leaf:
    dtype: str
    doc: str = ""
    shape: tuple[int, ...] = ()  # list dimensions; -1 = any length
    values: tuple[Any, ...] = ()  # the allowed values (categorical fields); empty = any
    added_by: str = "label"  # label (make_labels) | augment | verify | clips

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"Leaf dtype must be one of {DTYPES} (got {self.dtype!r})")


@dataclass(frozen=True)
class ListOf:
    """A list of structs (e.g. a clip's blinks, a sample's verdicts)."""

    item: "Schema"
    doc: str = ""
    added_by: str = "label"


Schema = dict[str, Union[Leaf, ListOf, "Schema"]]


def _s(doc: str, values: tuple = (), added_by: str = "label") -> Leaf:
    return Leaf("string", doc, values=tuple(values), added_by=added_by)


def _f(doc: str, shape: tuple[int, ...] = (), added_by: str = "label") -> Leaf:
    return Leaf("float64", doc, shape, added_by=added_by)


def _i(doc: str, added_by: str = "label") -> Leaf:
    return Leaf("int64", doc, added_by=added_by)


def _b(doc: str, added_by: str = "label") -> Leaf:
    return Leaf("bool", doc, added_by=added_by)


SIDES = ("left", "right")
EYE_STATES = ("open", "closing", "close", "opening", "undefined")  # DMD
YAWN = ("none", "yawning_without_hand", "yawning_with_hand")
ZONES = tuple(GAZE_ZONES) + ("not_valid",)  # not_valid: a mirrored view of a zone with no mirror image
ACTIONS = ("safe_drive", "phone_call_left", "phone_call_right", "texting_left", "texting_right")
HANDS_ON_WHEEL = ("both", "only_left", "only_right", "none")
# ARKit-named blendshapes the procedural renderer (0.4.0, face model) drives from the state (docs/renderer.md)
EXPRESSIONS = tuple(f"{n}_{s}" for n in ("eyeBlink", "eyeSquint", "eyeLookUp", "eyeLookDown", "eyeLookIn", "eyeLookOut",
                                         "mouthStretch", "mouthLowerDown", "mouthUpperUp", "mouthSmile", "cheekSquint",
                                         "browInnerUp", "browOuterUp", "noseSneer", "mouthPress") for s in ("L", "R")) \
    + ("jawOpen", "mouthFunnel", "mouthClose")  # mouthPress, mouthClose: lips sealed at rest (renderer 0.8.0, labels 1.6.0)


def _eye() -> Schema:
    return {
        "state": _s("DMD eye state; single images: open/close (openness <= 0.2 is close)", EYE_STATES),
        "openness": _f("share of the fully open lid aperture, 0 closed .. 1 open"),
        "aperture_mm": _f("eyelid aperture in mm (renderer geometry; null without it)"),
        "visible": _b("eye visible in the image: false when under half of its lid contour shows (frame edge, a turned or bowed head, hair, a hand, a phone, dark lenses) or an augmented occluder covers it"),
        "hidden_by": _s("what hides the eye (augmentation occluder)", added_by="augment"),
    }


def _gaze_eye() -> Schema:
    return {
        "vector": _f("unit gaze vector of this eye, camera frame", (3,)),
        "yaw": _f("gaze yaw of this eye in the camera frame, degrees"),
        "pitch": _f("gaze pitch of this eye in the camera frame, degrees"),
    }


def _pose(frame: str) -> Schema:
    return {k: _f(f"{k} in degrees, {frame}") for k in ("yaw", "pitch", "roll")}


TEMPORAL_FRAME: Schema = {
    "eye_state": _s("DMD eye state of the frame (both eyes)", EYE_STATES, "clips"),
    "eye_state_left": _s("DMD eye state, subject's left eye", EYE_STATES, "clips"),
    "eye_state_right": _s("DMD eye state, subject's right eye", EYE_STATES, "clips"),
    "eye_openness": _f("mean openness of the two eyes", added_by="clips"),
    "eyes_closed": _b("openness <= closed_openness (P80)", "clips"),
    "blink_id": _i("index of the closure episode this frame belongs to (null: none)", "clips"),
    "perclos_p80": _f("PERCLOS P80 over the trailing window", added_by="clips"),
    "perclos_full_window": _b("the trailing PERCLOS window is full", "clips"),
    "on_road": _b("gaze on road (front or a mirror)", "clips"),
    "off_road_run_s": _f("seconds of the current off-road run", added_by="clips"),
    "vats_accumulator_s": _f("visual attention time sharing accumulator, seconds", added_by="clips"),
    "long_distraction": _b("off road >= long_distraction_s", "clips"),
    "visual_time_sharing": _b("VATS threshold reached", "clips"),
    "unresponsive": _b("off road or eyes closed >= unresponsive_s", "clips"),
    "state": _s("causal driver state of the frame (docs/clips.md)", added_by="clips"),
    "euro_ncap_category": _s("Euro NCAP category of the state", added_by="clips"),
}

LABEL_SCHEMA: Schema = {
    "schema_version": _s("label schema version (semver)"),
    "geometry_source": _s("where geometric labels come from", ("renderer", "none")),
    "class": _s("the planned driver-state class", tuple(CLASS_STATES)),
    "fatigue_level": _s("fatigue level implied by the class", tuple(dict.fromkeys(FATIGUE_LEVEL.values()))),
    "kss": _i("Karolinska sleepiness scale 1..9"),
    "drowsy": _b("KSS >= 7"),
    "eyes": {side: _eye() for side in SIDES},
    "mouth": {
        "openness": _f("mouth opening 0 closed .. 1 maximal yawn"),
        "opening_mm": _f("inner-lip opening in mm (renderer geometry)"),
        "yawn": _s("DMD yawning", YAWN),
        "yawning": _b("yawn != none"),
        "visible": _b("mouth visible: false when no lip landmark shows or half of them are covered (a hand, a mask, an augmented occluder)"),
    },
    "gaze": {
        "left": _gaze_eye(),
        "right": _gaze_eye(),
        "in_head": {
            "yaw": _f("eye rotation relative to the head, degrees (midpoint of the eyes)"),
            "pitch": _f("eye rotation relative to the head, degrees"),
            "distance_m": _f("fixation distance in metres; null = far (parallel eyes)"),
        },
        "zone": _s("DMD gaze zone", ZONES),
        "on_road": _b("zone is front or a mirror"),
    },
    "gaze_zone_dmd": _s("DMD gaze zone (same as gaze.zone)", ZONES),
    "expression": {k: _f(f"blendshape weight {k} the renderer used, 0..1 (absent: 0)") for k in EXPRESSIONS},
    "head_pose": _pose("camera frame"),
    "head_pose_car": _pose("relative to looking down the road"),
    "head_rotation_matrix": _f("head rotation, camera frame (3x3)", (3, 3)),
    "head_translation_m": _f("head origin in the camera frame, metres", (3,)),
    "action": _s("DMD driver action", ACTIONS),
    "distracted": _b("class is distracted"),
    "phone": {
        "present": _b("a phone is in the scene"),
        "hand": _s("hand holding the phone", SIDES),
        "use": _s("phone use", ("call", "texting")),
        "location": _s("phone location", ("at_ear_left", "at_ear_right", "in_hand_left", "in_hand_right")),
    },
    "uses_phone": _b("the driver uses a phone"),
    "hands_on_wheel": _s("hands on the steering wheel", HANDS_ON_WHEEL),
    "lighting": _s("lighting mode", LIGHTING),
    "illuminance_lux": _f("illuminance at the face, lux"),
    "camera": {
        "mount": _s("camera mount", CAMERA_MOUNTS),
        "modality": _s("sensor modality", ("rgb", "nir_mono")),
        "wavelength_nm": _i("NIR wavelength in nm (null for RGB)"),
        "fov_deg": _f("field of view, degrees"),
        "distance_m": _f("camera-to-face distance, metres"),
        "image_size": _i("rendered image size, pixels"),
        "mirrored": _b("the view is a horizontal mirror image", "augment"),
    },
    "accessory": _s("accessory", ACCESSORIES),
    "identity": {
        "id": _s("synthetic identity id"),
        "mixup": {
            "a": _s("first parent identity"),
            "b": _s("second parent identity"),
            "lam": _f("mixup weight of b"),
            "soft": Leaf("json", "soft identity label {a: 1-lam, b: lam} (keys are identity ids)"),
        },
    },
    "demographics": {
        "sex": _s("sex of the synthetic identity", ("female", "male")),
        "age": _i("age in years"),
        "age_group": _s("age group", ("young", "adult", "middle_aged", "senior")),
        "skin_tone": _i("Fitzpatrick skin type 1..6"),
    },
    "clip": {
        "clip_id": _s("clip id (frames of a clip)"),
        "frame_index": _i("frame index in the clip"),
    },
    "landmark_format": {
        "order": _s("landmark order", ("mediapipe_refined_478",)),
        "right_iris_center": _i("index of the right iris centre"),
        "left_iris_center": _i("index of the left iris centre"),
        "ibug68": _s("where the 68-point iBUG index map is"),
    },
    # added to views by augmentation (docs/augment.md)
    "cabin": _s("cabin layout the view shows", ("left_hand_drive", "right_hand_drive"), "augment"),
    "hand_over_mouth": _s("hand placed over the mouth by augmentation", SIDES, "augment"),
    "appearance_modality": _s("appearance simulated by augmentation", ("nir_simulated",), "augment"),
    # added by verification when a label is relabelled from pixels (docs/verify.md)
    "relabelled": Leaf("json", "relabelled label paths: {path: {from, to, by}}", added_by="verify"),
    # clip frames (docs/clips.md)
    "temporal": TEMPORAL_FRAME,
    "activity": _s("scripted activity of the clip segment", added_by="clips"),
}


def _per_frame() -> Schema:
    return {k: Leaf(v.dtype, v.doc + " (one value per frame)", (-1,), v.values, "clips") for k, v in TEMPORAL_FRAME.items()}


# a clip document's labels.temporal (dmsfactory.labelers.temporal.temporal_labels; docs/clips.md)
CLIP_TEMPORAL_SCHEMA: Schema = {
    "per_frame": _per_frame(),
    "events": ListOf({
        "type": _s("Euro NCAP event", ("microsleep", "sleep", "long_distraction", "visual_time_sharing", "unresponsive")),
        "start": _i("first frame"),
        "end": _i("frame after the last"),
        "onset": _i("first frame at which the event is established"),
        "duration_s": _f("duration, seconds"),
        "blink_id": _i("closure episode (microsleep, sleep)"),
        "complete": _b("the episode ends inside the clip"),
    }, "temporal events"),
    "blinks": ListOf({
        "id": _i("episode id"),
        "kind": _s("closure kind", ("blink", "microsleep", "sleep")),
        "start": _i("first frame of the closing phase"),
        "end": _i("frame after the opening phase"),
        "close_start": _i("first closed frame"),
        "close_end": _i("frame after the last closed frame"),
        "closing_s": _f("closing phase, seconds"),
        "closed_s": _f("closed phase, seconds"),
        "opening_s": _f("opening phase, seconds"),
        "duration_s": _f("whole episode, seconds"),
        "onset_s": _f("start of the closing phase on the clip clock, seconds"),
        "end_s": _f("end of the reopening phase, seconds"),
        "half_amplitude_s": _f("time the lid is below half its amplitude, seconds (Anund et al. 2017)"),
        "p80_start_s": _f("start of the P80 closed interval, seconds (null when never 80 % closed)"),
        "p80_end_s": _f("end of the P80 closed interval, seconds"),
        "p80_closed_s": _f("time 80 % closed or more, seconds"),
        "frames": {k: _i(f"frames in the {k} phase") for k in ("closing", "close", "opening")},
        "lid_kind": _s("kind of lid movement that was drawn",
                       ("blink", "long_blink", "scripted_blink", "microsleep", "sleep", "rub_eyes")),
        "eyes": _s("which eyes close", ("both", "left", "right")),
        "source": _s("where the episode comes from", ("curves", "frames")),
        "complete": _b("the episode ends inside the clip"),
    }, "eye closure episodes"),
    "summary": {
        "frames": _i("frames"),
        "fps": _f("frames per second"),
        "duration_s": _f("clip duration, seconds"),
        "perclos_p80": _f("PERCLOS P80 over the clip"),
        "perclos_p80_max_window": _f("max trailing-window PERCLOS P80"),
        "blink_count": _i("closure episodes of kind blink"),
        "blink_rate_per_min": _f("complete blinks per minute"),
        "mean_blink_duration_s": _f("mean complete blink duration, seconds"),
        "mean_blink_closed_s": _f("mean complete blink closed phase, seconds"),
        "median_blink_duration_s": _f("median complete blink duration, seconds"),
        "mean_blink_closing_s": _f("mean complete blink closing phase, seconds"),
        "mean_blink_opening_s": _f("mean complete blink reopening phase, seconds"),
        "mean_blink_p80_closed_s": _f("mean time 80 % closed per complete blink, seconds"),
        "blinks_0_5_s_or_longer": _i("complete blinks lasting 0.5 s or more"),
        "long_blink_share": _f("share of complete blinks longer than 0.15 s at half amplitude"),
        "source": _s("where the summary comes from", ("curves", "frames")),
        "eyes_off_road_s": _f("seconds off road"),
        "longest_off_road_s": _f("longest off-road run, seconds"),
        "max_vats_accumulator_s": _f("max VATS accumulator, seconds"),
        "event_counts": {k: _i(f"{k} events") for k in
                         ("microsleep", "sleep", "long_distraction", "visual_time_sharing", "unresponsive")},
        "states": Leaf("string", "states reached in the clip", (-1,)),
        "params": Leaf("json", "the temporal thresholds used (TemporalParams)"),
    },
}

# a clip's labels.behaviour: the driver's traits and their values at the clip's KSS
# (dmsfactory.clips.drivers; docs/clips.md)
_DRIVER_TRAITS = ("blink_rate_per_min", "closing_s", "close_open_ratio", "closed_s", "sleepiness_sensitivity",
                  "base_openness", "eye_asymmetry", "glance_scale", "yawn_duration_s")
_AT_KSS = ("sleepiness_f", "blink_rate_per_min", "closing_s", "closed_s", "reopening_s", "long_blink_share",
           "base_openness", "microsleeps_per_min")
CLIP_BEHAVIOUR_SCHEMA: Schema = {
    "version": _s("behaviour model version (dmsfactory.clips.behaviour.BEHAVIOUR_VERSION)", added_by="clips"),
    "driver": {k: _f(f"driver trait {k}", added_by="clips") for k in _DRIVER_TRAITS},
    "at_kss": {"kss": _i("KSS of the clip", added_by="clips"),
               **{k: _f(f"{k} at the clip's KSS", added_by="clips") for k in _AT_KSS}},
}
# a clip document's labels
CLIP_LABELS_SCHEMA: Schema = {"temporal": CLIP_TEMPORAL_SCHEMA, "behaviour": CLIP_BEHAVIOUR_SCHEMA}

# structure fingerprint per schema version: a change of fields or types needs a version bump
SCHEMA_FINGERPRINTS = {
    "1.1.0": "53333906b2bc7d0186ae4d0e6085e1aa06cb21fa6db78c75d9ef8e5ac0f4dac3",
    "1.2.0": "e0b9c4099f3d9bb6235b6814434e4ee905aa1b37c6954ee78950a921f10cd5b1",
    "1.3.0": "e0b9c4099f3d9bb6235b6814434e4ee905aa1b37c6954ee78950a921f10cd5b1",  # same fields; mouth.visible now from the render
    "1.4.0": "e0b9c4099f3d9bb6235b6814434e4ee905aa1b37c6954ee78950a921f10cd5b1",  # same fields; yawning stills at any moment of a yawn
    "1.5.0": "e0b9c4099f3d9bb6235b6814434e4ee905aa1b37c6954ee78950a921f10cd5b1",  # same fields; eyes.visible from the render
    "1.6.0": "07840e8dbe46d029cf30de0a5954199636f6048feeef25325d167d76d9c703c1",  # expression mouthPress_L/R, mouthClose; opening_mm the vertical gap
}
# the same for a clip's labels (CLIP_LABELS_SCHEMA), keyed by dmsfactory.clips.generate.CLIP_SCHEMA_VERSION
# (1.0.0 fingerprinted labels.temporal alone)
CLIP_SCHEMA_FINGERPRINTS = {
    "1.0.0": "30cb91beef6971cd87decf9e9cbe3eabfb497576980787e0c63450482e8977d0",
    "2.0.0": "566e49df9b989382f5601d4d78a0fb235e285544b3c95bf855b22411abc8465e",
}


def iter_leaves(schema: Schema = LABEL_SCHEMA, prefix: str = "") -> Iterator[tuple[str, Leaf]]:
    """(dotted path, leaf) of every leaf; list items are written ``path[]``."""
    for k, v in schema.items():
        path = f"{prefix}{k}"
        if isinstance(v, Leaf):
            yield path, v
        elif isinstance(v, ListOf):
            yield from iter_leaves(v.item, path + "[].")
        else:
            yield from iter_leaves(v, path + ".")


def fingerprint(schema: Schema = LABEL_SCHEMA) -> str:
    """sha256 over (path, dtype, shape) of every leaf: what readers' types depend on."""
    rows = [(p, l.dtype, list(l.shape)) for p, l in iter_leaves(schema)]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _scalar_ok(dtype: str, v: Any) -> bool:
    if dtype == "string":
        return isinstance(v, str)
    if dtype == "bool":
        return isinstance(v, bool)
    if dtype == "int64":
        return isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63
    if dtype == "float64":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return True  # json: anything JSON-serialisable


def _check_leaf(path: str, leaf: Leaf, v: Any, shape: tuple[int, ...], out: list[str]) -> None:
    if v is None:
        return
    if shape:
        if not isinstance(v, (list, tuple)):
            out.append(f"{path}: expected a list ({leaf.dtype}, shape {leaf.shape}), got {type(v).__name__}")
            return
        if shape[0] != -1 and len(v) != shape[0]:
            out.append(f"{path}: expected {shape[0]} items, got {len(v)}")
            return
        for i, x in enumerate(v):
            _check_leaf(f"{path}[{i}]", leaf, x, shape[1:], out)
        return
    if not _scalar_ok(leaf.dtype, v):
        out.append(f"{path}: expected {leaf.dtype}, got {type(v).__name__} {v!r:.60}")
    elif leaf.values and v not in leaf.values:
        out.append(f"{path}: {v!r} is not one of the declared values {leaf.values}")


def check_document(doc: Any, schema: Schema, prefix: str = "", where: str = "the schema") -> list[str]:
    """Problems (one line each) where ``doc`` leaves ``schema``; [] when it conforms."""
    out: list[str] = []
    if not isinstance(doc, dict):
        return [f"{prefix.rstrip('.') or 'document'}: expected an object, got {type(doc).__name__}"]
    for k, v in doc.items():
        path = f"{prefix}{k}"
        decl = schema.get(k)
        if decl is None:
            out.append(f"{path}: not declared in {where}")
        elif isinstance(decl, Leaf):
            _check_leaf(path, decl, v, decl.shape, out)
        elif v is None:
            continue
        elif isinstance(decl, ListOf):
            if not isinstance(v, list):
                out.append(f"{path}: expected a list of objects, got {type(v).__name__}")
            else:
                for i, item in enumerate(v):
                    out.extend(check_document(item, decl.item, f"{path}[{i}].", where))
        else:
            out.extend(check_document(v, decl, path + ".", where))
    return out


def check_labels(labels: dict[str, Any], schema: Schema | None = None) -> list[str]:
    """Problems (one line each) where ``labels`` leaves the declared label schema; [] when it conforms."""
    return check_document(labels, LABEL_SCHEMA if schema is None else schema, "labels.",
                          "dmsfactory.labelers.schema.LABEL_SCHEMA")
