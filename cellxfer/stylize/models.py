"""Loading Stable Diffusion v1 and a CLIP image encoder from local paths only, offline.

``HF_HUB_OFFLINE=1`` is set before diffusers / transformers are imported and every load passes
``local_files_only=True``: nothing is downloaded and nothing tries. Accepted:

* ``model``: a diffusers folder (``model_index.json`` with ``vae/``, ``unet/``, ``text_encoder/``,
  ``tokenizer/``, ``scheduler/``), or a single-file checkpoint (``.safetensors`` / ``.ckpt``), whose
  configs diffusers must find offline: pass ``model_config`` (a diffusers SD v1 folder; its weights are
  not read) when it cannot.
* ``clip``: a folder with a ``CLIPVisionModelWithProjection`` or a full ``CLIPModel`` (its vision
  tower and projection are used), plus ``preprocessor_config.json`` when present.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellxfer.errors import InputError

SD_NEED = ("a local Stable Diffusion v1 model: a diffusers folder (with model_index.json) "
           "or a single-file .safetensors/.ckpt checkpoint")
CLIP_NEED = "a local CLIP image-encoder folder (config.json + weights of CLIPVisionModelWithProjection or CLIPModel)"
COMPONENTS = ("vae", "unet", "text_encoder", "tokenizer", "scheduler")


def offline() -> None:
    """Forbid hub access for this process (must run before diffusers/transformers are imported)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _quiet() -> None:
    """No weight-loading progress bars (they would mix with cellxfer's own), and the libraries' errors only
    (their warnings would say, wrongly here, that they are "attempting to download" config files) unless
    the user set ``TRANSFORMERS_VERBOSITY``/``DIFFUSERS_VERBOSITY``. Set here, on the loggers: the
    environment reaches a library only when it is first imported, maybe before this process loads weights."""
    import transformers.utils.logging as tlog
    from diffusers.utils import logging as dlog

    for variable, log in (("TRANSFORMERS_VERBOSITY", tlog), ("DIFFUSERS_VERBOSITY", dlog)):
        log.disable_progress_bar()
        if not os.environ.get(variable):
            log.set_verbosity_error()


def pick_device(device: str = "auto", precision: str = "auto"):
    """``(torch.device, torch.dtype)``: auto = CUDA when present; fp16 only on CUDA."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device is available here; use --device cpu")
    dev = torch.device(device)
    if precision == "fp16" and dev.type != "cuda":
        raise InputError("--precision fp16 needs a CUDA device; use fp32 (or auto) on the CPU")
    half = precision == "fp16" or (precision == "auto" and dev.type == "cuda")
    return dev, (torch.float16 if half else torch.float32)


@dataclass
class SDModels:
    """Frozen SD v1 parts. ``vae`` stays fp32 (SD's VAE overflows in fp16); the others use ``dtype``."""

    vae: Any
    unet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict
    device: Any
    dtype: Any
    source: str

    @property
    def text_width(self) -> int:
        return int(self.text_encoder.config.hidden_size)

    @property
    def scaling_factor(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 0.18215))


def _check_dir_components(path: Path) -> None:
    if not (path / "model_index.json").is_file():
        raise InputError(f"{path}: no model_index.json; --model needs {SD_NEED}")
    missing = [c for c in COMPONENTS if not (path / c).is_dir()]
    if missing:
        raise InputError(f"{path}: the diffusers folder lacks {', '.join(m + '/' for m in missing)}; --model needs a complete SD v1 folder")


def sd_bytes(pixels: float, batch: int, half: bool, training: bool) -> float:
    """Memory one Stable Diffusion v1 call takes on ``batch`` images of ``pixels`` each, as a lower bound
    (a refusal on it means the call surely cannot fit; :mod:`cellxfer.budget`): the fp16 weights (~2 GB),
    activations growing with the latent's pixels (~3 GB per 512 x 512 image when training, ~1 GB in
    inference) and one copy of the self-attention scores of the first UNet level, ``8 heads x
    (pixels/64)^2`` values (4096 tokens at 512 px: 0.5 GB; 262144 at 4096 px: 2.2 TB); half in fp16."""
    tokens = pixels / 64
    per_image = (3e9 if training else 1e9) * pixels / 512 ** 2 + 8 * tokens ** 2 * 4
    return 2e9 + (0.5 if half else 1.0) * per_image * batch


def load_sd(model: str | os.PathLike, device="cpu", dtype=None, model_config: str | os.PathLike | None = None) -> SDModels:
    """Load SD v1 from ``model`` (see module docs), frozen, in eval mode, on ``device``."""
    offline()
    path = Path(model)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; --model needs {SD_NEED}")
    import torch

    dtype = dtype or torch.float32
    if path.is_dir():
        _check_dir_components(path)
    _quiet()
    try:
        if path.is_dir():
            _check_dir_components(path)
            from diffusers import AutoencoderKL, UNet2DConditionModel
            from transformers import CLIPTextModel, CLIPTokenizer

            kw = dict(local_files_only=True)
            vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **kw)
            unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kw)
            text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **kw)
            tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", **kw)
            sched = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
        elif path.suffix.lower() in (".safetensors", ".ckpt"):
            from diffusers import StableDiffusionPipeline

            kw = dict(local_files_only=True, safety_checker=None, requires_safety_checker=False)
            if model_config is not None:
                if not Path(model_config).is_dir():
                    raise InputError(f"{model_config}: no such folder; --model-config needs a diffusers SD v1 folder (configs and tokenizer)")
                kw["config"] = str(model_config)
            try:
                pipe = StableDiffusionPipeline.from_single_file(str(path), **kw)
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001 - diffusers raises many kinds offline
                raise InputError(
                    f"{path}: diffusers cannot build SD v1 from this single file offline ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:160]}); pass --model-config DIR (a diffusers SD v1 folder) or a diffusers folder as --model"
                ) from None
            vae, unet, text_encoder, tokenizer = pipe.vae, pipe.unet, pipe.text_encoder, pipe.tokenizer
            sched = dict(pipe.scheduler.config)
        else:
            raise InputError(f"{path}: not a folder nor a .safetensors/.ckpt file; --model needs {SD_NEED}")
    except InputError:
        raise
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot load Stable Diffusion from it ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                         f"--model needs {SD_NEED}") from None
    if getattr(unet.config, "cross_attention_dim", None) != text_encoder.config.hidden_size:
        raise InputError(f"{path}: UNet cross-attention width {unet.config.cross_attention_dim} != text encoder width "
                         f"{text_encoder.config.hidden_size}; not an SD v1 model")
    for m in (vae, unet, text_encoder):
        m.requires_grad_(False).eval()
    vae.to(device, torch.float32)
    unet.to(device, dtype)
    text_encoder.to(device, dtype)
    return SDModels(vae, unet, text_encoder, tokenizer, dict(sched), torch.device(device), dtype, str(path.resolve()))


@dataclass
class ClipImageEncoder:
    """A frozen CLIP image tower with projection. ``embed(images)``: float (B, H, W) in [0, 1] ->
    (B, projection_dim); gray is repeated to RGB, centre-cropped square, resized bicubic to the
    encoder's input size and normalised with its mean/std."""

    model: Any
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: Any
    dtype: Any
    source: str

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    def embed(self, images):
        import torch
        import torch.nn.functional as F

        x = images.to(self.device, torch.float32)
        if x.ndim == 3:
            x = x[:, None]
        h, w = x.shape[-2:]
        s = min(h, w)
        x = x[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False).clamp(0, 1)
        x = x.expand(-1, 3, -1, -1)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return self.model(pixel_values=((x - mean) / std).to(self.dtype)).image_embeds.float()


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def load_clip(clip: str | os.PathLike, device="cpu", dtype=None) -> ClipImageEncoder:
    """Load the CLIP image encoder folder ``clip`` (see module docs), frozen, on ``device``."""
    offline()
    path = Path(clip)
    if not path.is_dir():
        raise InputError(f"{path}: no such folder; --clip needs {CLIP_NEED}")
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise InputError(f"{path}: no config.json; --clip needs {CLIP_NEED}")
    import torch

    dtype = dtype or torch.float32
    _quiet()
    try:
        cfg = json.loads(cfg_path.read_text())
        from transformers import CLIPModel, CLIPVisionModelWithProjection

        kind = cfg.get("model_type")
        if kind == "clip_vision_model":
            model = CLIPVisionModelWithProjection.from_pretrained(path, local_files_only=True)
        elif kind == "clip":
            full = CLIPModel.from_pretrained(path, local_files_only=True)
            model = CLIPVisionModelWithProjection(full.config.vision_config.__class__(
                **{**full.config.vision_config.to_dict(), "projection_dim": full.config.projection_dim}))
            model.vision_model.load_state_dict(full.vision_model.state_dict())
            model.visual_projection.load_state_dict(full.visual_projection.state_dict())
            del full
        else:
            raise InputError(f"{path}: config.json has model_type {kind!r}, not a CLIP model; --clip needs {CLIP_NEED}")
    except InputError:
        raise
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot load a CLIP image encoder from it ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200]}); --clip needs {CLIP_NEED}") from None
    size, mean, std = int(model.config.image_size), CLIP_MEAN, CLIP_STD
    pre = path / "preprocessor_config.json"
    if pre.is_file():
        p = json.loads(pre.read_text())
        mean = tuple(p.get("image_mean", mean))
        std = tuple(p.get("image_std", std))
    model.requires_grad_(False).eval().to(device, dtype)
    return ClipImageEncoder(model, size, mean, std, torch.device(device), dtype, str(path.resolve()))
