"""Configuration of the privacy gate (spec section ``privacy:``).

Imports only pydantic (and the standard library) so the spec can be validated without loading
dlib, MediaPipe or OpenCV. See ``docs/privacy.md`` for what every threshold means and how the
defaults were calibrated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PresenceDetector = Literal["mediapipe", "haar"]
DescriptorDetector = Literal["mediapipe", "hog"]


class PrivacyConfig(BaseModel):
    """The privacy gate: face presence, identity leakage against real galleries, memorisation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="run the privacy stage before sharding")
    galleries: list[str] = Field(
        default_factory=list,
        description="real galleries to check every output face against: image directories "
        "(searched recursively) or shard directories (*.tar with jpg/png members)",
    )
    threshold: float = Field(
        0.6,
        gt=0,
        lt=2,
        description="dlib descriptor distance below which two faces are the same person "
        "(dlib's calibrated same-person threshold; see docs/privacy.md)",
    )
    low_res_face_px: int = Field(
        48,
        ge=0,
        description="gallery faces smaller than this (short side of the face box, original pixels) are low-resolution",
    )
    low_res_threshold: float | None = Field(
        0.4,
        gt=0,
        lt=2,
        description="leakage threshold against low-resolution gallery faces (None = `threshold` for every face); "
        "dlib's 0.6 is calibrated on sharp faces, upscaled thumbnails sit 0.46+ from any procedural render "
        "while their own copies stay <= 0.26 (docs/privacy.md)",
    )
    duplicate_identity_threshold: float = Field(
        0.3,
        gt=0,
        lt=2,
        description="two images of different synthetic identities closer than this are the same face (a copy / "
        "memorisation); augmented copies of one photo measured 0.0-0.26, while dlib's same-person 0.6 "
        "flagged every identity pair of the procedural renderer (docs/privacy.md)",
    )
    presence_detectors: list[PresenceDetector] = Field(
        default_factory=lambda: ["mediapipe", "haar"],
        description="face-presence detectors; a face is present when any of them finds one",
    )
    descriptor_detectors: list[DescriptorDetector] = Field(
        default_factory=lambda: ["mediapipe", "hog"],
        description="face boxes fed to dlib's 5-point aligner + ResNet descriptor; boxes from all "
        "listed detectors are merged (IoU > 0.3 counts as the same face)",
    )
    descriptor_backend: Literal["auto", "torch", "dlib"] = Field(
        "auto",
        description="where dlib's face-recognition ResNet runs: torch (the same weights read from the .dat; equal "
        "to dlib's descriptors within 2e-6 L2, ~5x less CPU), dlib (dlib-bin's own, built without BLAS), or auto "
        "(torch when installed). docs/privacy.md",
    )
    presence_fallback: bool = Field(
        True,
        description="run the presence detectors in order and stop at the first that finds a face (Haar costs "
        "~10x MediaPipe per image and cannot change 'present' once MediaPipe found one), and only the first where "
        "the labels expect no face (a later one would decide nothing); false runs all of them on every image",
    )
    leakage_mode: Literal["auto", "identity", "image"] = Field(
        "auto",
        description="identity: judge each synthetic identity on `identity_views` views (the worst distance counts) "
        "and give all its images that verdict; image: every image on its own; auto: identity for backends whose "
        "identity is a parameter (procedural), image otherwise (diffusion). docs/privacy.md",
    )
    identity_views: int = Field(3, ge=1, le=64, description="views per identity in identity mode (chosen to cover pose and lighting)")
    identity_view_hog: Literal["fallback", "always"] = Field(
        "fallback",
        description="identity views: scan with dlib's HOG only when MediaPipe misses the labelled face (fallback: "
        "the aligner starts from MediaPipe's eye box; ~22 ms less per view on a 256 px render) or on every view "
        "(always: HOG's box where both find it). Gallery photos and per-image checks always scan. docs/privacy.md",
    )
    quarantine_faceless: bool = Field(
        True, description="quarantine a sample whose labels say a face is visible but no detector finds one"
    )
    expect_visible_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="a face is expected when at least this fraction of the 468 mesh landmarks is visible",
    )
    mediapipe_min_confidence: float = Field(0.5, gt=0, lt=1)
    haar_min_neighbors: int = Field(5, ge=1)
    haar_max_side: int = Field(320, ge=64, description="images are downscaled to this side for Haar")
    hog_upsample: int = Field(1, ge=0, le=3, description="dlib HOG pyramid upsampling (1 finds faces >= ~40 px)")
    hog_min_score: float = Field(
        0.3, ge=-1, le=3, description="a HOG detection no MediaPipe box confirms counts as a face only above this score"
    )
    max_image_side: int = Field(
        1024, ge=128, description="larger images (mostly gallery photos) are downscaled before detection"
    )
    min_image_side: int = Field(
        160, ge=32, description="smaller images (thumbnail galleries) are upscaled to this side before detection"
    )
    phash_max_distance: int = Field(
        4, ge=0, le=32, description="Hamming distance (of 64 bits) at or below which two images are near-duplicates"
    )
    report_pairs: int = Field(12, ge=0, le=200, description="closest pairs listed (with thumbnails) in the report")
    gallery_thumbnails: bool = Field(
        False,
        description="embed thumbnails of matched *gallery* images in the report (off: the report then "
        "names the gallery file only, so no real face is copied into outputs)",
    )
    cache_dir: str | None = Field(
        None, description="gallery descriptor cache; default $XDG_CACHE_HOME/dmsfactory/privacy or ~/.cache/..."
    )
    search_chunk: int = Field(16384, ge=256, description="gallery rows per block of the exact matrix search")
    index: Literal["exact", "faiss"] = Field(
        "exact", description="nearest-neighbour backend: exact batched numpy search, or FAISS if installed"
    )

    @field_validator("galleries")
    @classmethod
    def _galleries(cls, v: list[str]) -> list[str]:
        for i, g in enumerate(v):
            if not str(g).strip():
                raise ValueError(f"galleries[{i}] is empty; give a directory of images or shards")
        if len(set(v)) != len(v):
            raise ValueError("galleries lists the same path twice")
        return v

    @field_validator("presence_detectors", "descriptor_detectors")
    @classmethod
    def _nonempty(cls, v: list[str], info) -> list[str]:
        if not v:
            raise ValueError(f"{info.field_name} needs at least one detector")
        if len(set(v)) != len(v):
            raise ValueError(f"{info.field_name} lists a detector twice")
        return v

    @model_validator(mode="after")
    def _paths(self) -> "PrivacyConfig":
        if self.enabled:
            for i, g in enumerate(self.galleries):
                p = Path(g).expanduser()
                if not p.exists():
                    raise ValueError(
                        f"galleries[{i}]: {g!r} does not exist (a directory of real face images or shards); "
                        f"`python -m dmsfactory.privacy.testgallery {g}` writes a small one of public test photos there"
                    )
                if not p.is_dir():
                    raise ValueError(f"galleries[{i}]: {g!r} is not a directory (a directory of images or shards)")
        if self.cache_dir is not None and Path(self.cache_dir).expanduser().is_file():
            raise ValueError(f"cache_dir: {self.cache_dir!r} is a file, not a directory")
        return self

    @property
    def identity_threshold(self) -> float:
        return self.duplicate_identity_threshold

    def resolved_cache_dir(self) -> Path:
        import os

        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "dmsfactory" / "privacy"
