"""Stable Diffusion backend (diffusers): txt2img, ControlNet on renderer geometry, img2img, mixup.

``from dmsfactory.generators.diffusion import DiffusionGenerator, DiffusionConfig, ModelNotAvailable``.
Everything but the config loads on first use, and torch/diffusers only when a model is, so importing
the config (the spec does) stays cheap.
"""

import importlib

from dmsfactory.generators.diffusion.config import ControlNetCfg, DiffusionConfig, Img2ImgCfg

__all__ = [
    "ControlNetCfg",
    "DiffusionConfig",
    "DiffusionGenerator",
    "Img2ImgCfg",
    "ModelNotAvailable",
    "draw_condition_map",
    "card_section",
    "reproduce",
    "slerp",
]


# name -> module, loaded on first use: the spec imports this package for its config, and should not
# pay for cv2 (condmap) or the renderer (generator) to do so
_LAZY = {"DiffusionGenerator": "generator", "reproduce": "generator", "card_section": "card",
         "draw_condition_map": "condmap", "slerp": "identity", "ModelNotAvailable": "loading"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dmsfactory.generators.diffusion' has no attribute {name!r}")
