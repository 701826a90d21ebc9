"""Diffusion throughput: our batched path vs a seed-style batch-1 fp32 loop, measured in one run.

GPU (CUDA available): SD-1.5- and SDXL-architecture models built from their published configs with
random weights (nothing is downloaded), 512² and 1024², ``--steps`` (default 25) steps.
  * baseline: the seed design's loop — one image per pipeline call, fp32, prompt strings.
  * ours:     fp16, channels-last UNet/VAE, SDPA attention (diffusers' default processor on
              torch 2), one CPU ``torch.Generator`` per image, ``--batch`` images per call,
              optional ``--compile`` (torch.compile of the UNet; warm-up excluded from timing).
    SD-1.5 goes through :class:`DiffusionGenerator` itself (the pipeline is saved and loaded back
    with ``from_pretrained``); SDXL, which the generator does not run, through
    ``StableDiffusionXLPipeline`` with the same recipe.
  Figures: images/s of both, the speedup (ratio, target >= 2x), peak GPU memory of each.

No GPU: a tiny CPU variant (the tiny random-weight pipeline of ``diffusion/tiny.py``, 64², fp32 on
both sides since CPU fp16 is not a speed path) — it says so in its output; its ratio only measures
batching on CPU and says nothing about GPU throughput.

The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import warnings

import torch

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _plan(n: int, size: int) -> list[dict]:
    from dmsfactory.plan import make_plan
    from dmsfactory.spec import parse_spec

    spec = parse_spec(
        {
            "name": "bench",
            "seed": 1,
            "classes": {"alert": 1, "mild_fatigue": 1, "severe_fatigue": 1, "distracted": 1, "phone": 1},
            "conditions": {"lighting": {"daylight": 1, "night_ir": 1}},
            "identities": {"count": max(2, (n + 1) // 2), "images_per_identity": 2},
            "splits": {"train": 1.0, "val": 0.0, "test": 0.0},
            "image": {"size": size},
            "backend": "diffusion",
            "diffusion": {"model": "bench"},
        }
    )
    return make_plan(spec)[:n]


# ------------------------------------------------------------------ model builders (random weights)
def _tokenizer():
    from dmsfactory.generators.diffusion.tiny import build_tokenizer

    return build_tokenizer()  # local byte-level BPE; ids are valid for the 49,408-token CLIP embedding


def _clip_text(hidden, inter, heads, layers, act, proj=None, with_projection=False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=inter, num_attention_heads=heads,
        num_hidden_layers=layers, max_position_embeddings=77, hidden_act=act, projection_dim=proj or hidden,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(cfg).eval()


def _vae(sample_size, scaling=0.18215):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=sample_size,
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=scaling,
    ).eval()


def _scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )


def build_sd15(device: str = "cpu"):
    """SD-1.5 architecture (runwayml v1-5 configs), random weights initialised on ``device``."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    sched, tok = _scheduler(), _tokenizer()  # outside the device context (CPU-side objects)
    with torch.device(device):
        unet, vae, te = _sd15_modules(UNet2DConditionModel)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )


def _sd15_modules(UNet2DConditionModel):
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
    ).eval()
    return unet, _vae(512), _clip_text(768, 3072, 12, 12, "quick_gelu")


def build_sdxl(device: str = "cpu"):
    """SDXL-base architecture (stabilityai sdxl-base-1.0 configs), random weights initialised on ``device``."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    sched, tok, tok2 = _scheduler(), _tokenizer(), _tokenizer()
    with torch.device(device):
        unet, vae, te, te2 = _sdxl_modules(UNet2DConditionModel)
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok2, unet=unet,
        scheduler=sched, add_watermarker=False,
    )


def _sdxl_modules(UNet2DConditionModel):
    unet = UNet2DConditionModel(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816, norm_num_groups=32,
    ).eval()
    return (
        unet,
        _vae(1024, 0.13025),
        _clip_text(768, 3072, 12, 12, "quick_gelu"),
        _clip_text(1280, 5120, 20, 32, "gelu", 1280, with_projection=True),
    )


# ------------------------------------------------------------------ timing helpers
def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_reset():
    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb():
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def baseline_loop(pipe, prompts, negs, seeds, size, steps, guidance, device):
    """Seed style: one image per call, prompt strings, fp32."""
    _sync()
    t = time.perf_counter()
    for p, n, s in zip(prompts, negs, seeds):
        g = torch.Generator("cpu").manual_seed(s)
        pipe(prompt=p, negative_prompt=n, height=size, width=size, num_inference_steps=steps,
             guidance_scale=guidance, generator=g, output_type="np")
    _sync()
    return len(prompts) / (time.perf_counter() - t)


def sdxl_batched(pipe, prompts, negs, seeds, size, steps, guidance, batch):
    _sync()
    t = time.perf_counter()
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator("cpu").manual_seed(s) for s in seeds[i : i + batch]]
        pipe(prompt=prompts[i : i + batch], negative_prompt=negs[i : i + batch], height=size, width=size,
             num_inference_steps=steps, guidance_scale=guidance, generator=gens, output_type="np")
    _sync()
    return len(prompts) / (time.perf_counter() - t)


def _prompts(entries):
    from dmsfactory.generators.diffusion.prompts import PromptBuilder
    from dmsfactory.generators.diffusion.generator import seed_for

    pb = PromptBuilder(base_negative="cartoon, blurry")
    ps = [pb.prompts_for(e) for e in entries]
    return [p["prompt"] for p in ps], [p["negative_prompt"] for p in ps], [seed_for(e)[0] for e in entries]


# ------------------------------------------------------------------ GPU benchmark
def run_sd15_gpu(args) -> dict:
    from diffusers import StableDiffusionPipeline

    from dmsfactory.generators.diffusion import DiffusionConfig, DiffusionGenerator

    size, steps, guidance = 512, args.steps, 7.0
    torch.manual_seed(0)
    pipe = build_sd15("cuda")  # random weights initialised on the GPU (much faster than on CPU)
    with tempfile.TemporaryDirectory() as d:
        pipe.save_pretrained(d)
        del pipe
        gc.collect()
        # baseline: fp32 batch-1 loop
        base = StableDiffusionPipeline.from_pretrained(d, safety_checker=None, requires_safety_checker=False).to("cuda")
        base.set_progress_bar_config(disable=True)
        nb = args.baseline_images
        entries = _plan(max(nb, 2 * args.batch), size)
        prompts, negs, seeds = _prompts(entries[:nb])
        baseline_loop(base, prompts[:1], negs[:1], seeds[:1], size, 2, guidance, "cuda")  # warm-up
        _peak_reset()
        base_ips = baseline_loop(base, prompts, negs, seeds, size, steps, guidance, "cuda")
        base_mem = _peak_gb()
        del base
        _peak_reset()
        # ours: the generator (fp16, channels-last, SDPA, per-image generators, batched)
        cfg = DiffusionConfig(model=d, device="cuda", dtype="fp16", steps=steps, guidance=guidance,
                              scheduler="default", batch_size=args.batch, compile=args.compile)
        gen = DiffusionGenerator(cfg, size)
        gen.setup()
        warm = DiffusionConfig(**{**cfg.model_dump(), "steps": 2})
        gen.config = warm  # warm-up (and torch.compile) with 2 steps on one full batch
        gen.generate(entries[: args.batch])
        gen.config = cfg
        _peak_reset()
        _sync()
        t = time.perf_counter()
        out = gen.generate(entries[: 2 * args.batch])
        _sync()
        ours_ips = len(out) / (time.perf_counter() - t)
        ours_mem = _peak_gb()
        nonfinite = sum(s.quarantined for s in out)
    return {
        "resolution": size, "steps": steps, "batch": args.batch, "compile": args.compile,
        "baseline_img_s": round(base_ips, 3), "ours_img_s": round(ours_ips, 3),
        "speedup": round(ours_ips / base_ips, 2),
        "peak_gpu_gb_baseline": base_mem, "peak_gpu_gb_ours": ours_mem,
        "quarantined_nonfinite": nonfinite,
    }


def run_sdxl_gpu(args) -> dict:
    size, steps, guidance = 1024, args.steps, 5.0
    torch.manual_seed(0)
    pipe = build_sdxl("cuda")
    pipe.set_progress_bar_config(disable=True)
    nb = args.baseline_images_xl
    entries = _plan(max(nb, 2 * args.batch_xl), size)
    prompts, negs, seeds = _prompts(entries)
    pipe.to("cuda")
    baseline_loop(pipe, prompts[:1], negs[:1], seeds[:1], size, 2, guidance, "cuda")
    _peak_reset()
    base_ips = baseline_loop(pipe, prompts[:nb], negs[:nb], seeds[:nb], size, steps, guidance, "cuda")
    base_mem = _peak_gb()
    pipe.to(torch.float16)
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    if args.compile:
        pipe.unet = torch.compile(pipe.unet)
    n = 2 * args.batch_xl
    sdxl_batched(pipe, prompts[: args.batch_xl], negs[: args.batch_xl], seeds[: args.batch_xl], size, 2, guidance,
                 args.batch_xl)
    _peak_reset()
    ours_ips = sdxl_batched(pipe, prompts[:n], negs[:n], seeds[:n], size, steps, guidance, args.batch_xl)
    ours_mem = _peak_gb()
    return {
        "resolution": size, "steps": steps, "batch": args.batch_xl, "compile": args.compile,
        "baseline_img_s": round(base_ips, 3), "ours_img_s": round(ours_ips, 3),
        "speedup": round(ours_ips / base_ips, 2),
        "peak_gpu_gb_baseline": base_mem, "peak_gpu_gb_ours": ours_mem,
        "path": "StableDiffusionXLPipeline with the generator's recipe (the generator runs SD 1.x/2.x only)",
    }


# ------------------------------------------------------------------ CPU tiny variant
def run_cpu_tiny(args) -> dict:
    from diffusers import StableDiffusionPipeline

    from dmsfactory.generators.diffusion import DiffusionConfig, DiffusionGenerator
    from dmsfactory.generators.diffusion.tiny import save_tiny

    torch.set_num_threads(1)
    size, steps, guidance, n = 64, 10, 5.0, args.cpu_images
    with tempfile.TemporaryDirectory() as d:
        paths = save_tiny(d)
        entries = _plan(n, size)
        prompts, negs, seeds = _prompts(entries)
        base = StableDiffusionPipeline.from_pretrained(paths["model"], safety_checker=None, requires_safety_checker=False)
        base.set_progress_bar_config(disable=True)
        baseline_loop(base, prompts[:2], negs[:2], seeds[:2], size, steps, guidance, "cpu")  # warm-up
        gen = DiffusionGenerator(
            DiffusionConfig(model=paths["model"], device="cpu", steps=steps, guidance=guidance, batch_size=args.batch),
            size,
        )
        gen.setup()
        gen.generate(entries[:2])
        # interleave repeats: the box is shared, so take the best of each
        b_runs, o_runs = [], []
        for _ in range(args.repeats):
            b_runs.append(baseline_loop(base, prompts, negs, seeds, size, steps, guidance, "cpu"))
            t = time.perf_counter()
            gen.generate(entries)
            o_runs.append(n / (time.perf_counter() - t))
    b, o = max(b_runs), max(o_runs)
    return {
        "resolution": size, "steps": steps, "batch": args.batch, "images": n, "repeats": args.repeats,
        "baseline_img_s": round(b, 2), "ours_img_s": round(o, 2), "speedup": round(o / b, 2),
        "baseline_runs": [round(x, 2) for x in b_runs], "ours_runs": [round(x, 2) for x in o_runs],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--batch", type=int, default=8, help="SD-1.5 (and CPU) images per call")
    ap.add_argument("--batch-xl", type=int, default=4, help="SDXL images per call")
    ap.add_argument("--baseline-images", type=int, default=4)
    ap.add_argument("--baseline-images-xl", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="torch.compile the UNet in our path")
    ap.add_argument("--only", choices=["sd15", "sdxl"], default=None)
    ap.add_argument("--cpu-images", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    result: dict = {"benchmark": "diffusion_gpu", "target_speedup": 2.0}
    if torch.cuda.is_available():
        result["device"] = torch.cuda.get_device_name(0)
        result["variant"] = "gpu"
        runs = {}
        if args.only in (None, "sd15"):
            runs["sd15_512"] = run_sd15_gpu(args)
            print("sd15:", runs["sd15_512"], file=sys.stderr)
            gc.collect()
            torch.cuda.empty_cache()
        if args.only in (None, "sdxl"):
            runs["sdxl_1024"] = run_sdxl_gpu(args)
        result["results"] = runs
        result["meets_target"] = all(r["speedup"] >= 2.0 for r in runs.values())
    else:
        print("no CUDA device: running the tiny CPU variant (64², tiny random-weight model); "
              "it measures batching on CPU only, not GPU throughput", file=sys.stderr)
        result["device"] = "cpu"
        result["variant"] = "cpu-tiny (no GPU: GPU figures not measured)"
        result["results"] = {"tiny_64": run_cpu_tiny(args)}
        result["meets_target"] = None
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
