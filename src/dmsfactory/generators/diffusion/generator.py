"""Stable Diffusion backend (diffusers): txt2img, ControlNet on renderer geometry, img2img, mixup.

One :class:`DiffusionGenerator` per worker: :meth:`setup` loads the pipeline once (the model is
configuration: a hub id or a local directory, loaded with ``from_pretrained``), :meth:`generate`
makes one :class:`FaceSample` per plan entry in batches of ``config.batch_size``.

Determinism: every image has its own CPU ``torch.Generator`` seeded from its plan entry's
``sample_seed`` (or, if absent, from a hash of its key), and its initial latent is drawn from its
identity's seed, so an image does not depend on which other images share its batch. Batched
matrix products may round differently for different batch sizes (about 1e-6 relative on CPU), so
"independent of batch size" holds up to that rounding: at most one uint8 level on a few pixels.
Same batch composition + seed -> bit-identical output on the same device and library versions.

Identities (SynFace-style) and mixup: :mod:`.identity`. All images of an identity share its
embeddings' identity part and its latent and differ in condition words (and, in ControlNet/img2img
modes, in the rendered geometry). Model loading and provenance: :mod:`.loading`; one file per
generation mode: :mod:`.modes`; the card section: :mod:`.card`.

Labels are never parsed from prompts. In ``controlnet`` and ``img2img`` modes the landmarks, bbox and
3D landmarks are the procedural renderer's for the same plan entry (the image is conditioned on that
geometry); in ``txt2img`` mode the geometry is unknown and the sample's landmarks are None.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from dmsfactory.errors import ErrorPolicy, check_policy
from dmsfactory.generators.diffusion.card import card_section
from dmsfactory.generators.diffusion.condmap import resize_square
from dmsfactory.generators.diffusion.config import DiffusionConfig
from dmsfactory.generators.diffusion.identity import Conditioner, seed_for, slerp  # noqa: F401  (re-exported)
from dmsfactory.generators.diffusion.loading import (  # noqa: F401  (ModelNotAvailable, config_hash re-exported)
    ModelNotAvailable,
    config_hash,
    load_pipeline,
    resolve_device_dtype,
    scheduler_class,
)
from dmsfactory.generators.diffusion.modes import mode_for
from dmsfactory.generators.diffusion.prompts import PromptBuilder
from dmsfactory.generators.procedural import ProceduralGenerator  # geometry for controlnet/img2img modes
from dmsfactory.generators.procedural.config import ProceduralConfig
from dmsfactory.sample import FaceSample

STAGE = "generate.diffusion"


class DiffusionGenerator:
    """Stable Diffusion generator behind the stage contract (see module docstring)."""

    name = "diffusion"

    def __init__(self, config: DiffusionConfig, image_size: int, procedural_config=None, on_error: ErrorPolicy = "quarantine"):
        self.on_error = check_policy(on_error)  # dmsfactory.errors: quarantine | raise
        if not isinstance(config, DiffusionConfig):
            config = DiffusionConfig.model_validate(config)
        if int(image_size) < 8:
            raise ValueError(f"image_size must be >= 8 pixels (got {image_size})")
        self.config = config
        self.image_size = int(image_size)
        self.resolution = config.resolution or self.image_size
        if self.resolution % 8:
            raise ValueError(
                f"generation size {self.resolution} is not a multiple of 8; set diffusion.resolution "
                f"(image.size {self.image_size} is used when it is unset)"
            )
        self.procedural_config = procedural_config
        self.prompts = PromptBuilder(config.prompt_templates, config.negative_prompt)
        self.pipe = None
        self._renderer = None
        self.mode = mode_for(config)
        self.conditioner: Conditioner | None = None
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------------ loading
    def setup(self) -> None:
        if self.pipe is not None:
            return
        import torch  # heavy (seconds to import): only when a model is loaded

        cfg = self.config
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        device, dtype_name, tdtype = resolve_device_dtype(cfg)
        base = load_pipeline(cfg, tdtype)
        if cfg.scheduler != "default":
            base.scheduler = scheduler_class(cfg.scheduler).from_config(base.scheduler.config)
        base.set_progress_bar_config(disable=True)
        comps = dict(base.components)
        pipe = self.mode.build(base, comps, tdtype)
        pipe.set_progress_bar_config(disable=True)
        pipe.to(device)
        if device == "cuda" and cfg.channels_last:
            for module in (pipe.unet, pipe.vae, *self.mode.extra_modules):
                module.to(memory_format=torch.channels_last)
        if cfg.compile:
            pipe.unet = torch.compile(pipe.unet)
        self.vae_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        if self.resolution % self.vae_factor:
            raise ValueError(f"generation size {self.resolution} must be a multiple of the VAE factor {self.vae_factor}")
        import diffusers  # heavy (seconds to import): only when a model is loaded

        self.pipe = pipe
        self.device, self.tdtype = device, tdtype
        self.conditioner = Conditioner(pipe, cfg, self.prompts, device, tdtype, self.resolution // self.vae_factor)
        self.info = {
            "backend": "diffusers",
            "diffusers_version": diffusers.__version__,
            "torch_version": torch.__version__,
            "pipeline": type(pipe).__name__,
            "model": cfg.model,
            "revision": cfg.revision,
            "variant": cfg.variant,
            "config_hash": config_hash(
                {k: comps.get(k) for k in ("unet", "vae", "text_encoder", "tokenizer")} | {"scheduler": pipe.scheduler}
            ),
            "controlnet": self.mode.info,
            "scheduler": cfg.scheduler,
            "scheduler_class": type(pipe.scheduler).__name__,
            "device": device,
            "dtype": dtype_name,
        }

    def _geometry(self, entries: list[dict[str, Any]]) -> list[FaceSample]:
        if self._renderer is None:
            self._renderer = ProceduralGenerator(self.procedural_config or ProceduralConfig())
            if hasattr(self._renderer, "setup"):
                self._renderer.setup()
        return self._renderer.generate([copy.deepcopy(e) for e in entries], keep_depth=self.mode.keep_depth)

    def finalize(self, dataset_dir, records: list[dict[str, Any]]):
        """Stage hook: the dataset-card section (see :func:`.card.card_section`)."""
        return card_section(records)

    # ------------------------------------------------------------------ generation
    def generate(self, plan_entries: list[dict[str, Any]]) -> list[FaceSample]:
        self.setup()
        out: list[FaceSample] = []
        bs = self.config.batch_size
        for i in range(0, len(plan_entries), bs):
            out.extend(self._generate_batch(plan_entries[i : i + bs]))
        return out

    def _base_sample(self, entry: dict[str, Any], index_hint: int) -> FaceSample:
        return FaceSample(
            key=str(entry.get("key", f"missing-key-{index_hint}")),
            index=int(entry.get("index", index_hint)),
            params=copy.deepcopy(entry),
            split=entry.get("split"),
            identity=entry.get("identity"),
        )

    def _generate_batch(self, entries: list[dict[str, Any]]) -> list[FaceSample]:
        samples = [self._base_sample(e, n) for n, e in enumerate(entries)]
        conds: list[dict | None] = []
        for s, e in zip(samples, entries):
            try:
                if "key" not in e:
                    raise ValueError("plan entry has no 'key'")
                conds.append(self.conditioner.condition(e))
            except (KeyError, ValueError, TypeError) as err:
                if self.on_error == "raise":
                    raise
                s.quarantine(STAGE, f"bad plan entry: {err}", check="prompt")
                conds.append(None)
        geo: list[FaceSample | None] = [None] * len(entries)
        if self.mode.needs_geometry:
            todo = [n for n, c in enumerate(conds) if c is not None]
            if todo:
                rendered = self._geometry([entries[n] for n in todo])
                for n, r in zip(todo, rendered):
                    if r.quarantined or r.image is None or r.landmarks is None:
                        why = "; ".join(r.quarantine_reasons) or "renderer returned no image/landmarks"
                        samples[n].quarantine(STAGE, f"renderer geometry unavailable: {why}", check="geometry")
                        conds[n] = None
                    else:
                        geo[n] = r
        live = [n for n, c in enumerate(conds) if c is not None]
        if live:
            images = self._run_pipeline([conds[n] for n in live], [geo[n] for n in live])
            for n, img in zip(live, images):
                self._finish(samples[n], conds[n], geo[n], img)
        return samples

    def _run_pipeline(self, conds: list[dict], geos: list[FaceSample | None]) -> list[np.ndarray]:
        import torch  # heavy (seconds to import): only when a model is loaded

        cfg, R = self.config, self.resolution
        emb = torch.cat([c["emb"] for c in conds])
        neg = torch.cat([c["neg"] for c in conds])
        gens = [torch.Generator().manual_seed(c["seed"]) for c in conds]
        latents = torch.cat([c["latent"] for c in conds]).to(self.device, self.tdtype)
        common = dict(
            prompt_embeds=emb,
            negative_prompt_embeds=neg,
            num_inference_steps=cfg.steps,
            guidance_scale=cfg.guidance,
            eta=cfg.eta,
            generator=gens,
            output_type="np",
        )
        with torch.inference_mode():
            res = self.mode.run(self.pipe, conds, geos, latents, common, R, self.image_size)
        imgs = np.asarray(res.images)
        return [imgs[i] for i in range(len(conds))]

    def _finish(self, s: FaceSample, cond: dict, g: FaceSample | None, img: np.ndarray) -> None:
        cfg = self.config
        rec = dict(self.info)
        rec.update(cond["record"])
        rec.update(
            {
                "steps": cfg.steps,
                "guidance": cfg.guidance,
                "eta": cfg.eta,
                "mode": cfg.mode,
                "strength": cfg.img2img.strength if cfg.mode == "img2img" else None,
                "conditioning_scale": cfg.controlnet.conditioning_scale if cfg.mode == "controlnet" else None,
                "resolution": self.resolution,
                "image_size": self.image_size,
                "identity_code_scale": cfg.identity_code_scale,
                "latent_variation": cfg.latent_variation,
                "geometry": "renderer" if g is not None else "unknown",
                "geometry_note": (
                    "landmarks/bbox/landmarks_3d are the procedural renderer's for this plan entry; the image "
                    f"was generated conditioned on them ({cfg.mode})"
                    if g is not None
                    else "txt2img: face geometry is not controlled, landmarks/bbox are unknown (None)"
                ),
                "config": cfg.model_dump(mode="json"),
            }
        )
        s.params["diffusion"] = rec
        if not np.all(np.isfinite(img)):
            s.quarantine(STAGE, "pipeline produced non-finite pixels (fp16 overflow?)", check="output")
            return
        u8 = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
        s.image = resize_square(u8, self.image_size)
        if g is not None:
            src = g.image.shape[1]
            k = self.image_size / float(src)
            s.landmarks = (np.asarray(g.landmarks, np.float32) * k).astype(np.float32)
            s.visibility = None if g.visibility is None else np.asarray(g.visibility, bool).copy()
            s.bbox = None if g.bbox is None else tuple(float(v) * k for v in g.bbox)
            s.arrays = {name: np.asarray(a).copy() for name, a in g.arrays.items() if name != "depth"}  # depth: conditioning only
            if "render" in g.params:
                s.params["render"] = g.params["render"]


def reproduce(params: dict[str, Any], procedural_config=None) -> FaceSample:
    """Re-generate one sample from its recorded ``params`` (plan entry + ``params["diffusion"]``).

    Loads the recorded model/config, checks the loaded model's config hash against the recorded one
    (a different model at the same path is an error, not a silently different image) and generates
    the sample alone.
    """
    d = params.get("diffusion")
    if not d or "config" not in d:
        raise ValueError("params has no 'diffusion.config' record; was this sample made by the diffusion backend?")
    cfg = DiffusionConfig.model_validate(d["config"])
    gen = DiffusionGenerator(cfg, d["image_size"], procedural_config)
    gen.setup()
    if gen.info["config_hash"] != d.get("config_hash"):
        raise ValueError(
            f"model {cfg.model!r} now has config hash {gen.info['config_hash'][:12]}, the sample recorded "
            f"{str(d.get('config_hash'))[:12]}: a different model, cannot reproduce"
        )
    entry = {k: v for k, v in params.items() if k not in ("diffusion", "render")}
    return gen.generate([entry])[0]
