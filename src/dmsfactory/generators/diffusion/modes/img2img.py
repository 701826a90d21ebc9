"""img2img: the renderer's image for the same plan entry, noised with the identity's initial latent and denoised.

``strength`` (``diffusion.img2img.strength``) sets how far from the render the image may move; the
landmark / bbox labels are the renderer's. The added noise is the identity's latent (not fresh noise),
so an identity's images share it as in the other modes.
"""

from __future__ import annotations

from typing import Any

from PIL import Image
from dmsfactory.generators.diffusion.condmap import resize_square
from dmsfactory.generators.diffusion.config import DiffusionConfig


def _img2img_class():
    """Img2img pipeline whose added noise can be given per image (the identity's initial latent)."""
    from diffusers import StableDiffusionImg2ImgPipeline  # heavy (seconds to import): only when a model is loaded
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents  # heavy

    class IdentityNoiseImg2ImgPipeline(StableDiffusionImg2ImgPipeline):
        _noise = None  # (B, C, h, w) set by the generator for the duration of one call

        def prepare_latents(self, image, timestep, batch_size, num_images_per_prompt, dtype, device, generator=None):
            if self._noise is None:
                return super().prepare_latents(image, timestep, batch_size, num_images_per_prompt, dtype, device, generator)
            image = image.to(device=device, dtype=dtype)
            if not isinstance(generator, list) or len(generator) != image.shape[0]:
                raise ValueError("identity-noise img2img needs one generator per image")
            init = torch_cat(
                [retrieve_latents(self.vae.encode(image[i : i + 1]), generator=generator[i]) for i in range(image.shape[0])]
            )
            init = self.vae.config.scaling_factor * init
            noise = self._noise.to(device=device, dtype=dtype)
            return self.scheduler.add_noise(init, noise, timestep)

    def torch_cat(xs):
        import torch  # heavy (seconds to import): only when a model is loaded

        return torch.cat(xs, dim=0)

    return IdentityNoiseImg2ImgPipeline


class Img2ImgMode:
    name = "img2img"
    needs_geometry = True
    keep_depth = False

    def __init__(self, config: DiffusionConfig):
        self.config = config
        self.extra_modules: list[Any] = []
        self.info: dict[str, Any] | None = None

    def build(self, base, components: dict[str, Any], tdtype):
        return _img2img_class()(**components, requires_safety_checker=False)

    def run(self, pipe, conds: list[dict], geos: list, latents, common: dict[str, Any], resolution: int, image_size: int):
        inits = [Image.fromarray(resize_square(g.image, resolution)) for g in geos]
        pipe._noise = latents
        try:
            return pipe(image=inits, strength=self.config.img2img.strength, height=resolution, width=resolution, **common)
        finally:
            pipe._noise = None
