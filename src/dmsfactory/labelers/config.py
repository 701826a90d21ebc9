"""Configuration of pixel-based label verification (spec section ``verify:``).

Imports only pydantic and the shared condition lists. Thresholds default to values calibrated on procedural renders with known
truth (docs/verify.md shows the sweeps); a spec may override any of them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dmsfactory.conditions import ACCESSORIES, LIGHTING

CHECKS = ("face", "landmarks", "eyes", "mouth", "gaze", "head_pose")
Check = Literal["face", "landmarks", "eyes", "mouth", "gaze", "head_pose"]
Action = Literal["keep", "relabel", "quarantine"]
Condition = Literal[(*ACCESSORIES, *LIGHTING)]  # an accessory or a lighting mode ("none": no accessory)


class VerifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    # audit (docs/verify.md, labelers/audit.py): None = a stratified sample sized for +-audit_margin on
    # every agreement rate when the backend's labels are exact (procedural), every image otherwise
    # (diffusion); 1.0 = every image (and the policy below acts); in (0, 1) = that share of the images
    rate: float | None = Field(None, gt=0, le=1, description="share of images checked (None: audit for exact-label backends)")
    audit_margin: float = Field(0.02, gt=0, lt=0.5, description="half-width of the 95 % interval the audit is sized for")
    audit_confidence: float = Field(0.95, gt=0.5, lt=1)
    audit_measurable: float = Field(
        0.4, gt=0, le=1, description="assumed share of audited images on which every check is measurable (not undetectable); "
        "gaze, the least measurable, was measurable on 43 % of demo images")
    checks: list[Check] = Field(default_factory=lambda: list(CHECKS), description="checks to run")
    # what to do when pixels disagree with a label (face/landmarks cannot be relabelled)
    policy: dict[Check, Action] = Field(
        default_factory=lambda: {"face": "quarantine", "landmarks": "keep", "eyes": "keep", "mouth": "keep",
                                 "gaze": "keep", "head_pose": "keep"})
    # conditions that make a check unverifiable from pixels (reported as undetectable, not disagreement)
    unverifiable: dict[Condition, list[Check]] = Field(
        default_factory=lambda: {"sunglasses": ["eyes", "gaze"], "mask": ["mouth"], "night_ir": []})
    # detectors
    min_detection_confidence: float = Field(0.5, gt=0, lt=1)
    haar: bool = Field(False, description="also run OpenCV's Haar frontal-face cascade (50-130 ms per 512^2)")
    haar_max_side: int = Field(256, ge=64, le=2048, description="downscale to this before Haar")
    # thresholds (calibrated: docs/verify.md)
    ear_closed: float = Field(0.18, gt=0, lt=1, description="eye aspect ratio below this = closed")
    ear_open_ref: float = Field(0.25, gt=0, lt=1, description="EAR of a fully open eye (openness estimate)")
    openness_closed: float = Field(0.2, ge=0, le=1, description="label openness <= this counts as closed")
    mar_open: float = Field(0.10, gt=0, lt=2, description="mouth aspect ratio above this = mouth open")
    mar_max_ref: float = Field(0.6, gt=0, lt=3, description="MAR of a maximal yawn (openness estimate)")
    mouth_open_label: float = Field(0.4, ge=0, le=1, description="label mouth openness >= this counts as open")
    gaze_gain_deg: float = Field(11.0, gt=0, le=180, description="eye-in-head degrees per unit iris offset")
    gaze_tolerance_deg: float = Field(15.0, gt=0, le=90)
    head_pose_tolerance_deg: float = Field(15.0, gt=0, le=90)
    landmark_nme_max: float = Field(0.10, gt=0, le=1, description="mean landmark error / eye-corner distance")

    @model_validator(mode="after")
    def _check(self) -> "VerifyConfig":
        if len(set(self.checks)) != len(self.checks):
            raise ValueError("checks: each check may be listed once")
        for c in ("face", "landmarks"):
            if self.policy.get(c) == "relabel":
                raise ValueError(f"policy.{c}: 'relabel' is not possible for {c} (use keep or quarantine)")
        if self.ear_open_ref <= self.ear_closed:
            raise ValueError(f"ear_open_ref ({self.ear_open_ref}) must be > ear_closed ({self.ear_closed})")
        if self.mar_max_ref <= self.mar_open:
            raise ValueError(f"mar_max_ref ({self.mar_max_ref}) must be > mar_open ({self.mar_open})")
        return self

    def action(self, check: str) -> str:
        return self.policy.get(check, "keep")  # type: ignore[return-value]
