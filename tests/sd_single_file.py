"""Test helper: write a diffusers SD v1 pipeline folder as one original-layout (LDM) checkpoint file,
the kind users download as ``model.safetensors``, so the single-file loading path can be tested offline.

Only what the tiny models of ``scripts/make_tiny_models.py`` use: cross-attention UNet with any number
of blocks and ``layers_per_block``, the 4-level KL VAE with a mid-block attention, a CLIP text encoder.
"""

from __future__ import annotations

import json
from pathlib import Path

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
          "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{RESNET[head]}.{tail}"


def unet_key(k: str, n: int, up_types: list[str]) -> str:
    """diffusers UNet2DConditionModel key -> LDM ``model.diffusion_model`` key (``n`` = layers_per_block,
    ``up_types`` = the up block types: a block with attentions puts its upsampler third, else second)."""
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    for a, b in fixed.items():
        if k.startswith(a + "."):
            return b + k[len(a):]
    p = k.split(".")
    if p[0] == "down_blocks":
        i, kind = int(p[1]), p[2]
        if kind == "downsamplers":  # down_blocks.i.downsamplers.0.conv.*
            return f"input_blocks.{(i + 1) * (n + 1)}.0.op." + ".".join(p[5:])
        j, rest = int(p[3]), ".".join(p[4:])
        idx = 1 + i * (n + 1) + j
        return f"input_blocks.{idx}.0.{_resnet(rest)}" if kind == "resnets" else f"input_blocks.{idx}.1.{rest}"
    if p[0] == "mid_block":
        j, rest = int(p[2]), ".".join(p[3:])
        return f"middle_block.{2 * j}.{_resnet(rest)}" if p[1] == "resnets" else f"middle_block.1.{rest}"
    if p[0] == "up_blocks":
        i, kind = int(p[1]), p[2]
        if kind == "upsamplers":  # up_blocks.i.upsamplers.0.conv.*
            return f"output_blocks.{(n + 1) * i + n}.{2 if 'CrossAttn' in up_types[i] else 1}.conv." + ".".join(p[5:])
        j, rest = int(p[3]), ".".join(p[4:])
        idx = (n + 1) * i + j
        return f"output_blocks.{idx}.0.{_resnet(rest)}" if kind == "resnets" else f"output_blocks.{idx}.1.{rest}"
    raise KeyError(k)


def vae_key(k: str, n_blocks: int) -> str:
    """diffusers AutoencoderKL key -> LDM ``first_stage_model`` key."""
    p = k.split(".")
    if p[0] in ("quant_conv", "post_quant_conv"):
        return k
    side, rest = p[0], p[1:]
    if rest[0] in ("conv_in", "conv_out"):
        return k
    if rest[0] == "conv_norm_out":
        return f"{side}.norm_out." + ".".join(rest[1:])
    if rest[0] in ("down_blocks", "up_blocks"):
        i = int(rest[1])
        level = i if side == "encoder" else n_blocks - 1 - i
        name = "down" if side == "encoder" else "up"
        if rest[2] == "resnets":
            sub = ".".join(rest[4:]).replace("conv_shortcut", "nin_shortcut")
            return f"{side}.{name}.{level}.block.{rest[3]}.{sub}"
        sampler = "downsample" if side == "encoder" else "upsample"
        return f"{side}.{name}.{level}.{sampler}." + ".".join(rest[4:])
    if rest[0] == "mid_block":
        if rest[1] == "resnets":
            sub = ".".join(rest[3:]).replace("conv_shortcut", "nin_shortcut")
            return f"{side}.mid.block_{int(rest[2]) + 1}.{sub}"
        names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
        head = names[rest[3]]
        tail = rest[5:] if rest[3] == "to_out" else rest[4:]
        return f"{side}.mid.attn_1.{head}." + ".".join(tail)
    raise KeyError(k)


def write_single_file(sd_dir: Path, out: Path) -> Path:
    """Convert the pipeline folder ``sd_dir`` into one LDM-layout ``.safetensors`` file ``out``."""
    from safetensors.torch import load_file, save_file

    sd_dir = Path(sd_dir)
    ucfg = json.loads((sd_dir / "unet" / "config.json").read_text())
    n = int(ucfg["layers_per_block"])
    vcfg = json.loads((sd_dir / "vae" / "config.json").read_text())
    ckpt = {}
    unet = load_file(str(sd_dir / "unet" / "diffusion_pytorch_model.safetensors"))
    for k, v in unet.items():
        ckpt["model.diffusion_model." + unet_key(k, n, ucfg["up_block_types"])] = v.contiguous()
    vae = load_file(str(sd_dir / "vae" / "diffusion_pytorch_model.safetensors"))
    for k, v in vae.items():
        key = vae_key(k, len(vcfg["block_out_channels"]))
        if ".mid.attn_1." in key and key.endswith("weight") and v.ndim == 2:
            v = v[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        ckpt["first_stage_model." + key] = v.contiguous()
    text = load_file(str(sd_dir / "text_encoder" / "model.safetensors"))
    for k, v in text.items():
        key = k if k.startswith("text_model.") else "text_model." + k  # how SD v1 files name CLIP's weights
        ckpt["cond_stage_model.transformer." + key] = v.contiguous()
    save_file(ckpt, str(out))
    return out
