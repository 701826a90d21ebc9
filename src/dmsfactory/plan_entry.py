"""`PlanEntry`: the typed contract between the planner and the generators (record layer).

A plan entry stays a JSON-serialisable dict on the wire (``dmsfactory.plan.make_plan`` makes it,
Prefect tasks pass it, ``FaceSample.params`` records it); this pydantic model is its one
definition and its one check. :func:`check_plan_entry` validates a dict once, before rendering, and
raises :class:`PlanEntryError` naming the dotted field (``camera.mount``, ``state.mouth_open``).
Renderers keep reading the dict they were given, so validation never changes a pixel.

Extra keys are allowed (``class``, ``kss``, ``gaze_zone``, ``action``, ``illuminance_lux``, and
whatever a generator or the clip planner adds); they are recorded, not checked here. The field
ranges are the renderer's limits; the planner's own ranges are narrower (docs/CONTRACT.md).

Replaces the hand-written checks that were ``generators/procedural/render.py: validate`` (issue 22).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from dmsfactory.conditions import ACCESSORIES, CAMERA_MOUNTS, LIGHTING
from dmsfactory.errors import DmsFactoryError
from dmsfactory.taxonomy import SEXES, YAWNS


class PlanEntryError(DmsFactoryError, ValueError):
    """An invalid plan entry; ``field`` names the offending field (dotted path)."""

    def __init__(self, field: str, msg: str):
        super().__init__(f"{field}: {msg}")
        self.field = field


def _num(lo: float, hi: float) -> Any:
    return Annotated[float, Field(ge=lo, le=hi, allow_inf_nan=False)]


Unit = _num(0.0, 1.0)


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class Camera(_Part):
    mount: Literal[CAMERA_MOUNTS]
    fov_deg: _num(10, 120)
    distance_m: _num(0.2, 3.0)
    image_size: _num(32, 4096)

    @field_validator("image_size")
    @classmethod
    def _integral(cls, v: float) -> float:
        if v != int(v):
            raise ValueError("must be an integer")
        return v


class State(_Part):
    eye_openness_left: Unit
    eye_openness_right: Unit
    mouth_open: Unit
    brow_raise: Unit
    smile: Unit
    yawn: Literal[YAWNS] = "none"


class HeadPose(_Part):
    yaw: _num(-90, 90)
    pitch: _num(-60, 60)
    roll: _num(-60, 60)


class GazeInHead(_Part):
    yaw: _num(-45, 45)
    pitch: _num(-45, 45)
    distance_m: Optional[_num(0.2, 100.0)] = None  # fixation distance; null/absent = far (parallel eyes)


class Mixup(_Part):
    lam: Unit
    a_seed: StrictInt
    b_seed: StrictInt


class IdentityParams(_Part):
    sex: Literal[SEXES]
    age: _num(10, 100)
    skin_tone: Annotated[int, Field(ge=1, le=6)]  # Fitzpatrick
    mixup: Optional[Mixup] = None


class Phone(_Part):
    hand: Literal["left", "right"]
    use: Literal["call", "texting"]


class PlanEntry(_Part):
    """One render's parameters (docs/CONTRACT.md lists every field and its meaning)."""

    identity_seed: StrictInt
    sample_seed: StrictInt
    lighting: Literal[LIGHTING]
    accessory: Literal[ACCESSORIES] = "none"
    camera: Camera
    state: State
    head_pose_car: HeadPose
    gaze_in_head: GazeInHead
    identity_params: IdentityParams
    phone: Optional[Phone] = None


def check_plan_entry(entry: Any) -> PlanEntry:
    """Validate a plan entry dict; raise :class:`PlanEntryError` (a ValueError) naming the first bad field."""
    if not isinstance(entry, dict):
        raise PlanEntryError("entry", "plan entry must be a dict")
    try:
        return PlanEntry.model_validate(entry)
    except ValidationError as e:
        err = e.errors()[0]
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "constrained-"))]
        field = ".".join(loc) or "entry"
        msg = "missing" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        if err["type"] != "missing" and "input" in err and not isinstance(err["input"], dict):
            msg = f"{msg} (got {err['input']!r})"
        raise PlanEntryError(field, msg) from None
