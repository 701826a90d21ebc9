"""Tiny Stable-Diffusion-architecture pipelines built in code, for tests and offline demos.

No weights are downloaded: every component is initialised randomly from a fixed seed, saved with
``save_pretrained`` and meant to be loaded back through the very ``from_pretrained`` path a user's
real checkpoint takes. The images are noise-like (the weights are random); what the tiny models do
exercise is the plumbing: loading, prompt encoding, per-image seeds, batching, ControlNet, img2img,
identity mixup.

Command line (writes ``OUTDIR/sd`` — a full StableDiffusionPipeline directory — and
``OUTDIR/controlnet`` — a ControlNetModel directory that fits it)::

    python -m dmsfactory.generators.diffusion.tiny OUTDIR

The tokenizer is a byte-level CLIP BPE tokenizer built locally: every byte is a token, and merges
turn each word of the default prompt templates into one token, so prompts fit CLIP's 77 tokens much as
with the real vocabulary and different prompts give different token ids.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from dmsfactory.generators.diffusion.templates import DEFAULT_TEMPLATES

TEXT_DIM = 32


def _byte_unicode() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE (GPT-2/CLIP convention)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _template_words() -> list[str]:
    import re

    words = set()
    for text in DEFAULT_TEMPLATES.values():
        words.update(w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 1)
    return sorted(words)


def build_tokenizer():
    """Byte-level CLIP BPE: all 256 byte symbols, plus merges that make each template word one token."""
    from transformers import CLIPTokenizer  # heavy: transformers

    chars = _byte_unicode()
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges: list[tuple[str, str]] = []
    for w in _template_words():
        sym = list(w[:-1]) + [w[-1] + "</w>"]
        cur = sym[0]
        for nxt in sym[1:]:
            pair = (cur, nxt)
            cur = cur + nxt
            if cur not in vocab:
                vocab[cur] = len(vocab)
                merges.append(pair)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def build_components(seed: int = 0) -> dict:
    """Random-weight tiny UNet / VAE / CLIP text encoder / tokenizer / DDIM scheduler."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel  # heavy: diffusers
    from transformers import CLIPTextConfig, CLIPTextModel  # heavy: transformers

    tok = build_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=64,
    )
    torch.manual_seed(seed + 2)
    text_cfg = CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=TEXT_DIM,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        projection_dim=TEXT_DIM,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        layer_norm_eps=1e-5,
    )
    text_encoder = CLIPTextModel(text_cfg)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    for m in (unet, vae, text_encoder):
        m.eval()
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tok, "scheduler": scheduler}


def build_controlnet(unet, seed: int = 0, reinit_zero_convs: bool = True):
    """A ControlNet shaped for ``unet``; its zero-initialised output convs get random weights.

    A fresh ControlNet's output convolutions are zero, so its conditioning map has no effect at all;
    a test that claims the map changes the image must re-initialise them (``reinit_zero_convs``).
    """
    from diffusers import ControlNetModel  # heavy: diffusers

    torch.manual_seed(seed + 3)
    # the conditioning embedding must downsample by the VAE factor (2 for the tiny VAE): 2 stages
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    if reinit_zero_convs:
        g = torch.Generator().manual_seed(seed + 4)
        convs = list(cn.controlnet_down_blocks) + [cn.controlnet_mid_block, cn.controlnet_cond_embedding.conv_out]
        with torch.no_grad():
            for conv in convs:
                # large enough that the (mostly black) face map visibly moves the face region
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.5)
                conv.bias.zero_()
    cn.eval()
    return cn


def save_tiny(outdir: str | Path, seed: int = 0) -> dict[str, str]:
    """Write a tiny StableDiffusionPipeline to ``outdir/sd`` and a ControlNet to ``outdir/controlnet``."""
    from diffusers import StableDiffusionPipeline  # heavy: diffusers

    out = Path(outdir)
    comps = build_components(seed)
    pipe = StableDiffusionPipeline(
        **comps, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(out / "sd")
    build_controlnet(comps["unet"], seed).save_pretrained(out / "controlnet")
    return {"model": str(out / "sd"), "controlnet": str(out / "controlnet")}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m dmsfactory.generators.diffusion.tiny OUTDIR", file=sys.stderr)
        return 2
    paths = save_tiny(argv[0])
    print(f"tiny pipeline: {paths['model']}\ntiny controlnet: {paths['controlnet']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
