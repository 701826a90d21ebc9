"""The label taxonomy every stage shares (domain layer: plain data, no imports of dmsfactory).

Anchors (DESIGN.md): Euro NCAP driver state monitoring protocols and the DMD dataset's annotation
configs. The driver-state classes, their fatigue levels and the fatigue -> appearance mapping
(``CLASS_STATES``, docs/labels.md), the DMD gaze zones with their directions in the car, the
demographic value sets of an identity, and the eye/mouth state values.

Moved here (issue 22) from ``plan.py`` (``CLASS_STATES``, ``FATIGUE_LEVEL``, ``GAZE_ZONES``,
``FIXATION_DISTANCE_M``, ``DISTRACTION_ZONES``, ``EYE_IN_HEAD_LIMIT``), ``spec.py`` (``CLASSES``,
``AGE_GROUPS``, ``AGE_RANGES``, ``SKIN_TONES``, ``SEXES``), ``labelers/params.py``
(``CLOSED_OPENNESS``, ``DRIVING_ZONES``) and ``generators/procedural/render.py`` (``YAWNS``); those
modules import them from here, so the old names keep working.
"""

from __future__ import annotations

from typing import Any

# --- driver-state classes (the spec's ``classes:``) ---
CLASSES = ("alert", "mild_fatigue", "moderate_fatigue", "severe_fatigue", "distracted", "phone")

# --- identity value sets ---
AGE_GROUPS = ("young", "adult", "middle_aged", "senior")  # 16-25, 26-45, 46-65, 66-80 years
AGE_RANGES = {"young": (16, 25), "adult": (26, 45), "middle_aged": (46, 65), "senior": (66, 80)}
SKIN_TONES = (1, 2, 3, 4, 5, 6)  # Fitzpatrick types
SEXES = ("female", "male")

# --- eyes and mouth ---
CLOSED_OPENNESS = 0.2  # openness <= 0.2 means >= 80 % closed: "close" (the PERCLOS P80 criterion)
YAWNS = ("none", "yawning_without_hand", "yawning_with_hand")  # DMD

# class -> (KSS range, eye openness range, P(yawn), head pitch bias deg, head nod extra (deg, prob))
# KSS: Karolinska sleepiness scale 1..9; KSS >= 7 counts as drowsy (Euro NCAP / DESIGN.md).
# Openness 0..1 is the share of the fully-open eyelid aperture; <= 0.2 is "closed" (P80 criterion).
CLASS_STATES: dict[str, dict[str, Any]] = {
    "alert": {"kss": (1, 5), "openness": (0.75, 1.0), "p_yawn": 0.0, "pitch_bias": 0.0, "nod": (0.0, 0.0)},
    "mild_fatigue": {"kss": (6, 7), "openness": (0.45, 0.75), "p_yawn": 0.25, "pitch_bias": -3.0, "nod": (6.0, 0.2)},
    "moderate_fatigue": {"kss": (7, 8), "openness": (0.22, 0.5), "p_yawn": 0.35, "pitch_bias": -6.0, "nod": (12.0, 0.35)},
    "severe_fatigue": {"kss": (8, 9), "openness": (0.0, 0.18), "p_yawn": 0.15, "pitch_bias": -10.0, "nod": (20.0, 0.6)},
    "distracted": {"kss": (1, 6), "openness": (0.7, 1.0), "p_yawn": 0.0, "pitch_bias": 0.0, "nod": (0.0, 0.0)},
    "phone": {"kss": (1, 6), "openness": (0.7, 1.0), "p_yawn": 0.0, "pitch_bias": 0.0, "nod": (0.0, 0.0)},
}
FATIGUE_LEVEL = {
    "alert": "alert",
    "mild_fatigue": "mild",
    "moderate_fatigue": "moderate",
    "severe_fatigue": "severe",
    "distracted": "alert",
    "phone": "alert",
}

# DMD gaze zones -> gaze direction in the car frame (yaw, pitch) in degrees, left-hand-drive car,
# driver on the left. yaw > 0 = towards the driver's left, pitch > 0 = up.
GAZE_ZONES: dict[str, tuple[float, float]] = {
    "front": (0.0, 0.0),
    "left_mirror": (55.0, -5.0),
    "left": (70.0, 0.0),
    "center_mirror": (-30.0, 12.0),
    "front_right": (-28.0, 0.0),
    "right_mirror": (-62.0, -6.0),
    "right": (-72.0, 0.0),
    "infotainment": (-30.0, -30.0),
    "steering_wheel": (0.0, -38.0),
}
# how far the eyes fixate (m, from the eyes) per zone; None = outside the car, both eyes parallel. In-cabin
# targets sit 0.5-1.6 m away (typical passenger-car package); at 0.6 m the eyes converge by about 6 deg,
# more than a DMS gaze estimator's error budget, so each eye's gaze label is computed separately.
FIXATION_DISTANCE_M: dict[str, float | None] = {
    "front": None,
    "left_mirror": 1.0,
    "left": None,
    "center_mirror": 0.65,
    "front_right": None,
    "right_mirror": 1.6,
    "right": None,
    "infotainment": 0.7,
    "steering_wheel": 0.5,  # instrument cluster / a phone held at the wheel
}
DISTRACTION_ZONES = ("left", "right", "front_right", "infotainment", "steering_wheel", "center_mirror")
EYE_IN_HEAD_LIMIT = (30.0, 22.0)  # max |yaw|, |pitch| the eyes take before the head turns
# Eyes on the road: the forward view and the mirrors (driving-related glances), as in the clip labels
DRIVING_ZONES = ("front", "left_mirror", "center_mirror", "right_mirror")
