"""Configuration of the Stable Diffusion backend (spec section ``diffusion:``).

Imports only pydantic and the pure-data template table, so the spec can be validated without
torch/diffusers. Every field is recorded in each sample's ``params["diffusion"]["config"]``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dmsfactory.generators.diffusion.templates import DEFAULT_TEMPLATES

SCHEDULERS = ("default", "ddim", "euler", "euler_a", "dpm", "pndm", "unipc")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ControlNetCfg(_Strict):
    """ControlNet conditioned on the procedural renderer's geometry (mode ``controlnet``): its landmarks
    or its depth buffer."""

    model: str = Field(description="hub id or local directory of a ControlNetModel (face-mesh landmarks or depth)")
    revision: str | None = None
    conditioning_scale: float = Field(1.0, ge=0, le=5, description="controlnet_conditioning_scale")
    map_style: Literal["mediapipe_face", "mesh", "depth"] = Field(
        "mediapipe_face",
        description="mediapipe_face: coloured contours + irises on black (the convention of public "
        "MediaPipe-face ControlNets); mesh: the full tesselation in grey under the contours; depth: the "
        "render's inverse depth in grey, near bright, background black (the convention of depth ControlNets)",
    )
    line_width: int = Field(0, ge=0, le=16, description="0 = scale with resolution (resolution // 256 + 1)")

    @field_validator("model")
    @classmethod
    def _nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("controlnet model must be a hub id or a local directory, not empty")
        return v


class Img2ImgCfg(_Strict):
    """img2img from the procedural render (mode ``img2img``)."""

    strength: float = Field(0.6, gt=0, le=1, description="how much noise is added to the render (1 = ignore it)")


class DiffusionConfig(_Strict):
    model: str = Field(description="hub id or local directory loaded with from_pretrained")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) to load")
    variant: str | None = Field(None, description="weights variant, e.g. 'fp16'")
    local_files_only: bool = Field(False, description="never contact the hub, only the local cache/dir")
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = Field("auto", description="auto: fp16 on CUDA, fp32 on CPU")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    scheduler: Literal["default", "ddim", "euler", "euler_a", "dpm", "pndm", "unipc"] = Field(
        "ddim", description="default = the scheduler the model ships with"
    )
    steps: int = Field(25, ge=1, le=500)
    guidance: float = Field(7.0, ge=0, le=50, description="classifier-free guidance scale (<= 1 disables it)")
    eta: float = Field(0.0, ge=0, le=1, description="DDIM eta (stochasticity; uses the per-image generator)")
    negative_prompt: str = (
        "cartoon, anime, painting, illustration, 3d render, deformed face, disfigured, extra limbs, "
        "blurry, lowres, watermark, text"
    )
    mode: Literal["txt2img", "controlnet", "img2img"] = "txt2img"
    controlnet: ControlNetCfg | None = None
    img2img: Img2ImgCfg = Img2ImgCfg()
    resolution: int | None = Field(
        None, ge=32, le=2048, description="generation size in pixels (multiple of 8); default: the image size"
    )
    batch_size: int = Field(4, ge=1, le=256, description="images per pipeline call")
    prompt_templates: dict[str, str] = Field(
        default_factory=dict, description="overrides of the template table (keys as in templates.py)"
    )
    identity_code_scale: float = Field(
        0.1, ge=0, le=2, description="norm of the identity code added to the prompt embeddings, relative to their std"
    )
    latent_variation: float = Field(
        0.0, ge=0, le=1, description="slerp weight from the identity's initial latent towards per-sample noise"
    )
    compile: bool = Field(False, description="torch.compile the UNet (GPU; first batch is slow)")
    channels_last: bool = Field(True, description="channels-last memory format for UNet/VAE on CUDA")
    torch_threads: int | None = Field(None, ge=1, description="torch.set_num_threads in setup() (CPU)")

    @field_validator("model")
    @classmethod
    def _model_nonempty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("model must be a hub id (e.g. 'org/name') or a local directory, not empty")
        return v

    @field_validator("resolution")
    @classmethod
    def _mult8(cls, v: int | None) -> int | None:
        if v is not None and v % 8:
            raise ValueError(f"resolution must be a multiple of 8 (got {v})")
        return v

    @field_validator("prompt_templates")
    @classmethod
    def _known_keys(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(k for k in v if k not in DEFAULT_TEMPLATES)
        if unknown:
            raise ValueError(
                f"unknown prompt template key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(DEFAULT_TEMPLATES))}"
            )
        return v

    @model_validator(mode="after")
    def _mode_needs(self) -> "DiffusionConfig":
        if self.mode == "controlnet" and self.controlnet is None:
            raise ValueError("mode 'controlnet' needs a 'controlnet:' section with at least 'model:'")
        if self.dtype in ("fp16", "bf16") and self.device == "cpu":
            raise ValueError(f"dtype {self.dtype} is for GPU; use fp32 (or auto) with device cpu")
        return self
