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

About 5 MB in all; the same seed gives the same weights. Nothing is downloaded. ``--full-size`` writes
the same layouts at Stable Diffusion v1 / CLIP ViT-L/14 sizes (random weights, about 5 GB) so that
speed and memory can be measured without the real weights.
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


FULL = dict(  # --full-size: Stable Diffusion v1 and CLIP ViT-L/14 shapes (random weights: timing only)
    vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, sample_size=512),
    unet=dict(sample_size=64, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
              down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
              up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
              cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32),
    text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=224, patch_size=14, projection_dim=768),
)


def build(out: Path, seed: int = 0, full_size: bool = False) -> tuple[Path, Path]:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    tiny = dict(
        vae=dict(block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=16, sample_size=64),
        unet=dict(sample_size=8, layers_per_block=1, block_out_channels=(32, 64),
                  down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                  cross_attention_dim=WIDTH, attention_head_dim=8, norm_num_groups=16),
        text=dict(hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
        vision=dict(hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    image_size=32, patch_size=8, projection_dim=WIDTH),
    )
    size = FULL if full_size else tiny
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, **size["vae"])
    torch.manual_seed(seed + 1)
    unet = UNet2DConditionModel(in_channels=4, out_channels=4, **size["unet"])
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **size["text"],
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
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**size["vision"]))
    clip = out / "clip"
    vision.save_pretrained(clip, safe_serialization=True)
    px = size["vision"]["image_size"]
    CLIPImageProcessor(size={"shortest_edge": px}, crop_size={"height": px, "width": px}).save_pretrained(clip)
    (out / "README.txt").write_text(
        f"{'Full-size' if full_size else 'Tiny'} random-initialised SD-v1-shaped models written by "
        f"scripts/make_tiny_models.py (seed {seed}). For tests and timing only: they produce noise, not style.\n"
    )
    return sd, clip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="Output folder (gets sd/ and clip/).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full-size", action="store_true",
                    help="SD v1 / CLIP ViT-L/14 sizes instead (random weights, about 5 GB): for timing only.")
    args = ap.parse_args(argv)
    sd, clip = build(args.out, args.seed, args.full_size)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(json.dumps({"sd": str(sd), "clip": str(clip), "bytes": size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
