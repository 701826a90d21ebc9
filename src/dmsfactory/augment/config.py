"""Configuration of landmark-consistent augmentation (spec section ``augment:``).

Imports only pydantic. ``policy`` picks the default probabilities (``probabilities`` overrides any
of them); ``strength`` scales every magnitude range around its identity value (1.0 = the ranges
below; 0.5 = half as far from "no change"). See docs/augment.md.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

OpName = Literal[
    "hflip",
    "affine",
    "occlusion",
    "hand_over_mouth",
    "hair_over_eye",
    "wheel_edge",
    "brightness_contrast",
    "saturation",
    "nir",
    "low_light",
    "glare",
    "backlight",
    "motion_blur",
    "gaussian_noise",
    "salt_pepper",
    "jpeg",
]
OP_NAMES: tuple[str, ...] = get_args(OpName)

# probability that each op is applied to a view, per policy
POLICIES: dict[str, dict[str, float]] = {
    # the face-data guide's pipeline: every listed op on every view (the benchmark reference)
    "face_guide": {
        "affine": 1.0,
        "brightness_contrast": 1.0,
        "saturation": 1.0,
        "occlusion": 1.0,
        "gaussian_noise": 1.0,
        "salt_pepper": 0.0,
    },
    # the default: the guide's ranges at moderate rates plus DMS-specific conditions
    "dms": {
        "hflip": 0.5,
        "affine": 0.9,
        "occlusion": 0.15,
        "hand_over_mouth": 0.1,
        "hair_over_eye": 0.1,
        "wheel_edge": 0.1,
        "brightness_contrast": 0.8,
        "saturation": 0.5,
        "nir": 0.15,
        "low_light": 0.15,
        "glare": 0.1,
        "backlight": 0.1,
        "motion_blur": 0.15,
        "gaussian_noise": 0.4,
        "salt_pepper": 0.05,
        "jpeg": 0.3,
    },
    "geometric": {"hflip": 0.5, "affine": 1.0},
    "none": {},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interval(_Strict):
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> "Interval":
        if not self.min <= self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self


def _iv(a: float, b: float) -> Interval:
    return Interval(min=a, max=b)


class AugmentConfig(_Strict):
    enabled: bool = False
    policy: Literal["dms", "face_guide", "geometric", "none"] = "dms"
    strength: float = Field(1.0, ge=0.0, le=2.0, description="scales every magnitude range (1 = defaults)")
    views_per_image: int = Field(1, ge=0, le=64, description="augmented views made from each source image")
    keep_originals: bool = Field(True, description="also pass the un-augmented source samples on")
    probabilities: dict[OpName, float] = Field(
        default_factory=dict, description="per-op probability overriding the policy's (0 disables an op)"
    )
    border: Literal["constant", "replicate", "reflect"] = "constant"
    flip_front_right: Literal["skip", "not_valid"] = Field(
        "skip", description="a flipped 'front_right' gaze has no DMD zone: don't flip it, or label not_valid"
    )
    # --- the face-data guide's ranges ---
    rotate_deg: float = Field(15.0, ge=0, le=90, description="rotation range +-deg (image plane: camera roll)")
    scale: Interval = _iv(0.9, 1.1)
    translate: float = Field(0.10, ge=0, le=0.5, description="+- fraction of the image size")
    brightness: float = Field(0.20, ge=0, le=1, description="+- additive fraction of 255")
    contrast: float = Field(0.15, ge=0, le=1, description="+- multiplicative around the mean")
    saturation: float = Field(0.10, ge=0, le=1, description="+- blend towards/away from grey")
    occlusion_area: Interval = _iv(0.05, 0.20)  # fraction of the face box area
    noise_sigma: Interval = _iv(0.01, 0.05)  # fraction of 255
    salt_pepper: Interval = _iv(0.02, 0.10)  # fraction of pixels
    # --- DMS conditions ---
    nir_falloff: Interval = _iv(0.3, 0.7)  # brightness lost at the image corners (IR illuminator cone)
    nir_noise: Interval = _iv(0.01, 0.04)
    low_light_gain: Interval = _iv(0.15, 0.5)
    glare_radius: Interval = _iv(0.05, 0.15)  # fraction of the image size
    backlight_gain: Interval = _iv(1.4, 2.2)  # background brightening; the face is darkened by 1/sqrt
    motion_blur_px: Interval = _iv(3, 11)
    jpeg_quality: Interval = _iv(20, 60)
    occluded_eye_fraction: float = Field(
        0.5, gt=0, le=1, description="an eye whose hidden contour share exceeds this is labelled not visible"
    )

    @model_validator(mode="after")
    def _check(self) -> "AugmentConfig":
        for name, p in self.probabilities.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"probabilities.{name} must lie in [0, 1] (got {p})")
        for name in ("scale", "occlusion_area", "noise_sigma", "salt_pepper", "nir_falloff", "low_light_gain",
                     "glare_radius", "motion_blur_px", "jpeg_quality", "backlight_gain", "nir_noise"):
            iv: Interval = getattr(self, name)
            if iv.min < 0:
                raise ValueError(f"{name}.min must be >= 0 (got {iv.min})")
        if self.scale.min <= 0:
            raise ValueError(f"scale.min must be > 0 (got {self.scale.min})")
        if self.occlusion_area.max > 1 or self.salt_pepper.max > 1:
            raise ValueError("occlusion_area and salt_pepper are fractions: max must be <= 1")
        if self.jpeg_quality.min < 1 or self.jpeg_quality.max > 100:
            raise ValueError(f"jpeg_quality must lie in [1, 100] (got {self.jpeg_quality.min}..{self.jpeg_quality.max})")
        if self.motion_blur_px.min < 1:
            raise ValueError(f"motion_blur_px.min must be >= 1 (got {self.motion_blur_px.min})")
        return self

    def probability(self, op: str) -> float:
        if op in self.probabilities:
            return float(self.probabilities[op])
        return float(POLICIES[self.policy].get(op, 0.0))


def view_key(key: str, view: int) -> str:
    """The key of augmented view ``view`` of the sample ``key``."""
    return f"{key}_a{int(view)}"


def image_keys(key: str, config: AugmentConfig | None) -> list[str]:
    """Keys of every image the stage passes on for the source ``key`` (source first when kept);
    ``config`` None or disabled: the source only. Readers that must know the written images before
    they exist (the verification audit's population, the privacy gate's identity views) use this, not
    their own copy of the naming. Here, not in the stage, so that they import nothing heavy."""
    if config is None or not config.enabled:
        return [key]
    return ([key] if config.keep_originals else []) + [view_key(key, j) for j in range(config.views_per_image)]
