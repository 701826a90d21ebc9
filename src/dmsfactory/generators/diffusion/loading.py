"""Loading the Stable Diffusion pipeline and ControlNet with ``from_pretrained``, and their provenance.

Every load failure becomes one :class:`ModelNotAvailable` (a user error) whose message says how to
supply the model offline; :func:`config_hash` fingerprints the loaded architecture + scheduler so a
sample can be reproduced only by the same model.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from dmsfactory.errors import UserError
from dmsfactory.generators.diffusion.config import DiffusionConfig

SUPPORTED_PIPELINES = ("StableDiffusionPipeline",)


class ModelNotAvailable(UserError, RuntimeError):
    """The configured model (or ControlNet) cannot be loaded; the message says how to supply it."""


def how_to_supply(model: str, kind: str = "pipeline") -> str:
    cls = "StableDiffusionPipeline" if kind == "pipeline" else "ControlNetModel"
    return (
        f"Supply a local copy: on a machine with hub access run "
        f"`python -c \"from diffusers import {cls} as M; M.from_pretrained('{model}').save_pretrained('DIR')\"` "
        f"(or `huggingface-cli download {model} --local-dir DIR`), copy DIR here and set "
        f"`diffusion.{'model' if kind == 'pipeline' else 'controlnet.model'}: DIR` in the spec. "
        f"For an offline smoke test, `python -m dmsfactory.generators.diffusion.tiny DIR` writes a tiny "
        f"random-weight model to DIR/sd and DIR/controlnet."
    )


def looks_local(name: str) -> bool:
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


def resolve_device_dtype(cfg: DiffusionConfig):
    import torch  # heavy (seconds to import): only when a model is loaded

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


def scheduler_class(name: str):
    import diffusers  # heavy (seconds to import): only when a model is loaded

    return {
        "ddim": diffusers.DDIMScheduler,
        "euler": diffusers.EulerDiscreteScheduler,
        "euler_a": diffusers.EulerAncestralDiscreteScheduler,
        "dpm": diffusers.DPMSolverMultistepScheduler,
        "pndm": diffusers.PNDMScheduler,
        "unipc": diffusers.UniPCMultistepScheduler,
    }[name]


def load_pipeline(cfg: DiffusionConfig, tdtype):
    """The configured ``StableDiffusionPipeline`` (hub id or local ``save_pretrained`` directory)."""
    from diffusers import StableDiffusionPipeline  # heavy (seconds to import): only when a model is loaded

    name = cfg.model
    rev = f" (revision {cfg.revision})" if cfg.revision else ""
    if looks_local(name):
        path = Path(os.path.expanduser(name))
        if not path.is_dir():
            raise ModelNotAvailable(
                f"diffusion model {name!r}: local directory not found. " + how_to_supply("<hub-id>")
            )
        index = path / "model_index.json"
        if not index.is_file():
            raise ModelNotAvailable(
                f"diffusion model {name!r}: {index} is missing; the directory must be a diffusers pipeline "
                f"saved with save_pretrained. " + how_to_supply("<hub-id>")
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
            f"diffusion model {name!r}{rev} could not be loaded: {reason[:300]}. " + how_to_supply(name)
        ) from e

def load_controlnet(cfg: DiffusionConfig, tdtype):
    """The configured ``ControlNetModel`` (``diffusion.controlnet.model``)."""
    from diffusers import ControlNetModel  # heavy (seconds to import): only when a model is loaded

    cn = cfg.controlnet
    name = cn.model
    if looks_local(name) and not Path(os.path.expanduser(name)).is_dir():
        raise ModelNotAvailable(
            f"controlnet model {name!r}: local directory not found. " + how_to_supply("<hub-id>", "controlnet")
        )
    kwargs: dict[str, Any] = {"dtype": tdtype}
    if cn.revision:
        kwargs["revision"] = cn.revision
    if cfg.local_files_only or os.environ.get("HF_HUB_OFFLINE") == "1":
        kwargs["local_files_only"] = True
    try:
        return ControlNetModel.from_pretrained(os.path.expanduser(name), **kwargs)
    except Exception as e:  # noqa: BLE001
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelNotAvailable(
            f"controlnet model {name!r} could not be loaded: {reason[:300]}. " + how_to_supply(name, "controlnet")
        ) from e
