#!/usr/bin/env python
"""Build tiny random-initialised Stable-Diffusion-v1-shaped models offline, for tests and dry runs.

    python scripts/make_tiny_models.py OUT_DIR [--seed 0]

Writes the layouts real users have:

* ``OUT_DIR/sd``: a diffusers pipeline folder (``model_index.json``; ``vae/``, ``unet/``,
  ``text_encoder/``, ``tokenizer/``, ``scheduler/``). VAE with 4 latent channels and 8x downsampling,
  a cross-attention UNet, a CLIP text encoder (width 32) with a CLIP byte-level BPE tokenizer (bytes
  only, no merges, so ``*`` is one token), SD v1's DDIM schedule.
* ``OUT_DIR/clip``: a CLIP image-encoder folder (``CLIPVisionModelWithProjection`` + its
  ``preprocessor_config.json``), projection width 32.

About 1 MB in all; the same seed gives the same weights. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

WIDTH = 32  # text width = cross-attention width = CLIP image projection width (768 in SD v1)


def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tiny_tokenizer():
    from transformers import CLIPTokenizer

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + len(chars) for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build(out: Path, seed: int = 0) -> tuple[Path, Path]:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=16, sample_size=64,
    )
    torch.manual_seed(seed + 1)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=WIDTH, attention_head_dim=8, norm_num_groups=16,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    scheduler = DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    sd = out / "sd"
    pipe.save_pretrained(sd, safe_serialization=True)

    torch.manual_seed(seed + 3)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8, projection_dim=WIDTH,
    ))
    clip = out / "clip"
    vision.save_pretrained(clip, safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(clip)
    (out / "README.txt").write_text(
        "Tiny random-initialised SD-v1-shaped models written by scripts/make_tiny_models.py "
        f"(seed {seed}). For tests only: they produce noise, not style.\n"
    )
    return sd, clip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="Output folder (gets sd/ and clip/).")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sd, clip = build(args.out, args.seed)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(json.dumps({"sd": str(sd), "clip": str(clip), "bytes": size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
