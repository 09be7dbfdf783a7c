"""InST style-token training (``cellxfer learn-style``; paper section 3.2).

Per step (``batch_size`` style crops): a style image is drawn, a random ``size`` square crop taken
(random flips), VAE-encoded (frozen) to ``z0``; its CLIP image embedding goes through the
:class:`~cellxfer.stylize.mapper.StyleMapper` to the placeholder token's embedding, the prompt
(``*``) is encoded by the frozen text encoder with it; noise ``e`` and a timestep ``t ~ U[0, T)`` give
``z_t``, and the loss is ``|| unet(z_t, t, text) - e ||^2`` (the velocity for v-prediction models).
Only the mapper is trained (AdamW, ``lr``). Several style images share one token.

``OUT`` is a run folder (:class:`cellxfer.runs.RunFolder`, the policy every trainer follows):
``token.safetensors`` (the token, :data:`TOKEN_FILE`), ``state.pt`` (mapper, optimiser and every random
state, written atomically every ``save_every`` steps and at the end), ``history.csv`` (step, loss) and
``manifest.json``. A rerun with the same settings and style images continues from ``state.pt`` and
reaches exactly the token an uninterrupted run gives (on the CPU); ``steps``, ``save_every`` and
``device`` may change on a rerun (more steps continue a finished run), other settings are refused
unless ``overwrite``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cellxfer.errors import InputError
from cellxfer.stylize.config import TOKEN_FILE, LearnStyleConfig, model_paths



@dataclass(frozen=True)
class LearnResult:
    """What :func:`learn_style` did: the run folder, steps done in all, the step this call started from
    (``steps`` when there was nothing to do), the mean loss of the last min(50, steps) steps, seconds."""

    out: Path
    steps: int
    resumed_from: int
    loss: float
    seconds: float

    @property
    def token(self) -> Path:
        return self.out / TOKEN_FILE

#: Config fields a rerun may change and still continue the run.
MUTABLE = ("steps", "save_every", "device")


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


def _run_folder(config: LearnStyleConfig, seed: int, out: Path, styles, overwrite: bool, main: bool):
    from cellxfer.manifest import config_dict
    from cellxfer.runs import RunFolder

    if out.suffix == ".safetensors":
        raise InputError(f"{out}: learn-style --out is a run folder (the token goes to OUT/{TOKEN_FILE}); "
                         f"give a folder, e.g. {out.with_suffix('')}")
    identity = {"config": config_dict(config), "seed": seed, **({"style_bits": styles.bits} if styles.bits else {})}
    return RunFolder(out, "learn-style", identity, own=(TOKEN_FILE,),
                     inputs=styles.sources, overwrite=overwrite, mutable=MUTABLE,
                     defaults=config_dict(LearnStyleConfig(model="", clip="")), main=main, protect=model_paths(config))


def estimate(config: LearnStyleConfig):
    """What one training step costs (:class:`cellxfer.budget.Estimate`; :func:`cellxfer.stylize.models.sd_bytes`
    on ``size`` crops), on the device that trains: a GPU's free memory, else this machine's."""
    from cellxfer.budget import Estimate
    from cellxfer.stylize.models import sd_bytes

    return Estimate(what=f"learn-style --size {config.size} --batch-size {config.batch_size} (Stable Diffusion "
                         f"on {config.size} px crops)",
                    fix="lower --size (512, the model's own, is the InST setting) or --batch-size",
                    bytes=sd_bytes(config.size ** 2, config.batch_size, config.precision == "fp16", training=True),
                    device=config.device)


def learn_style(
    style: Sequence[str | os.PathLike],
    config: LearnStyleConfig,
    out: str | os.PathLike,
    seed: int = 0,
    overwrite: bool = False,
    on_progress: Callable[..., None] | None = None,
) -> LearnResult:
    """Train an InST style token on the real images ``style`` (folders and/or files) in the run folder
    ``out`` (see the module docs; the token is ``out/token.safetensors``). ``on_progress(n, loss=...)`` is
    called per step. Under torchrun the run is data-parallel (:mod:`cellxfer.train.distributed`): every
    random draw is made for the whole ``batch_size`` on every rank and each rank trains on its share;
    rank 0 writes and reports."""
    from cellxfer.stylize.base import StyleSet
    from cellxfer.train.distributed import distributed

    if "*" not in config.prompt.split():
        raise InputError(f"--prompt {config.prompt!r} must contain the placeholder '*' as a word")
    from cellxfer.budget import check_estimate

    check_estimate(estimate(config))  # before a weight is loaded: a crop size that cannot train here
    styles = StyleSet(style)
    with distributed(config.device) as dist:
        dist.check_batch(config.batch_size)
        with _run_folder(config, seed, Path(out), styles, overwrite, dist.is_main) as run:
            dist.barrier()  # every rank has seen the folder as it was before rank 0 writes to it
            return _learn_in(run, styles, config, seed, on_progress if dist.is_main else None, dist)


def _mean_loss(losses: Sequence[float]) -> float:
    return float(np.mean(losses[-50:])) if len(losses) else float("nan")


def _learn_in(run, styles, config: LearnStyleConfig, seed: int, on_progress, dist) -> LearnResult:
    """Continue (or start) the run in ``run``: nothing to do when it has reached ``config.steps``; the
    models are loaded (and any bad path refused) before anything is written."""
    t0 = time.perf_counter()
    state = run.load_state()
    start = int(state["step"]) if state is not None else 0
    if start > config.steps:
        raise InputError(f"{run.out}: holds a learn-style run of {start} steps, more than --steps {config.steps}; "
                         f"give --steps {start} or more, or pass --overwrite to start again")
    if start == config.steps and run.path(TOKEN_FILE).is_file():
        return LearnResult(run.out, start, start, _mean_loss(state["losses"]), 0.0)
    parts = _Parts.build(config, seed, dist)
    manifest = run.write_manifest(run.manifest(), complete=False)
    losses = parts.restore(state) if state is not None else []
    if on_progress and start:
        on_progress(start, loss=_mean_loss(losses))
    t_loop = time.perf_counter()
    _train(parts, styles, config, seed, start, losses, run, on_progress, dist)
    loop_seconds = time.perf_counter() - t_loop
    mean_loss = _mean_loss(losses)
    if dist.is_main:
        from cellxfer.stylize.mapper import save_token

        save_token(run.path(TOKEN_FILE), parts.mapper, placeholder="*", prompt=config.prompt, steps=config.steps,
                   model=parts.sd.source, clip=parts.clip.source, loss=mean_loss)
        run.write_history([{"step": i + 1, "loss": v} for i, v in enumerate(losses)], ("step", "loss"))
        run.save_state(parts.state(config.steps, losses))  # kept: a rerun with more --steps continues from here
        run.write_manifest(manifest, complete=True, steps_done=config.steps, loss=mean_loss, resumed_from=start,
                           seconds=round(time.perf_counter() - t0, 3),
                           seconds_per_step=round(loop_seconds / max(1, config.steps - start), 4),
                           distributed=dist.describe())
    dist.barrier()
    return LearnResult(run.out, config.steps, start, mean_loss, time.perf_counter() - t0)


@dataclass
class _Parts:
    """The frozen networks and the trained, saved and restored objects of one run."""

    sd: Any
    clip: Any
    star: int
    noise_sched: Any
    mapper: Any
    opt: Any
    scaler: Any
    gen: Any
    rng: np.random.Generator
    device: Any
    dtype: Any

    @classmethod
    def build(cls, config: LearnStyleConfig, seed: int, dist) -> "_Parts":
        import torch
        from diffusers import DDPMScheduler

        from cellxfer.stylize.mapper import StyleMapper, placeholder_id
        from cellxfer.stylize.models import load_clip, load_sd, pick_device

        device, dtype = pick_device(dist.device, config.precision)
        sd = load_sd(config.model, device, dtype, model_config=config.model_config or None)
        clip = load_clip(config.clip, device, dtype)
        star = placeholder_id(sd.tokenizer, "*", config.model)
        noise_sched = DDPMScheduler.from_config(sd.scheduler_config)
        torch.manual_seed(seed)  # the mapper's initial weights, then dropout
        mapper = StyleMapper(clip.dim, sd.text_width, config.heads, config.dim_head, config.blocks, config.dropout).to(device)
        opt = torch.optim.AdamW(mapper.parameters(), lr=config.lr)
        # fp16 frozen networks on CUDA: scale the loss so small gradients survive the fp16 backward pass
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        return cls(sd, clip, star, noise_sched, mapper, opt, scaler, torch.Generator("cpu").manual_seed(seed),
                   np.random.default_rng(seed), device, dtype)

    def state(self, step: int, losses: list) -> dict:
        """Everything a continued run needs: tensors and plain data only (loaded with weights_only)."""
        import torch

        return {"step": step, "losses": list(losses), "mapper": self.mapper.state_dict(),
                "optimizer": self.opt.state_dict(), "torch_rng": torch.get_rng_state(), "gen": self.gen.get_state(),
                "np_rng": self.rng.bit_generator.state,
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}

    def restore(self, state: dict) -> list:
        """Load a stopped run's ``state``; its losses so far."""
        import torch

        self.mapper.load_state_dict(state["mapper"])
        self.opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.gen.set_state(state["gen"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.rng.bit_generator.state = state["np_rng"]
        return list(state["losses"])


def _train(p: _Parts, styles, config: LearnStyleConfig, seed: int, start: int, losses: list, run, on_progress, dist) -> None:
    """Steps ``start`` .. ``config.steps`` (appending to ``losses``), the state saved every ``save_every``."""
    import torch

    from cellxfer.stylize.mapper import tokenize

    dist.fork_torch_rng(seed, start)  # mapper dropout differs between ranks; rank 0 continues its stream
    mapper_net = dist.wrap(p.mapper)  # the training forward; p.mapper is saved
    B = config.batch_size
    rows = dist.shard(B)  # this rank's share of every step's crops (all of them in one process)
    ids = tokenize(p.sd.tokenizer, [config.prompt] * (rows.stop - rows.start))
    units = [styles.unit(i) for i in range(len(styles))]
    p.mapper.train()
    for step in range(start, config.steps):
        # every draw is made for all B crops (one stream on every rank), each rank keeps its rows
        crops = np.stack([_crop(units[int(p.rng.integers(0, len(units)))], config.size, p.rng) for _ in range(B)])
        x = torch.from_numpy(crops[rows])[:, None]
        loss = _diffusion_loss(x, p.sd, p.clip, mapper_net, p.noise_sched, p.gen, ids, p.star, rows, B, p.dtype, p.device)
        value = dist.mean(loss.item(), rows, B)
        if not np.isfinite(value):
            raise RuntimeError(f"loss became {value} at step {step + 1}; lower --lr or use --precision fp32")
        p.opt.zero_grad(set_to_none=True)
        p.scaler.scale(loss * dist.loss_weight(rows, B)).backward()
        p.scaler.step(p.opt)
        p.scaler.update()
        losses.append(value)
        if on_progress:
            on_progress(1, loss=_mean_loss(losses))
        if (step + 1) % config.save_every == 0 and step + 1 < config.steps:
            run.save_state(p.state(step + 1, losses))


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
