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

Identities (SynFace-style): an identity is (demographic prompt words + identity code words chosen
from its seed) + an identity code added to the prompt embeddings + an initial latent drawn from its
seed. A mixed identity interpolates the two parents' prompt embeddings linearly and slerps their
initial latents with weight ``lam`` (0 -> identity a, 1 -> identity b). All images of an identity
share its embeddings' identity part and its latent and differ in condition words (and, in
ControlNet/img2img modes, in the rendered geometry).

Labels are never parsed from prompts. In ``controlnet`` and ``img2img`` modes the landmarks, bbox and
3D landmarks are the procedural renderer's for the same plan entry (the image is conditioned on that
geometry); in ``txt2img`` mode the geometry is unknown and the sample's landmarks are None.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from dmsfactory.errors import ErrorPolicy, UserError, check_policy
from dmsfactory.generators.diffusion.condmap import draw_condition_map
from dmsfactory.generators.diffusion.config import DiffusionConfig
from dmsfactory.generators.diffusion.prompts import PromptBuilder
from dmsfactory.generators.procedural import ProceduralGenerator  # geometry for controlnet/img2img modes
from dmsfactory.generators.procedural.config import ProceduralConfig
from dmsfactory.generators.procedural.generator import depth_to_map
from dmsfactory.sample import CardSection, FaceSample

STAGE = "generate.diffusion"
_SALT_LATENT = 0x5EED_1A7E
_SALT_CODE = 0xC0DE_1D
_SALT_VARIATION = 0x7A41
SUPPORTED_PIPELINES = ("StableDiffusionPipeline",)


class ModelNotAvailable(UserError, RuntimeError):
    """The configured model (or ControlNet) cannot be loaded; the message says how to supply it."""


def _how_to_supply(model: str, kind: str = "pipeline") -> str:
    cls = "StableDiffusionPipeline" if kind == "pipeline" else "ControlNetModel"
    return (
        f"Supply a local copy: on a machine with hub access run "
        f"`python -c \"from diffusers import {cls} as M; M.from_pretrained('{model}').save_pretrained('DIR')\"` "
        f"(or `huggingface-cli download {model} --local-dir DIR`), copy DIR here and set "
        f"`diffusion.{'model' if kind == 'pipeline' else 'controlnet.model'}: DIR` in the spec. "
        f"For an offline smoke test, `python -m dmsfactory.generators.diffusion.tiny DIR` writes a tiny "
        f"random-weight model to DIR/sd and DIR/controlnet."
    )


def _looks_local(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", "\\"))
        or os.path.exists(os.path.expanduser(name))
        or name.count("/") > 1
        or "\\" in name
        or (len(name) > 1 and name[1] == ":")
    )


def _config_dict(obj: Any) -> dict:
    cfg = getattr(obj, "config", obj)
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    return {
        k: v
        for k, v in d.items()
        if not k.startswith("_") and k not in ("transformers_version", "name_or_path", "dtype", "torch_dtype")
    }


def config_hash(components: dict[str, Any]) -> str:
    """sha256 over the JSON of the components' configs (architecture + scheduler; paths excluded)."""
    blob = {name: _config_dict(c) for name, c in sorted(components.items()) if c is not None and hasattr(c, "config")}
    if "tokenizer" in components and components["tokenizer"] is not None:
        blob["tokenizer"] = {"vocab_size": len(components["tokenizer"]), "max_length": components["tokenizer"].model_max_length}
    text = json.dumps(blob, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def seed_for(entry: dict[str, Any]) -> tuple[int, str]:
    """The per-image seed: the plan's ``sample_seed``; else derived from the sample key."""
    if entry.get("sample_seed") is not None:
        return int(entry["sample_seed"]) % (2**63), "sample_seed"
    key = entry.get("key")
    if not key:
        raise ValueError("plan entry has neither 'sample_seed' nor 'key'")
    return int.from_bytes(hashlib.sha256(str(key).encode()).digest()[:8], "little") % (2**63), "key"


def slerp(a, b, t: float):
    """Spherical interpolation of two tensors (flattened); exact endpoints at t = 0 and t = 1."""
    import torch

    if t <= 0.0:
        return a.clone()
    if t >= 1.0:
        return b.clone()
    af, bf = a.flatten().double(), b.flatten().double()
    cos = torch.clamp(torch.dot(af, bf) / (af.norm() * bf.norm()), -1.0, 1.0)
    theta = torch.arccos(cos)
    if float(theta) < 1e-6:
        out = (1 - t) * af + t * bf
    else:
        s = torch.sin(theta)
        out = torch.sin((1 - t) * theta) / s * af + torch.sin(t * theta) / s * bf
    return out.to(a.dtype).reshape(a.shape)


def _resolve_device_dtype(cfg: DiffusionConfig):
    import torch

    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("diffusion.device is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'")
    dtype = cfg.dtype
    if dtype == "auto":
        dtype = "fp16" if device == "cuda" else "fp32"
    tdtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    return device, dtype, tdtype


def _scheduler_class(name: str):
    import diffusers

    return {
        "ddim": diffusers.DDIMScheduler,
        "euler": diffusers.EulerDiscreteScheduler,
        "euler_a": diffusers.EulerAncestralDiscreteScheduler,
        "dpm": diffusers.DPMSolverMultistepScheduler,
        "pndm": diffusers.PNDMScheduler,
        "unipc": diffusers.UniPCMultistepScheduler,
    }[name]


def _img2img_class():
    """Img2img pipeline whose added noise can be given per image (the identity's initial latent)."""
    from diffusers import StableDiffusionImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents

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
        import torch

        return torch.cat(xs, dim=0)

    return IdentityNoiseImg2ImgPipeline


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
        self._embed_cache: dict[str, Any] = {}
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------------ loading
    def setup(self) -> None:
        if self.pipe is not None:
            return
        import torch

        cfg = self.config
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        device, dtype_name, tdtype = _resolve_device_dtype(cfg)
        base = self._load_pipeline(tdtype)
        if cfg.scheduler != "default":
            base.scheduler = _scheduler_class(cfg.scheduler).from_config(base.scheduler.config)
        base.set_progress_bar_config(disable=True)
        comps = dict(base.components)
        controlnet = None
        if cfg.mode == "controlnet":
            from diffusers import StableDiffusionControlNetPipeline

            controlnet = self._load_controlnet(tdtype)
            comps.pop("controlnet", None)
            pipe = StableDiffusionControlNetPipeline(**comps, controlnet=controlnet, requires_safety_checker=False)
        elif cfg.mode == "img2img":
            pipe = _img2img_class()(**comps, requires_safety_checker=False)
        else:
            pipe = base
        pipe.set_progress_bar_config(disable=True)
        pipe.to(device)
        if device == "cuda" and cfg.channels_last:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
            if controlnet is not None:
                controlnet.to(memory_format=torch.channels_last)
        if cfg.compile:
            pipe.unet = torch.compile(pipe.unet)
        self.vae_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        if self.resolution % self.vae_factor:
            raise ValueError(f"generation size {self.resolution} must be a multiple of the VAE factor {self.vae_factor}")
        import diffusers

        self.pipe = pipe
        self.device, self.tdtype = device, tdtype
        cn_info = None
        if controlnet is not None:
            cn_info = {
                "model": cfg.controlnet.model,
                "revision": cfg.controlnet.revision,
                "config_hash": config_hash({"controlnet": controlnet}),
                "conditioning_scale": cfg.controlnet.conditioning_scale,
                "map_style": cfg.controlnet.map_style,
            }
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
            "controlnet": cn_info,
            "scheduler": cfg.scheduler,
            "scheduler_class": type(pipe.scheduler).__name__,
            "device": device,
            "dtype": dtype_name,
        }

    def _load_pipeline(self, tdtype):
        from diffusers import StableDiffusionPipeline

        cfg = self.config
        name = cfg.model
        rev = f" (revision {cfg.revision})" if cfg.revision else ""
        if _looks_local(name):
            path = Path(os.path.expanduser(name))
            if not path.is_dir():
                raise ModelNotAvailable(
                    f"diffusion model {name!r}: local directory not found. " + _how_to_supply("<hub-id>")
                )
            index = path / "model_index.json"
            if not index.is_file():
                raise ModelNotAvailable(
                    f"diffusion model {name!r}: {index} is missing; the directory must be a diffusers pipeline "
                    f"saved with save_pretrained. " + _how_to_supply("<hub-id>")
                )
            try:
                cls_name = json.loads(index.read_text()).get("_class_name")
            except (OSError, ValueError) as e:
                raise ModelNotAvailable(f"diffusion model {name!r}: cannot read {index}: {e}") from None
            if cls_name not in SUPPORTED_PIPELINES:
                raise ModelNotAvailable(
                    f"diffusion model {name!r} is a {cls_name}; this backend runs Stable Diffusion 1.x/2.x "
                    f"architectures ({', '.join(SUPPORTED_PIPELINES)})"
                )
            src = str(path)
        else:
            src = name
        kwargs: dict[str, Any] = {"dtype": tdtype, "safety_checker": None, "requires_safety_checker": False}
        if cfg.revision:
            kwargs["revision"] = cfg.revision
        if cfg.variant:
            kwargs["variant"] = cfg.variant
        if cfg.local_files_only or os.environ.get("HF_HUB_OFFLINE") == "1":
            kwargs["local_files_only"] = True
        try:
            return StableDiffusionPipeline.from_pretrained(src, **kwargs)
        except Exception as e:  # noqa: BLE001 - every load failure becomes one clear message
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelNotAvailable(
                f"diffusion model {name!r}{rev} could not be loaded: {reason[:300]}. " + _how_to_supply(name)
            ) from e

    def _load_controlnet(self, tdtype):
        from diffusers import ControlNetModel

        cn = self.config.controlnet
        name = cn.model
        if _looks_local(name) and not Path(os.path.expanduser(name)).is_dir():
            raise ModelNotAvailable(
                f"controlnet model {name!r}: local directory not found. " + _how_to_supply("<hub-id>", "controlnet")
            )
        kwargs: dict[str, Any] = {"dtype": tdtype}
        if cn.revision:
            kwargs["revision"] = cn.revision
        if self.config.local_files_only or os.environ.get("HF_HUB_OFFLINE") == "1":
            kwargs["local_files_only"] = True
        try:
            return ControlNetModel.from_pretrained(os.path.expanduser(name), **kwargs)
        except Exception as e:  # noqa: BLE001
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelNotAvailable(
                f"controlnet model {name!r} could not be loaded: {reason[:300]}. " + _how_to_supply(name, "controlnet")
            ) from e

    # ------------------------------------------------------------------ pieces
    def _embed(self, prompt: str):
        """Prompt embeddings (1, 77, D) on the pipeline device, each prompt encoded alone (cached)."""
        import torch

        hit = self._embed_cache.get(prompt)
        if hit is not None:
            return hit
        tok = self.pipe.tokenizer
        ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
        with torch.no_grad():
            emb = self.pipe.text_encoder(ids.input_ids.to(self.device))[0].to(self.tdtype)
        n_tokens = len(tok(prompt, truncation=False, verbose=False).input_ids)
        out = (emb, n_tokens, n_tokens > tok.model_max_length)
        if len(self._embed_cache) > 4096:
            self._embed_cache.clear()
        self._embed_cache[prompt] = out
        return out

    def _identity_code(self, identity_seed: int, emb):
        """The identity code: a seeded direction in the text-embedding space, scaled by the embeddings' std."""
        import torch

        if self.config.identity_code_scale == 0:
            return torch.zeros_like(emb)
        g = torch.Generator().manual_seed((int(identity_seed) ^ _SALT_CODE) % (2**63))
        z = torch.randn(emb.shape[-1], generator=g, dtype=torch.float32)
        std = float(emb[:, 1:].float().std())
        code = torch.zeros(emb.shape, dtype=torch.float32)
        code[:, 1:] = z * (self.config.identity_code_scale * std)  # not on the BOS token
        return code.to(device=emb.device, dtype=emb.dtype)

    def _latent(self, identity_seed: int):
        import torch

        h = self.resolution // self.vae_factor
        c = self.pipe.unet.config.in_channels
        g = torch.Generator().manual_seed((int(identity_seed) ^ _SALT_LATENT) % (2**63))
        return torch.randn((1, c, h, h), generator=g, dtype=torch.float32)

    def _condition(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Prompt embeddings + initial latent + records for one plan entry (mixup handled here)."""
        import torch

        p = self.prompts.prompts_for(entry)
        mix = p["mixup"]
        neg_emb, _, _ = self._embed(p["negative_prompt"])
        if mix is None:
            iseed = int(entry["identity_seed"])
            emb, ntok, trunc = self._embed(p["prompt"])
            emb = emb + self._identity_code(iseed, emb)
            lat = self._latent(iseed)
            latent_seeds: Any = iseed
        else:
            m = entry["identity_params"]["mixup"]
            lam = float(mix["lam"])
            ea, na, ta = self._embed(mix["prompt_a"])
            eb, nb, tb = self._embed(mix["prompt_b"])
            ea = ea + self._identity_code(m["a_seed"], ea)
            eb = eb + self._identity_code(m["b_seed"], eb)
            if lam == 0.0:
                emb = ea
            elif lam == 1.0:
                emb = eb
            else:
                emb = ((1.0 - lam) * ea.float() + lam * eb.float()).to(ea.dtype)
            lat = slerp(self._latent(m["a_seed"]), self._latent(m["b_seed"]), lam)
            ntok, trunc = max(na, nb), ta or tb
            latent_seeds = {"a": int(m["a_seed"]), "b": int(m["b_seed"])}
        seed, seed_source = seed_for(entry)
        if self.config.latent_variation > 0:
            g = torch.Generator().manual_seed((seed ^ _SALT_VARIATION) % (2**63))
            lat = slerp(lat, torch.randn(lat.shape, generator=g, dtype=torch.float32), self.config.latent_variation)
        return {
            "emb": emb,
            "neg": neg_emb,
            "latent": lat,
            "seed": seed,
            "record": {
                "prompt": p["prompt"],
                "negative_prompt": p["negative_prompt"],
                "prompt_tokens": ntok,
                "prompt_truncated": bool(trunc),
                "seed": seed,
                "seed_source": seed_source,
                "latent_seed": latent_seeds,
                "mixup": None
                if mix is None
                else {
                    "a": mix["a"],
                    "b": mix["b"],
                    "lam": float(mix["lam"]),
                    "prompt_a": mix["prompt_a"],
                    "prompt_b": mix["prompt_b"],
                    "embedding": "lerp",
                    "latent": "slerp",
                },
            },
        }

    def _geometry(self, entries: list[dict[str, Any]]) -> list[FaceSample]:
        if self._renderer is None:
            self._renderer = ProceduralGenerator(self.procedural_config or ProceduralConfig())
            if hasattr(self._renderer, "setup"):
                self._renderer.setup()
        depth = self.config.mode == "controlnet" and self.config.controlnet.map_style == "depth"
        return self._renderer.generate([copy.deepcopy(e) for e in entries], keep_depth=depth)

    def finalize(self, dataset_dir, records: list[dict[str, Any]]):
        """Stage hook: the dataset-card section (see :func:`card_section`)."""
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
        cfg = self.config
        samples = [self._base_sample(e, n) for n, e in enumerate(entries)]
        conds: list[dict | None] = []
        for s, e in zip(samples, entries):
            try:
                if "key" not in e:
                    raise ValueError("plan entry has no 'key'")
                conds.append(self._condition(e))
            except (KeyError, ValueError, TypeError) as err:
                if self.on_error == "raise":
                    raise
                s.quarantine(STAGE, f"bad plan entry: {err}", check="prompt")
                conds.append(None)
        geo: list[FaceSample | None] = [None] * len(entries)
        if cfg.mode in ("controlnet", "img2img"):
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
        import torch
        from PIL import Image

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
            if cfg.mode == "txt2img":
                res = self.pipe(height=R, width=R, latents=latents, **common)
            elif cfg.mode == "controlnet":
                maps = [self._control_map(g) for g in geos]
                for c, m in zip(conds, maps):
                    c["control_map"] = m
                res = self.pipe(
                    image=[Image.fromarray(m) for m in maps],
                    height=R,
                    width=R,
                    latents=latents,
                    controlnet_conditioning_scale=cfg.controlnet.conditioning_scale,
                    **common,
                )
            else:
                inits = [Image.fromarray(_resize(g.image, R)) for g in geos]
                self.pipe._noise = latents
                try:
                    res = self.pipe(image=inits, strength=cfg.img2img.strength, height=R, width=R, **common)
                finally:
                    self.pipe._noise = None
        imgs = np.asarray(res.images)
        return [imgs[i] for i in range(len(conds))]

    def _control_map(self, g: FaceSample) -> np.ndarray:
        cn = self.config.controlnet
        if cn.map_style == "depth":
            if "depth" not in g.arrays:
                raise RuntimeError("map_style 'depth' needs the renderer's depth buffer (ProceduralGenerator keep_depth)")
            return np.repeat(depth_to_map(g.arrays["depth"], self.resolution)[..., None], 3, axis=2)
        src = g.image.shape[1] if g.image is not None else self.image_size
        return draw_condition_map(g.landmarks, self.resolution, src, g.visibility, cn.map_style, cn.line_width)

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
        s.image = _resize(u8, self.image_size)
        if g is not None:
            src = g.image.shape[1]
            k = self.image_size / float(src)
            s.landmarks = (np.asarray(g.landmarks, np.float32) * k).astype(np.float32)
            s.visibility = None if g.visibility is None else np.asarray(g.visibility, bool).copy()
            s.bbox = None if g.bbox is None else tuple(float(v) * k for v in g.bbox)
            s.arrays = {name: np.asarray(a).copy() for name, a in g.arrays.items() if name != "depth"}  # depth: conditioning only
            if "render" in g.params:
                s.params["render"] = g.params["render"]


def card_section(records: list[dict[str, Any]]):
    """Dataset-card section for diffusion-made samples (``records``: the shard JSON documents)."""
    from collections import Counter


    recs = [r.get("params", {}).get("diffusion") for r in records]
    recs = [d for d in recs if d]
    if not recs:
        return None
    models = Counter((d.get("model"), d.get("revision"), d.get("config_hash", "")[:12]) for d in recs)
    modes = Counter(d.get("mode") for d in recs)
    geometry = Counter(d.get("geometry") for d in recs)
    cns = Counter(
        (d["controlnet"]["model"], d["controlnet"]["config_hash"][:12]) for d in recs if d.get("controlnet")
    )
    mixed = sum(1 for d in recs if d.get("mixup"))
    truncated = sum(1 for d in recs if d.get("prompt_truncated"))
    sched = Counter((d.get("scheduler"), d.get("steps"), d.get("guidance")) for d in recs)
    lines = [
        f"{len(recs)} samples generated with diffusers {recs[0].get('diffusers_version')}.",
        "",
        "| model | revision | config hash | samples |",
        "|---|---|---|---|",
    ]
    lines += [f"| {m} | {r or '-'} | {h} | {n} |" for (m, r, h), n in models.most_common()]
    lines += ["", "Modes: " + ", ".join(f"{k} {v}" for k, v in modes.most_common())]
    if cns:
        lines.append("ControlNet: " + ", ".join(f"{m} ({h}) {n}" for (m, h), n in cns.most_common()))
    lines.append("Scheduler / steps / guidance: " + ", ".join(f"{a} / {b} / {c}: {n}" for (a, b, c), n in sched.most_common()))
    lines.append(f"Mixed identities (SynFace mixup): {mixed} samples. Prompts truncated at 77 CLIP tokens: {truncated}.")
    lines.append(
        f"Geometry labels: {geometry.get('renderer', 0)} samples carry the procedural renderer's landmarks "
        f"(ControlNet/img2img); {geometry.get('unknown', 0)} txt2img samples have no geometry labels."
    )
    lines.append("Labels are computed from the plan parameters, never parsed from prompt words.")
    data = {
        "samples": len(recs),
        "models": [{"model": m, "revision": r, "config_hash": h, "samples": n} for (m, r, h), n in models.items()],
        "modes": dict(modes),
        "geometry": dict(geometry),
        "mixup_samples": mixed,
        "prompts_truncated": truncated,
    }
    return CardSection(title="Diffusion backend", markdown="\n".join(lines), data=data, json_name="diffusion.json")


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if img.shape[0] == size and img.shape[1] == size:
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(img, (size, size), interpolation=interp)


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
