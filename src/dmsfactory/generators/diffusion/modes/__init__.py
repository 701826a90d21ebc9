"""The generation modes of the diffusion backend, one file each; ``mode_for(config)`` picks one.

A mode builds its pipeline from the loaded base components (:meth:`build`), says whether it needs the
procedural renderer's geometry for each plan entry (``needs_geometry``, ``keep_depth``), and runs one
batch (:meth:`run`) from the per-image conditioning of :mod:`..identity` (prompt embeddings, initial
latents, one seeded generator per image; identity mixup is part of that conditioning, so every mode
mixes identities the same way).

- ``txt2img`` (:mod:`.txt2img`): prompt only; face geometry uncontrolled, no landmark labels.
- ``controlnet`` (:mod:`.controlnet`): conditioned on a map drawn from the renderer's landmarks (or depth).
- ``img2img`` (:mod:`.img2img`): starts from the renderer's image, noised with the identity's latent.
"""

from __future__ import annotations

from dmsfactory.generators.diffusion.config import DiffusionConfig
from dmsfactory.generators.diffusion.modes.controlnet import ControlNetMode
from dmsfactory.generators.diffusion.modes.img2img import Img2ImgMode
from dmsfactory.generators.diffusion.modes.txt2img import Txt2ImgMode

MODES = {m.name: m for m in (Txt2ImgMode, ControlNetMode, Img2ImgMode)}


def mode_for(config: DiffusionConfig):
    """The mode object for ``config.mode`` (validated by :class:`DiffusionConfig`)."""
    return MODES[config.mode](config)
