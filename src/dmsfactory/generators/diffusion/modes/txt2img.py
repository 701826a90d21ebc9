"""txt2img: the image from the prompt embeddings and the identity's initial latent alone.

The face geometry is not controlled, so samples made this way carry no landmark / bbox labels.
"""

from __future__ import annotations

from typing import Any

from dmsfactory.generators.diffusion.config import DiffusionConfig


class Txt2ImgMode:
    name = "txt2img"
    needs_geometry = False  # no renderer geometry: landmarks stay unknown
    keep_depth = False

    def __init__(self, config: DiffusionConfig):
        self.config = config
        self.extra_modules: list[Any] = []  # modules besides unet/vae that follow the pipeline's memory format
        self.info: dict[str, Any] | None = None

    def build(self, base, components: dict[str, Any], tdtype):
        """The pipeline to run: the loaded ``StableDiffusionPipeline`` itself."""
        return base

    def run(self, pipe, conds: list[dict], geos: list, latents, common: dict[str, Any], resolution: int, image_size: int):
        return pipe(height=resolution, width=resolution, latents=latents, **common)
