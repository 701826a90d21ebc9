"""Configuration of the anonymiser (``dmsfactory anonymize``); every field is recorded in the report."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DiffusionAnonConfig(BaseModel):
    """The diffusion route (``--backend diffusion``): DDIM inversion of the face crop, denoising with
    an identity-shifted prompt embedding, guided away from the original's dlib descriptor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(None, description="local directory of a StableDiffusionPipeline (save_pretrained); "
                              "required: nothing is downloaded")
    resolution: int = Field(64, ge=32, le=1024, description="face-crop size in pixels (multiple of 8)")
    steps: int = Field(10, ge=2, le=200, description="DDIM steps for inversion and for denoising")
    strength: float = Field(0.8, gt=0, le=1, description="fraction of the steps inverted (1 = to pure noise)")
    identity_shift: float = Field(1.0, ge=0, le=10, description="norm of the identity direction added to the "
                                  "embedding, relative to the embedding's standard deviation")
    guidance_candidates: int = Field(4, ge=1, le=32, description="identity directions tried at each guided step")
    guided_steps: int = Field(2, ge=0, le=50, description="denoising steps at which the direction farthest from "
                              "the original's descriptor is chosen (0: no guidance)")
    prompt: str = "a photo of a driver's face"
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> "DiffusionAnonConfig":
        if self.resolution % 8:
            raise ValueError(f"diffusion.resolution must be a multiple of 8 (got {self.resolution})")
        return self


class AnonymizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["replace", "hide"] = Field(
        "replace", description="replace: a synthetic identity (people and machines see someone else); "
        "hide: the original geometry under synthetic skin (people should not recognise, dlib should)")
    backend: Literal["procedural", "diffusion"] = "procedural"
    fov_deg: float = Field(60.0, gt=10, lt=170, description="assumed horizontal field of view of the source camera")
    max_faces: int = Field(2, ge=1, le=8, description="faces anonymised per frame (largest first)")
    min_confidence: float = Field(0.5, gt=0, lt=1, description="MediaPipe detection/tracking confidence")
    blend: Literal["alpha", "poisson"] = "alpha"
    feather: float = Field(0.08, ge=0, le=0.5, description="alpha ramp inside the face outline, x face size")
    forehead: float = Field(0.55, ge=0, le=1, description="share of the forehead (brows to the top of the mesh "
                            "outline) that is replaced; above it the original's hairline stays")
    relight: bool = True
    mouth_interior: Literal["source", "synthetic"] = Field(
        "source", description="an open mouth's inside (teeth, tongue, shadow) in replace mode: the original's, "
        "warped into the synthetic lips (MediaPipe reads the opening; measured), or painted (synthetic teeth band)")
    seed: int = Field(0, ge=0, description="chooses the synthetic identities (with the source and track ids)")
    identity_pool: int = Field(64, ge=1, le=100000, description="synthetic identities to draw from (each is "
                               "calibrated once per run)")
    identity_candidates: int = Field(8, ge=1, le=64, description="replace mode: synthetic identities tried per new "
                                     "track, keeping the first far enough (dlib) from the original and the faces to avoid")
    identity_retries: int = Field(2, ge=0, le=16, description="replace mode: further screened identities refined "
                                  "when dlib still matches the refined face to the original (distance <= 0.6)")
    recognisable: Literal["pixelate", "keep"] = Field(
        "pixelate", description="a face dlib still matches to its original after the retries: pixelated (its "
        "labels are then not carried) or kept and flagged identity_removed: false")
    identity_margin: float = Field(0.7, ge=0, le=2, description="dlib distance a chosen identity should keep")
    hide_margin: float = Field(0.5, gt=0, le=2, description="hide mode: dlib distance to the original the hidden "
                               "face must stay within (same person below 0.6)")
    refine: int = Field(2, ge=0, le=5, description="closed-loop corrections per still image (video: one per "
                        "frame, carried to the next)")
    video_refine: int = Field(1, ge=0, le=5, description="video: extra corrections on a frame whose re-check "
                              "disagrees (frames that agree cost one render)")
    render_max: int = Field(256, ge=64, le=1024, description="largest render size (pixels); the render is warped up to the face size")
    track_gap_s: float = Field(1.0, ge=0, description="video: a face lost for longer starts a new track")
    ear_closed: float = Field(0.18, gt=0, lt=1, description="EAR below this = eye closed (labels.verify default)")
    mar_open: float = Field(0.10, gt=0, lt=3, description="mouth ratio above this = mouth open (labels.verify default)")
    yawn_mar: float = Field(0.5, gt=0, lt=3, description="mouth ratio above this = yawning")
    pose_tolerance_deg: float = Field(5.0, gt=0, le=90, description="re-check: head pose agrees within this")
    diffusion: DiffusionAnonConfig = DiffusionAnonConfig()
