"""Stable Diffusion backend (diffusers): txt2img, ControlNet on renderer geometry, img2img, mixup.

``from dmsfactory.generators.diffusion import DiffusionGenerator, DiffusionConfig, ModelNotAvailable``.
Heavy modules (torch, diffusers) load lazily, so importing the config (the spec does) stays cheap.
"""

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


def __getattr__(name: str):
    if name in ("DiffusionGenerator", "ModelNotAvailable", "card_section", "reproduce", "slerp"):
        from dmsfactory.generators.diffusion import generator

        return getattr(generator, name)
    if name == "draw_condition_map":
        from dmsfactory.generators.diffusion.condmap import draw_condition_map

        return draw_condition_map
    raise AttributeError(f"module 'dmsfactory.generators.diffusion' has no attribute {name!r}")
