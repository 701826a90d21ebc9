"""The diffusion route (``--backend diffusion``), after DiffPrivacy: invert the real face crop with
DDIM into a noise map, denoise it with an identity-shifted prompt embedding chosen away from the
original's dlib descriptor, and keep the noise map + embedding as keys.

1. **Crop**: a similarity transform puts the eye centres, nose tip and mouth corners at fixed places
   of a ``resolution`` x ``resolution`` crop.
2. **Inversion**: the VAE encodes the crop (posterior mean); DDIM runs backwards over the lowest
   ``strength`` x ``steps`` timesteps conditioned on the prompt's embedding ``e``, giving ``z_T``.
3. **Identity-guided denoising**: DDIM (eta 0) runs forwards from ``z_T`` with ``e + u``, ``u`` a
   direction in the text-embedding space of norm ``identity_shift`` x std(e) (start token
   excluded). At each of the first ``guided_steps`` steps, ``guidance_candidates`` directions are
   tried: each one's predicted clean image is decoded and described by dlib, and the direction
   farthest from the original's descriptor is kept (gradient-free guidance: dlib has no gradient
   here; DiffPrivacy differentiates a face recogniser instead).
4. **Keys**: ``z_T`` and ``e`` (float16) go into the encrypted recovery record; denoising ``z_T`` with
   ``e`` gives back an approximation of the original crop (:func:`reconstruct`), while the record's
   pixels give it back exactly.

Models are configuration: ``diffusion.model`` must be a local ``StableDiffusionPipeline`` directory
(loaded through the factory's diffusion backend, so a missing or wrong directory raises
``ModelNotAvailable`` with how to supply one). Tests use the tiny random-weight pipelines of
``dmsfactory.generators.diffusion.tiny``: they exercise the plumbing, not the image quality.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from dmsfactory.anonymize.compose import similarity
from dmsfactory.anonymize.config import DiffusionAnonConfig
from dmsfactory.generators.diffusion.config import DiffusionConfig
from dmsfactory.generators.diffusion.loading import ModelNotAvailable

# crop template (fractions of the crop side): image-left eye, image-right eye, nose tip, mouth corners
TEMPLATE = np.array([[0.34, 0.40], [0.66, 0.40], [0.50, 0.58], [0.38, 0.74], [0.62, 0.74]])
_SALT = 0xD1FF


def five_points(lm: np.ndarray) -> np.ndarray:
    p = np.asarray(lm, float)
    return np.stack([p[[33, 133]].mean(0), p[[362, 263]].mean(0), p[1], p[61], p[291]])


def crop_transform(lm: np.ndarray, size: int) -> np.ndarray:
    """2x3 similarity taking frame pixels to the aligned crop."""
    return similarity(five_points(lm), TEMPLATE * size)


@dataclass
class DiffusionResult:
    crop: np.ndarray  # uint8 RGB, the anonymised crop
    keys: bytes  # npz: z_T (float16), embedding (float16), direction (float16)
    record: dict[str, Any] = field(default_factory=dict)


class DiffusionAnonymizer:
    def __init__(self, config: DiffusionAnonConfig):
        self.cfg = config
        self.gen = None

    def setup(self) -> None:
        if self.gen is not None:
            return
        from dmsfactory.generators.diffusion import DiffusionGenerator  # heavy: torch, diffusers

        if not self.cfg.model:
            raise ModelNotAvailable("--backend diffusion: no model given; set diffusion.model (--diffusion-model) to a "
                                    "local StableDiffusionPipeline directory. Nothing is downloaded. For a smoke test: "
                                    "`python -m dmsfactory.generators.diffusion.tiny DIR`, then DIR/sd")
        dc = DiffusionConfig(model=self.cfg.model, scheduler="ddim", steps=self.cfg.steps, guidance=1.0,
                             device=self.cfg.device, local_files_only=True, resolution=self.cfg.resolution)
        self.gen = DiffusionGenerator(dc, image_size=self.cfg.resolution)
        self.gen.setup()
        self.pipe = self.gen.pipe
        self.device, self.dtype = self.gen.device, self.gen.tdtype
        self.model_info = {k: self.gen.info.get(k) for k in ("model", "config_hash", "pipeline", "device", "dtype")}

    # ------------------------------------------------------------------ pieces
    def _embed(self, prompt: str):
        return self.gen.conditioner.embed(prompt)[0]

    def _encode(self, crop: np.ndarray):
        import torch  # heavy: torch

        x = torch.from_numpy(crop.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None].to(self.device, self.dtype)
        with torch.no_grad():
            z = self.pipe.vae.encode(x).latent_dist.mean
        return z * self.pipe.vae.config.scaling_factor

    def _decode(self, z) -> np.ndarray:
        import torch  # heavy: torch

        with torch.no_grad():
            x = self.pipe.vae.decode(z / self.pipe.vae.config.scaling_factor).sample
        x = ((x[0].float().permute(1, 2, 0).cpu().numpy() + 1.0) * 127.5).clip(0, 255)
        return np.ascontiguousarray(np.round(x).astype(np.uint8))

    def _timesteps(self) -> list[int]:
        sch = self.pipe.scheduler
        sch.set_timesteps(self.cfg.steps)
        ts = [int(t) for t in sch.timesteps]  # descending
        n = max(1, int(round(self.cfg.steps * self.cfg.strength)))
        return ts[-n:]  # the n lowest noise levels, descending

    def _eps(self, z, t: int, emb):
        import torch  # heavy: torch

        with torch.no_grad():
            return self.pipe.unet(z, t, encoder_hidden_states=emb).sample

    def _ac(self, t: int | None) -> float:
        return 1.0 if t is None else float(self.pipe.scheduler.alphas_cumprod[t])

    def invert(self, z0, emb, ts: list[int]):
        """DDIM inversion over ``ts`` (descending list; walked upwards)."""
        z = z0
        a_prev = 1.0
        for t in reversed(ts):
            eps = self._eps(z, t, emb)
            a = self._ac(t)
            x0 = (z - (1 - a_prev) ** 0.5 * eps) / a_prev ** 0.5
            z = a ** 0.5 * x0 + (1 - a) ** 0.5 * eps
            a_prev = a
        return z

    def _step(self, z, t: int, t_next: int | None, emb):
        eps = self._eps(z, t, emb)
        a, a_n = self._ac(t), self._ac(t_next)
        x0 = (z - (1 - a) ** 0.5 * eps) / a ** 0.5
        return a_n ** 0.5 * x0 + (1 - a_n) ** 0.5 * eps, x0

    def denoise(self, zT, emb, ts: list[int], choose: Callable | None = None, directions=None) -> tuple[Any, list]:
        """DDIM from ``zT`` over ``ts`` (descending). ``choose(step, [x0 candidates]) -> index`` picks a
        direction at each of the first ``guided_steps`` steps among ``emb + directions[j]``."""
        z = zT
        log = []
        cur = emb if directions is None else emb + directions[0]
        for i, t in enumerate(ts):
            t_next = ts[i + 1] if i + 1 < len(ts) else None
            if choose is not None and directions is not None and i < self.cfg.guided_steps:
                cands = [self._step(z, t, t_next, emb + d) for d in directions]
                j, scores = choose(i, [x0 for _, x0 in cands])
                z = cands[j][0]
                cur = emb + directions[j]
                log.append({"step": i, "timestep": int(t), "distances": [round(float(s), 4) for s in scores], "chosen": int(j)})
            else:
                z, _ = self._step(z, t, t_next, cur)
        return z, log

    def directions(self, emb, seed: int) -> list:
        import torch  # heavy: torch

        std = float(emb[:, 1:].float().std())
        out = []
        for j in range(self.cfg.guidance_candidates):
            g = torch.Generator().manual_seed((int(seed) * 1000 + j) ^ _SALT)
            u = torch.randn(emb.shape[-1], generator=g, dtype=torch.float32)
            u = u / u.norm() * (self.cfg.identity_shift * std * emb.shape[-1] ** 0.5)
            d = torch.zeros(emb.shape, dtype=torch.float32)
            d[:, 1:] = u
            out.append(d.to(emb.device, emb.dtype))
        return out

    # ------------------------------------------------------------------ the route
    def anonymize_crop(self, crop: np.ndarray, seed: int, describe: Callable[[np.ndarray], np.ndarray] | None = None,
                       src_descriptor: np.ndarray | None = None) -> DiffusionResult:
        """Anonymise an aligned face crop (``resolution`` square, uint8 RGB)."""
        self.setup()
        R = self.cfg.resolution
        if crop.shape[:2] != (R, R):
            raise ValueError(f"crop must be {R}x{R}, got {crop.shape[:2]}")
        emb = self._embed(self.cfg.prompt)
        ts = self._timesteps()
        zT = self.invert(self._encode(crop), emb, ts)
        dirs = self.directions(emb, seed)
        choose = None
        if describe is not None and src_descriptor is not None and self.cfg.guided_steps > 0:
            def choose(step, x0s):
                d = [float(np.linalg.norm(describe(self._decode(x0)) - src_descriptor)) for x0 in x0s]
                return int(np.argmax(d)), d
        z, log = self.denoise(zT, emb, ts, choose, dirs)
        out = self._decode(z)
        chosen = log[-1]["chosen"] if log else 0
        buf = io.BytesIO()
        np.savez(buf, z_T=zT.float().cpu().numpy().astype(np.float16), embedding=emb.float().cpu().numpy().astype(np.float16),
                 direction=dirs[chosen].float().cpu().numpy().astype(np.float16), timesteps=np.array(ts))
        rec = {"backend": "diffusion", "model": self.model_info, "resolution": R, "steps": self.cfg.steps,
               "strength": self.cfg.strength, "inverted_timesteps": ts, "identity_shift": self.cfg.identity_shift,
               "guidance": log, "direction_index": chosen, "prompt": self.cfg.prompt,
               "keys": "z_T + embedding (+ chosen direction) in the encrypted recovery record"}
        return DiffusionResult(out, buf.getvalue(), rec)

    def reconstruct(self, keys: bytes) -> np.ndarray:
        """The crop regenerated from the keys alone: ``z_T`` denoised with the original embedding."""
        import torch  # heavy: torch

        self.setup()
        k = np.load(io.BytesIO(keys))
        zT = torch.from_numpy(k["z_T"].astype(np.float32)).to(self.device, self.dtype)
        emb = torch.from_numpy(k["embedding"].astype(np.float32)).to(self.device, self.dtype)
        ts = [int(t) for t in k["timesteps"]]
        z, _ = self.denoise(zT, emb, ts)
        return self._decode(z)
