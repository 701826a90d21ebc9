"""Identities in Stable Diffusion (SynFace-style) and the per-image conditioning, mixup included.

An identity is (demographic prompt words + identity code words chosen from its seed) + an identity
code added to the prompt embeddings + an initial latent drawn from its seed. A mixed identity
interpolates its two parents' prompt embeddings linearly and slerps their initial latents with weight
``lam`` (0 -> identity a, 1 -> identity b). :class:`Conditioner` turns one plan entry into prompt
embeddings, the initial latent, the per-image seed and the record of all three; it is the same for
every generation mode.
"""

from __future__ import annotations

import hashlib
from typing import Any

from dmsfactory.generators.diffusion.config import DiffusionConfig
from dmsfactory.generators.diffusion.prompts import PromptBuilder

_SALT_LATENT = 0x5EED_1A7E
_SALT_CODE = 0xC0DE_1D
_SALT_VARIATION = 0x7A41


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
    import torch  # heavy (seconds to import): only when a model is loaded

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



class Conditioner:
    """Plan entry -> prompt embeddings + initial latent + seed + record, for a loaded pipeline ``pipe``."""

    def __init__(self, pipe, config: DiffusionConfig, prompts: PromptBuilder, device: str, tdtype, latent_size: int):
        self.pipe, self.config, self.prompts = pipe, config, prompts
        self.device, self.tdtype, self.latent_size = device, tdtype, latent_size
        self._embed_cache: dict[str, Any] = {}

    def embed(self, prompt: str):
        """Prompt embeddings (1, 77, D) on the pipeline device, each prompt encoded alone (cached)."""
        import torch  # heavy (seconds to import): only when a model is loaded

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

    def identity_code(self, identity_seed: int, emb):
        """The identity code: a seeded direction in the text-embedding space, scaled by the embeddings' std."""
        import torch  # heavy (seconds to import): only when a model is loaded

        if self.config.identity_code_scale == 0:
            return torch.zeros_like(emb)
        g = torch.Generator().manual_seed((int(identity_seed) ^ _SALT_CODE) % (2**63))
        z = torch.randn(emb.shape[-1], generator=g, dtype=torch.float32)
        std = float(emb[:, 1:].float().std())
        code = torch.zeros(emb.shape, dtype=torch.float32)
        code[:, 1:] = z * (self.config.identity_code_scale * std)  # not on the BOS token
        return code.to(device=emb.device, dtype=emb.dtype)

    def latent(self, identity_seed: int):
        import torch  # heavy (seconds to import): only when a model is loaded

        h = self.latent_size
        c = self.pipe.unet.config.in_channels
        g = torch.Generator().manual_seed((int(identity_seed) ^ _SALT_LATENT) % (2**63))
        return torch.randn((1, c, h, h), generator=g, dtype=torch.float32)

    def condition(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Prompt embeddings + initial latent + records for one plan entry (mixup handled here)."""
        import torch  # heavy (seconds to import): only when a model is loaded

        p = self.prompts.prompts_for(entry)
        mix = p["mixup"]
        neg_emb, _, _ = self.embed(p["negative_prompt"])
        if mix is None:
            iseed = int(entry["identity_seed"])
            emb, ntok, trunc = self.embed(p["prompt"])
            emb = emb + self.identity_code(iseed, emb)
            lat = self.latent(iseed)
            latent_seeds: Any = iseed
        else:
            m = entry["identity_params"]["mixup"]
            lam = float(mix["lam"])
            ea, na, ta = self.embed(mix["prompt_a"])
            eb, nb, tb = self.embed(mix["prompt_b"])
            ea = ea + self.identity_code(m["a_seed"], ea)
            eb = eb + self.identity_code(m["b_seed"], eb)
            if lam == 0.0:
                emb = ea
            elif lam == 1.0:
                emb = eb
            else:
                emb = ((1.0 - lam) * ea.float() + lam * eb.float()).to(ea.dtype)
            lat = slerp(self.latent(m["a_seed"]), self.latent(m["b_seed"]), lam)
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
