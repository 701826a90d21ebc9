"""Configuration of the (DP) fine-tune stage (spec section ``train:``).

Imports only pydantic, so a spec validates without torch/opacus.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

HEAD_NAMES = ("class", "fatigue", "eye_left", "eye_right", "yawn", "distracted", "phone")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DPConfig(_Strict):
    """DP-SGD (Opacus) on the private set."""

    max_grad_norm: float = Field(1.0, gt=0, description="per-sample gradient clipping norm C")
    accountant: Literal["rdp", "prv", "gdp"] = "rdp"
    grad_sample_mode: Literal["hooks", "functorch"] = Field(
        "hooks", description="how Opacus computes per-sample gradients (benchmarks/dp_step.py compares them)"
    )
    noise_multiplier: float | None = Field(
        None,
        gt=0,
        description="fixed σ; None = calibrate σ with make_private_with_epsilon so `epochs` reach `epsilon`",
    )


class PATEConfig(_Strict):
    """PATE: teachers on disjoint partitions of the private set, (confident) GNMax on synthetic inputs."""

    teachers: int = Field(10, ge=2, le=1000)
    queries: int = Field(300, ge=1, description="at most this many synthetic train inputs are queried")
    sigma: float | None = Field(
        None, gt=0, description="GNMax noise std (votes); None = calibrate to `epsilon` for `queries` answers"
    )
    threshold_fraction: float | None = Field(
        None,
        gt=0,
        le=1,
        description="confident GNMax: answer only if max votes + N(0, σ1²) ≥ this × teachers; None = plain GNMax",
    )
    sigma_threshold_ratio: float = Field(2.0, gt=0, description="σ1 / σ of the confident-GNMax check")
    head: Literal["class"] = "class"
    teacher_epochs: int = Field(10, ge=1)
    student_epochs: int = Field(8, ge=1)


class MixupConfig(_Strict):
    """SynFace-style domain mixup: x = λ·x_syn + (1−λ)·x_real, loss = λ·L(y_syn) + (1−λ)·L(y_real)."""

    enabled: bool = False
    lam_max: float = Field(0.5, ge=0, le=1, description="λ ~ Uniform(0, lam_max) per sample (weight of the synthetic image)")


class TrainConfig(_Strict):
    method: Literal["dp_sgd", "pate", "non_private", "synthetic_only"] = Field(
        "dp_sgd",
        description="dp_sgd / pate: private fine-tune with a budget; non_private: ε = ∞ fine-tune on the "
        "real set; synthetic_only: no real data at all",
    )
    dataset_dir: str | None = Field(None, description="synthetic shards; default: the spec's output.dir")
    private_data: str | None = Field(
        None, description="directory of shards holding the private real set (required unless synthetic_only)"
    )
    private_split: Literal["train", "val", "test"] = "train"
    epsilon: float = Field(4.0, gt=0, description="privacy budget ε for dp_sgd / pate (.inf allowed = no noise)")
    delta: float | None = Field(None, gt=0, lt=1, description="δ; default 1/(10·n) for n private records")
    heads: tuple[Literal["class", "fatigue", "eye_left", "eye_right", "yawn", "distracted", "phone"], ...] = HEAD_NAMES
    image_size: int = Field(64, ge=16, le=256)
    crop: Literal["face", "full"] = Field("face", description="face: square crop around the face bbox")
    crop_scale: float = Field(1.6, ge=1.0, le=4.0, description="side of the face crop / longest bbox side")
    flip: bool = Field(True, description="random horizontal flips in training (eye_left/eye_right labels swapped)")
    width: int = Field(24, ge=4, le=256, description="channels of the first conv block")
    pretrain_epochs: int = Field(6, ge=0, description="public (synthetic) epochs, no privacy cost")
    epochs: int = Field(4, ge=1, description="private fine-tune epochs (DP-SGD / non_private)")
    batch_size: int = Field(64, ge=1, description="expected batch size (Poisson sampling under DP)")
    lr: float = Field(2e-3, gt=0)
    private_lr: float = Field(1e-3, gt=0)
    max_synthetic: int | None = Field(None, ge=1, description="use at most this many synthetic train samples")
    seed: int | None = Field(None, ge=0, description="default: the spec's seed")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dp: DPConfig = DPConfig()
    pate: PATEConfig = PATEConfig()
    mixup: MixupConfig = MixupConfig()

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if not self.heads:
            raise ValueError("heads: at least one head is required")
        if len(set(self.heads)) != len(self.heads):
            raise ValueError("heads: duplicate head names")
        if self.method != "synthetic_only" and not self.private_data:
            raise ValueError(f"private_data is required for method {self.method!r} (a directory of shards)")
        if self.method == "pate" and "class" not in self.heads:
            raise ValueError("method 'pate' answers the 'class' head: keep 'class' in heads")
        if math.isnan(self.epsilon):
            raise ValueError("epsilon must be a number")
        return self
