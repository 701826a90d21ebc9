"""Configuration of driver-state clips (spec section ``clips:``) and of the coverage requirement.

Imports only pydantic, so ``dmsfactory.spec`` can import it without pulling in the renderer.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GazeZoneName = Literal[
    "left_mirror", "left", "front", "center_mirror", "front_right", "right_mirror", "right",
    "infotainment", "steering_wheel",
]
SegmentKind = Literal[
    "drive",  # attentive driving: blinks, small head sway, eyes on the road
    "blink",  # one blink at the segment start (closing_s/closed_s/reopening_s, else the driver's values)
    "glance",  # look at `zone` for duration_s (transit included), then back to the road
    "microsleep",  # eye closure of duration_s (< 3 s), slow reopening, small head nod
    "sleep",  # sleep onset: eyes closed for duration_s, head sinks
    "yawn",  # one yawn (with_hand: hand over the mouth)
    "nod",  # head nod (pitch drop and recovery)
    "phone",  # pick up the phone and use it (use: call | texting) for duration_s
    "eat",  # chewing
    "talk",  # talking (mouth movement, short glances to the passenger)
    "rub_eyes",  # rubbing one eye with a hand
    "laugh",
    "tunnel_entry",  # lighting changes to tunnel (lux ramps down) at the start of the segment
    "tunnel_exit",  # lighting changes back to daylight
]
BUILTIN_SCENARIOS = (
    "alert",
    "drowsy",
    "microsleep",
    "sleep",
    "long_distraction",
    "visual_time_sharing",
    "phone",
    "yawning",
    "non_alert_distractors",
    "tunnel_entry",
    "unresponsive",
)
PosWeight = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Segment(_Strict):
    """One step of a scenario script; blinks run underneath every segment but closures."""

    kind: SegmentKind
    duration_s: float = Field(gt=0, le=600)
    zone: GazeZoneName | None = Field(None, description="glance target (kind: glance)")
    movement: Literal["owl", "lizard", "body_lean"] = Field(
        "owl", description="glance: owl = mostly head, lizard = mostly eyes, body_lean = torso lean + head"
    )
    with_hand: bool = Field(False, description="yawn: hand over the mouth")
    hand: Literal["left", "right"] = "right"
    use: Literal["call", "texting"] = "texting"
    closing_s: float | None = Field(None, gt=0, le=2, description="blink: lid closing time (onset to closed)")
    closed_s: float | None = Field(None, ge=0, lt=1, description="blink: time the lid stays closed")
    reopening_s: float | None = Field(None, gt=0, le=3, description="blink: lid reopening time")

    @model_validator(mode="after")
    def _fields(self) -> "Segment":
        phases = [p for p in (self.closing_s, self.closed_s, self.reopening_s) if p is not None]
        if phases and self.kind != "blink":
            raise ValueError(f"closing_s/closed_s/reopening_s only apply to kind 'blink' (this segment is {self.kind!r})")
        if self.kind == "blink" and sum(phases) > self.duration_s + 1e-9:
            raise ValueError(f"a blink's phases ({sum(phases):g} s) must fit in its segment's duration_s ({self.duration_s:g})")
        if self.kind == "glance":
            if self.zone is None:
                raise ValueError("a 'glance' segment needs 'zone' (a DMD gaze zone other than front)")
            if self.zone == "front":
                raise ValueError("a 'glance' to 'front' is plain driving: use kind 'drive'")
        elif self.zone is not None:
            raise ValueError(f"'zone' only applies to kind 'glance' (this segment is {self.kind!r})")
        if self.kind == "microsleep" and self.duration_s >= 3.0:
            raise ValueError(f"a microsleep is a closure < 3 s (got duration_s {self.duration_s}); use kind 'sleep'")
        if self.kind == "sleep" and self.duration_s <= 3.0:
            raise ValueError(f"sleep is a closure > 3 s (got duration_s {self.duration_s}); use kind 'microsleep'")
        return self


class Script(_Strict):
    """A user-written scenario: the driver's KSS and the segments in order (the rest of the clip is driving)."""

    kss: int = Field(3, ge=1, le=9, description="Karolinska sleepiness scale; drives blink dynamics")
    segments: list[Segment] = Field(min_length=1)


class TemporalCfg(_Strict):
    """Thresholds of the temporal labels (dmsfactory.labelers.temporal.TemporalParams); defaults = Euro NCAP."""

    closed_openness: float = Field(0.2, gt=0, lt=1, description="openness <= this is closed (P80: 0.2)")
    microsleep_min_s: float = Field(1.0, gt=0, lt=3.0, description="shortest closure that is a microsleep")
    sleep_min_s: float = Field(3.0, gt=0)
    perclos_window_s: float = Field(60.0, gt=0)
    perclos_min_window_s: float = Field(10.0, gt=0)
    perclos_drowsy: float = Field(0.15, gt=0, le=1)
    long_distraction_s: float = Field(3.0, gt=0)
    vats_window_s: float = Field(30.0, gt=0)
    vats_threshold_s: float = Field(10.0, gt=0)
    vats_reset_s: float | None = Field(2.0, gt=0, description="null: no reset")
    unresponsive_s: float = Field(6.0, gt=0)
    min_fixation_s: float = Field(0.3, ge=0, description="shorter on-road sweeps between off-road frames stay off road")
    on_road_zones: list[GazeZoneName] = ["front", "left_mirror", "center_mirror", "right_mirror"]

    @model_validator(mode="after")
    def _order(self) -> "TemporalCfg":
        if self.microsleep_min_s >= self.sleep_min_s:
            raise ValueError("microsleep_min_s must be < sleep_min_s")
        if self.vats_threshold_s > self.vats_window_s:
            raise ValueError("vats_threshold_s must be <= vats_window_s")
        return self


class CoverageConfig(_Strict):
    """Euro NCAP coverage requirement: every (robustness axis bin x driver state) cell needs >= min_per_cell."""

    min_per_cell: int = Field(0, ge=0, description="0: report only")
    fail_on_gap: bool = Field(False, description="a run whose dataset misses a cell fails (else: flagged in the card)")
    axes: list[Literal[
        "age", "skin_tone", "eyelid_aperture", "illuminance", "eyewear", "mask", "headwear",
        "fringe", "makeup", "facial_hair",
    ]] | None = Field(None, description="axes to require (null: all axes the generator records)")


class ClipsConfig(_Strict):
    fps: float = Field(30.0, gt=0, le=60, description="frames per second (in-cabin cameras run 30-60)")
    duration_s: float = Field(20.0, ge=1, le=600)
    clips_per_identity: int = Field(1, ge=1)
    image_size: int = Field(128, ge=32, le=1024)
    format: Literal["jpg", "png"] = "jpg"
    jpeg_quality: int = Field(90, ge=50, le=100)
    clips_per_shard: int = Field(8, ge=1, description="clips per generation batch and per shard")
    scenarios: dict[str, PosWeight] = Field(
        default_factory=lambda: {s: 1.0 for s in BUILTIN_SCENARIOS},
        description="scenario name (built-in or a key of `scripts`) -> weight",
    )
    scripts: dict[str, Script] = {}
    temporal: TemporalCfg = TemporalCfg()
    coverage: CoverageConfig = CoverageConfig()

    @field_validator("scenarios")
    @classmethod
    def _weights(cls, v: dict) -> dict:
        if not v or sum(v.values()) <= 0:
            raise ValueError("at least one scenario with a weight > 0 is required")
        return v

    @model_validator(mode="after")
    def _names(self) -> "ClipsConfig":
        for name in self.scenarios:
            if name not in BUILTIN_SCENARIOS and name not in self.scripts:
                raise ValueError(
                    f"scenarios: unknown scenario {name!r}; built-in: {', '.join(BUILTIN_SCENARIOS)}; "
                    f"scripts: {', '.join(self.scripts) or '(none defined)'}"
                )
        for name in self.scripts:
            if name in BUILTIN_SCENARIOS:
                raise ValueError(f"scripts: {name!r} is a built-in scenario name; pick another name")
            total = sum(s.duration_s for s in self.scripts[name].segments)
            if total > self.duration_s + 1e-9:
                raise ValueError(
                    f"scripts.{name}: segments last {total:g} s, longer than clips.duration_s {self.duration_s:g}"
                )
        if self.duration_s * self.fps < 2:
            raise ValueError("a clip needs at least 2 frames (raise fps or duration_s)")
        return self

    @property
    def n_frames(self) -> int:
        return int(round(self.duration_s * self.fps))
