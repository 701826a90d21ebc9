"""ControlNet: the image conditioned on a map drawn from the procedural renderer's geometry.

The map is the renderer's landmarks for the same plan entry drawn face-mesh style
(:mod:`..condmap`), or its depth buffer (``map_style: depth``); the sample's landmark / bbox labels
are the renderer's, so they hold for the generated image as far as the ControlNet follows its map.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from dmsfactory.generators.diffusion.condmap import draw_condition_map
from dmsfactory.generators.diffusion.config import DiffusionConfig
from dmsfactory.generators.diffusion.loading import config_hash, load_controlnet
from dmsfactory.generators.procedural.generator import depth_to_map
from dmsfactory.sample import FaceSample


class ControlNetMode:
    name = "controlnet"
    needs_geometry = True

    def __init__(self, config: DiffusionConfig):
        self.config = config
        self.keep_depth = config.controlnet.map_style == "depth"
        self.extra_modules: list[Any] = []
        self.info: dict[str, Any] | None = None

    def build(self, base, components: dict[str, Any], tdtype):
        from diffusers import StableDiffusionControlNetPipeline  # heavy (seconds to import): only when a model is loaded

        cn = self.config.controlnet
        controlnet = load_controlnet(self.config, tdtype)
        comps = {k: v for k, v in components.items() if k != "controlnet"}
        self.extra_modules = [controlnet]
        self.info = {
            "model": cn.model,
            "revision": cn.revision,
            "config_hash": config_hash({"controlnet": controlnet}),
            "conditioning_scale": cn.conditioning_scale,
            "map_style": cn.map_style,
        }
        return StableDiffusionControlNetPipeline(**comps, controlnet=controlnet, requires_safety_checker=False)

    def control_map(self, g: FaceSample, resolution: int, image_size: int) -> np.ndarray:
        cn = self.config.controlnet
        if cn.map_style == "depth":
            if "depth" not in g.arrays:
                raise RuntimeError("map_style 'depth' needs the renderer's depth buffer (ProceduralGenerator keep_depth)")
            return np.repeat(depth_to_map(g.arrays["depth"], resolution)[..., None], 3, axis=2)
        src = g.image.shape[1] if g.image is not None else image_size
        return draw_condition_map(g.landmarks, resolution, src, g.visibility, cn.map_style, cn.line_width)

    def run(self, pipe, conds: list[dict], geos: list, latents, common: dict[str, Any], resolution: int, image_size: int):
        maps = [self.control_map(g, resolution, image_size) for g in geos]
        for c, m in zip(conds, maps):
            c["control_map"] = m
        return pipe(
            image=[Image.fromarray(m) for m in maps],
            height=resolution,
            width=resolution,
            latents=latents,
            controlnet_conditioning_scale=self.config.controlnet.conditioning_scale,
            **common,
        )
