"""InST inference (paper section 3.3) on diffusers: the ``inst`` stylizer.

Per content image (float (H, W) in [0, 1], any size; padded by mirroring to a multiple of 8 and cropped
back): a style image is drawn and a content-sized random crop taken; both go through the frozen VAE
encoder (latent mean x scaling factor); AdaIN gives the content latent the style latent's per-channel
mean and standard deviation; it is noised to the DDIM timestep ``strength x steps`` of a ``steps``-step
schedule (0.7 x 50 = 35 denoising steps) and denoised with DDIM (``eta``) under classifier-free
guidance between the empty prompt and the prompt whose ``*`` is the style token (the mapper applied to
the style crop's CLIP image embedding); the VAE decodes, RGB is averaged to gray.

Seeds: each image's noise comes from its own generator (seeded from its numpy generator), so results
do not depend on the batch size. fp16 on CUDA (VAE kept fp32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cellxfer.errors import InputError
from cellxfer.stylize.base import StyleSet, crop_like
from cellxfer.stylize.config import InSTConfig


@dataclass
class InSTContext:
    sd: Any
    clip: Any
    mapper: Any
    style: StyleSet
    token_id: int
    cond_ids: Any
    uncond_ids: Any


def prepare(config: InSTConfig, style: StyleSet) -> InSTContext:
    from cellxfer.stylize.mapper import load_token, placeholder_id, tokenize
    from cellxfer.stylize.models import load_clip, load_sd, pick_device

    mapper, meta = load_token(config.token)  # cheap checks first
    if "*" not in config.prompt.split():
        raise InputError(f"--prompt {config.prompt!r} must contain the placeholder '*' as a word")
    device, dtype = pick_device(config.device, config.precision)
    sd = load_sd(config.model, device, dtype, model_config=config.model_config or None)
    clip = load_clip(config.clip, device, dtype)
    spec = mapper.spec
    if spec["text_width"] != sd.text_width or spec["image_dim"] != clip.dim:
        raise InputError(
            f"{config.token}: token made for text width {spec['text_width']} and CLIP width {spec['image_dim']}, "
            f"but --model has {sd.text_width} and --clip {clip.dim}; use a token learned with these models"
        )
    token_id = placeholder_id(sd.tokenizer, "*", config.model)
    return InSTContext(sd, clip, mapper.to(device).eval(), style, token_id,
                       tokenize(sd.tokenizer, [config.prompt]), tokenize(sd.tokenizer, [""]))


def adain(content, style, eps: float = 1e-5):
    """Per-sample, per-channel AdaIN of (B, C, h, w) latents: content normalised, given style's mean/sd."""
    cm, cs = content.mean((2, 3), keepdim=True), content.std((2, 3), keepdim=True)
    sm, ss = style.mean((2, 3), keepdim=True), style.std((2, 3), keepdim=True)
    return (content - cm) / (cs + eps) * ss + sm


def _pad8(x: np.ndarray) -> np.ndarray:
    h, w = x.shape
    return np.pad(x, ((0, -h % 8), (0, -w % 8)), mode="symmetric")


def stylize_batch(images: list[np.ndarray], ctx: InSTContext, config: InSTConfig, rngs) -> list[np.ndarray]:
    """Stylize same-shaped float images (see module docs)."""
    import torch
    from diffusers import DDIMScheduler

    sd = ctx.sd
    dev, dtype = sd.device, sd.dtype
    h, w = images[0].shape
    content = np.stack([_pad8(im) for im in images])
    style = np.stack([_pad8(crop_like(ctx.style.unit(ctx.style.pick(r)), (h, w), r)) for r in rngs])
    gens = [torch.Generator("cpu").manual_seed(int(r.integers(0, 2**63 - 1))) for r in rngs]
    b = len(images)
    with torch.no_grad():
        def encode(arr):
            x = torch.from_numpy(arr)[:, None].to(dev).float().mul(2).sub(1).expand(-1, 3, -1, -1)
            return sd.vae.encode(x).latent_dist.mean * sd.scaling_factor

        z = adain(encode(content), encode(style))
        token = ctx.mapper(ctx.clip.embed(torch.from_numpy(style)))
        from cellxfer.stylize.mapper import encode_prompt

        cond = encode_prompt(sd.text_encoder, ctx.cond_ids.expand(b, -1), ctx.token_id, token)
        uncond = encode_prompt(sd.text_encoder, ctx.uncond_ids.expand(b, -1))
        text = torch.cat([uncond, cond]).to(dtype)

        sched = DDIMScheduler.from_config(sd.scheduler_config)
        sched.set_timesteps(config.steps, device=dev)
        n_run = min(int(config.steps * config.strength), config.steps)
        timesteps = sched.timesteps[config.steps - n_run:]
        noise = torch.cat([torch.randn((1, *z.shape[1:]), generator=g) for g in gens]).to(dev)
        if n_run:
            z = sched.add_noise(z, noise, timesteps[:1].repeat(b))
        z = z.to(dtype)
        step_gen = gens[0] if config.eta > 0 else None
        for t in timesteps:
            eps = sd.unet(torch.cat([z, z]), t, encoder_hidden_states=text).sample
            e_u, e_c = eps.chunk(2)
            eps = e_u + config.guidance * (e_c - e_u)
            z = sched.step(eps, t, z, eta=config.eta, generator=step_gen).prev_sample
        x = sd.vae.decode(z.float() / sd.scaling_factor).sample.float()
    gray = ((x.mean(1) + 1) / 2).clamp(0, 1).cpu().numpy()
    return [g[:h, :w].astype(np.float32) for g in gray]


def stylize(images, ctx: InSTContext, config: InSTConfig, rngs) -> list[np.ndarray]:
    """Group consecutive same-shaped images into batches for :func:`stylize_batch`."""
    out: list[np.ndarray] = []
    i = 0
    while i < len(images):
        j = i + 1
        while j < len(images) and images[j].shape == images[i].shape:
            j += 1
        out += stylize_batch(images[i:j], ctx, config, rngs[i:j])
        i = j
    return out


def estimate(config, shape: tuple[int, int]):
    """What one call costs on ``config.batch_size`` content images of ``shape`` (the largest), padded to a
    multiple of 8 (:func:`cellxfer.stylize.models.sd_bytes`), on the device that runs it."""
    from cellxfer.budget import Estimate
    from cellxfer.stylize.models import sd_bytes

    h, w = (-(-int(n) // 8) * 8 for n in shape)
    return Estimate(what=f"stylize --method inst on {w} x {h} content images, {config.batch_size} at a time",
                    fix="crop or downsample the content images (InST works at 512 px) or lower --batch-size",
                    bytes=sd_bytes(h * w, config.batch_size, config.precision == "fp16", training=False),
                    device=config.device)
