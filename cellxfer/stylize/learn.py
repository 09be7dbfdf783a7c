"""InST style-token training (``cellxfer learn-style``; paper section 3.2).

Per step (``batch_size`` style crops): a style image is drawn, a random ``size`` square crop taken
(random flips), VAE-encoded (frozen) to ``z0``; its CLIP image embedding goes through the
:class:`~cellxfer.stylize.mapper.StyleMapper` to the placeholder token's embedding, the prompt
(``*``) is encoded by the frozen text encoder with it; noise ``e`` and a timestep ``t ~ U[0, T)`` give
``z_t``, and the loss is ``|| unet(z_t, t, text) - e ||^2`` (the velocity for v-prediction models).
Only the mapper is trained (AdamW, ``lr``). Several style images share one token.

Resumable: every ``save_every`` steps the mapper, optimiser and every random state go to
``OUT.state.pt`` (atomic); a rerun with the same settings continues from there and reaches exactly the
token an uninterrupted run gives (on the CPU). The finished token is written to ``OUT`` with a manifest
beside it (``OUT`` with suffix ``.manifest.json``) and the state file removed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cellxfer.errors import InputError
from cellxfer.stylize.config import LearnStyleConfig


@dataclass(frozen=True)
class LearnResult:
    out: Path
    steps: int
    resumed_from: int
    loss: float  # mean loss of the last min(50, steps) steps
    seconds: float


def state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state.pt")


def manifest_path(out: Path) -> Path:
    return out.with_name(out.stem + ".manifest.json")


def _crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Random ``size`` square of float ``image`` (resized up first when smaller), random flips."""
    h, w = image.shape
    if min(h, w) < size:
        import torch
        import torch.nn.functional as F

        s = size / min(h, w)
        t = torch.from_numpy(image)[None, None]
        image = F.interpolate(t, size=(max(size, round(h * s)), max(size, round(w * s))), mode="bilinear",
                              align_corners=False)[0, 0].numpy()
        h, w = image.shape
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    crop = image[y:y + size, x:x + size]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1, :]
    return np.ascontiguousarray(crop)


def _identity(config: LearnStyleConfig, seed: int, style) -> dict:
    from cellxfer.manifest import config_dict

    cfg = config_dict(config)
    cfg.pop("save_every")
    return {"config": cfg, "seed": seed, "style": [str(p.resolve()) for p in style.paths]}


def learn_style(
    style: Sequence[str | os.PathLike],
    config: LearnStyleConfig,
    out: str | os.PathLike,
    seed: int = 0,
    overwrite: bool = False,
    on_progress: Callable[..., None] | None = None,
) -> LearnResult:
    """Train an InST style token on the real images ``style`` (folders and/or files) and write it to
    ``out`` (``.safetensors``). ``on_progress(n, loss=...)`` is called per step. Under torchrun the run
    is data-parallel (:mod:`cellxfer.train.distributed`): every random draw is made for the whole
    ``batch_size`` on every rank and each rank trains on its share; rank 0 writes and reports."""
    from cellxfer.train.distributed import distributed

    with distributed(config.device) as dist:
        dist.check_batch(config.batch_size)
        return _learn_style(style, config, Path(out), seed, overwrite, on_progress if dist.is_main else None, dist)


def _learn_style(style, config: LearnStyleConfig, out: Path, seed: int, overwrite: bool, on_progress, dist) -> LearnResult:
    import torch

    from cellxfer.stylize.base import StyleSet
    from cellxfer.stylize.mapper import StyleMapper, placeholder_id, tokenize
    from cellxfer.stylize.models import load_clip, load_sd, pick_device

    t0 = time.perf_counter()
    styles = StyleSet(style)
    identity = _identity(config, seed, styles)
    state_file = state_path(out)
    done = _check_out(out, identity, overwrite, dist)
    if done is not None:
        return LearnResult(out, config.steps, config.steps, float(done.get("loss", float("nan"))), 0.0)

    if "*" not in config.prompt.split():
        raise InputError(f"--prompt {config.prompt!r} must contain the placeholder '*' as a word")
    device, dtype = pick_device(dist.device, config.precision)
    sd = load_sd(config.model, device, dtype, model_config=config.model_config or None)
    clip = load_clip(config.clip, device, dtype)
    star = placeholder_id(sd.tokenizer, "*", config.model)
    from diffusers import DDPMScheduler

    noise_sched = DDPMScheduler.from_config(sd.scheduler_config)
    torch.manual_seed(seed)  # the mapper's initial weights, then dropout
    mapper = StyleMapper(clip.dim, sd.text_width, config.heads, config.dim_head, config.blocks, config.dropout).to(device)
    opt = torch.optim.AdamW(mapper.parameters(), lr=config.lr)
    # fp16 frozen networks on CUDA: scale the loss so small gradients survive the fp16 backward pass
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    gen = torch.Generator("cpu").manual_seed(seed)
    rng = np.random.default_rng(seed)
    start, losses = 0, []
    if state_file.is_file():
        start, losses = _restore(state_file, identity, mapper, opt, gen, scaler, rng, device)
    if on_progress and start:
        on_progress(start, loss=float(np.mean(losses[-50:])) if losses else float("nan"))
    dist.fork_torch_rng(seed, start)  # mapper dropout differs between ranks; rank 0 continues its stream
    mapper_net = dist.wrap(mapper)  # the training forward; mapper is saved
    B = config.batch_size
    rows = dist.shard(B)  # this rank's share of every step's crops (all of them in one process)
    ids = tokenize(sd.tokenizer, [config.prompt] * (rows.stop - rows.start))
    units = [styles.unit(i) for i in range(len(styles))]
    mapper.train()

    def save_state(step):
        if dist.is_main:
            _save_state(state_file, identity, step, losses, mapper, opt, gen, rng, scaler, device)

    t_loop = time.perf_counter()
    for step in range(start, config.steps):
        # every draw is made for all B crops (one stream on every rank), each rank keeps its rows
        crops = np.stack([_crop(units[int(rng.integers(0, len(units)))], config.size, rng) for _ in range(B)])
        x = torch.from_numpy(crops[rows])[:, None]
        loss = _diffusion_loss(x, sd, clip, mapper_net, noise_sched, gen, ids, star, rows, B, dtype, device)
        value = dist.mean(loss.item(), rows, B)
        if not np.isfinite(value):
            raise RuntimeError(f"loss became {value} at step {step + 1}; lower --lr or use --precision fp32")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss * dist.loss_weight(rows, B)).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(value)
        if on_progress:
            on_progress(1, loss=float(np.mean(losses[-50:])))
        if (step + 1) % config.save_every == 0 and step + 1 < config.steps:
            save_state(step + 1)

    loop_seconds = time.perf_counter() - t_loop
    mean_loss = float(np.mean(losses[-50:])) if losses else float("nan")
    if not dist.is_main:
        dist.barrier()  # rank 0 writes the token and manifest
        return LearnResult(out, config.steps, start, mean_loss, time.perf_counter() - t0)
    _finish(out, mapper, config, seed, identity, styles, sd, clip, losses, mean_loss, start, t0, loop_seconds, dist)
    state_file.unlink(missing_ok=True)
    dist.barrier()
    return LearnResult(out, config.steps, start, mean_loss, time.perf_counter() - t0)


def _diffusion_loss(x, sd, clip, mapper_net, noise_sched, gen, ids, star: int, rows: slice, B: int, dtype, device):
    """The denoising loss of one step on this rank's crops ``x`` (every random draw made for all ``B``
    crops from ``gen``, this rank keeping ``rows``), through the mapper's token: the section 3.2 objective."""
    import torch

    from cellxfer.stylize.mapper import encode_prompt

    T = int(noise_sched.config.num_train_timesteps)
    prediction = noise_sched.config.get("prediction_type", "epsilon")
    with torch.no_grad():
        pix = (x * 2 - 1).expand(-1, 3, -1, -1).to(device)
        post = sd.vae.encode(pix).latent_dist  # its .sample(gen), with the draw made for all B
        eps = torch.randn((B, *post.mean.shape[1:]), generator=gen, dtype=post.parameters.dtype)[rows]
        z0 = post.mean + post.std * eps.to(device)
        z0 = (z0 * sd.scaling_factor).to(dtype)
        img_emb = clip.embed(x[:, 0])
    noise = torch.randn((B, *z0.shape[1:]), generator=gen)[rows].to(device, dtype)
    t = torch.randint(0, T, (B,), generator=gen)[rows].to(device)
    zt = noise_sched.add_noise(z0, noise, t)
    target = noise if prediction == "epsilon" else noise_sched.get_velocity(z0, noise, t)
    token = mapper_net(img_emb)
    text = encode_prompt(sd.text_encoder, ids, star, token)
    pred = sd.unet(zt, t, encoder_hidden_states=text.to(dtype)).sample
    return torch.nn.functional.mse_loss(pred.float(), target.float())


def _check_out(out: Path, identity: dict, overwrite: bool, dist) -> dict | None:
    """Ready ``out`` (a token file): the manifest of a finished run with the same settings (nothing to
    do), None to train; an existing token of other settings is refused unless ``overwrite``."""
    from cellxfer.outputs import make_parent

    if out.suffix != ".safetensors":
        raise InputError(f"{out}: the token file name must end in .safetensors")
    make_parent(out)  # a bad --out is said now, not after minutes of loading Stable Diffusion
    if out.exists() and not overwrite:
        done = read_manifest_file(manifest_path(out))
        if done is not None and {k: done.get(k) for k in identity} == identity:
            return done
        raise InputError(f"{out}: exists (trained with other settings or without a manifest); pass --overwrite or pick another --out")
    if overwrite and dist.is_main:
        state_path(out).unlink(missing_ok=True)
    dist.barrier()
    return None


def _restore(state_file: Path, identity: dict, mapper, opt, gen, scaler, rng, device) -> tuple[int, list]:
    """Load a stopped run's state into the training objects; ``(step, losses)`` to continue from."""
    import torch

    state = torch.load(state_file, map_location="cpu", weights_only=True)  # tensors and plain data only
    if state.get("identity") != identity:
        raise InputError(f"{state_file}: a stopped learn-style run with other settings; delete it or pass --overwrite")
    mapper.load_state_dict(state["mapper"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    gen.set_state(state["gen"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rng.bit_generator.state = state["np_rng"]
    return int(state["step"]), list(state["losses"])


def _save_state(state_file: Path, identity: dict, step: int, losses: list, mapper, opt, gen, rng, scaler, device) -> None:
    import torch

    from cellxfer.atomic import atomic_path

    state = {"identity": identity, "step": step, "losses": losses, "mapper": mapper.state_dict(),
             "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(), "gen": gen.get_state(),
             "np_rng": rng.bit_generator.state, "scaler": scaler.state_dict() if scaler.is_enabled() else None,
             "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    with atomic_path(state_file) as tmp:
        torch.save(state, tmp)


def _finish(out: Path, mapper, config, seed, identity, styles, sd, clip, losses, mean_loss, start, t0, loop_seconds, dist) -> None:
    """Write the token and its manifest (rank 0)."""
    from cellxfer.atomic import write_json
    from cellxfer.manifest import build_manifest
    from cellxfer.stylize.mapper import save_token

    save_token(out, mapper, placeholder="*", prompt=config.prompt, steps=config.steps,
               model=sd.source, clip=clip.source, loss=mean_loss)
    manifest = build_manifest("learn-style", identity["config"], seed, inputs=[*styles.sources],
                              style=identity["style"], loss=mean_loss, losses=[round(v, 6) for v in losses],
                              resumed_from=start, seconds=round(time.perf_counter() - t0, 3),
                              seconds_per_step=round(loop_seconds / max(1, config.steps - start), 4), complete=True,
                              distributed=dist.describe())
    write_json(manifest_path(out), manifest)


def read_manifest_file(path: Path) -> dict | None:
    import json

    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
