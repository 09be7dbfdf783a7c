"""The pix2pix translator: a UNet generator whose layers are addressable, a PatchGAN, and the
translator checkpoint format (torch is imported lazily, by the functions).

Layer numbering (``num_downs`` = 8 gives the paper's 16 layers): layers ``1..num_downs`` are the down
blocks (layer 1 the outermost, full resolution / 2), layers ``num_downs+1..2*num_downs`` the up blocks
(layer ``2*num_downs`` is the output, a tanh image). The *state* after layer ``L`` is the layer-L
activation plus the skip tensors the later layers still need (the outputs of down blocks
``1..min(L, num_downs)``); :meth:`UNetGenerator.forward_to` computes it and
:meth:`UNetGenerator.forward_from` finishes the pass from it, so
``forward_from(forward_to(x, L), L) == forward(x)`` exactly, for every ``L``.

Blocks follow pix2pix's ``UnetSkipConnectionBlock`` (Isola et al. 2017): down = LeakyReLU(0.2) ->
Conv4x4/2 -> norm (no activation before layer 1, no norm on the innermost); up = ReLU ->
ConvTranspose4x4/2 -> norm (+ Dropout(0.5) on the ``num_downs - 5`` up blocks after the innermost,
train mode only), the outermost up ends in tanh. Up block ``k`` (``k < 2*num_downs``) sees the
previous up output concatenated with the matching down output.

Input: float32 (N, in_ch, H, W) with H and W multiples of ``2**num_downs`` (256 for the paper's 8),
intensities in [-1, 1]. Output: float32 (N, out_ch, H, W) in [-1, 1].
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from cellxfer.errors import InputError
from cellxfer.weights import TRANSLATOR_FILE as MODEL_FILE, TRANSLATOR_KEY as META_KEY  # one definition each


@dataclass(frozen=True)
class TranslatorMeta:
    """What travels with a translator (architecture, normalisation, provenance)."""

    in_ch: int = 1
    out_ch: int = 1
    ngf: int = 64
    num_downs: int = 8
    norm: str = "batch"  # batch | instance
    dropout: bool = True
    size: int = 256  # training crop side, the default translate tile
    input_norm: tuple[float, float] = (0.5, 99.5)  # per-image percentiles mapped to [-1, 1]
    target_norm: tuple[float, float] = (0.5, 99.5)
    version: str = ""
    adapted: dict = field(default_factory=dict)  # LM-ADDA provenance: layer, source model, ...

    @property
    def n_layers(self) -> int:
        return 2 * self.num_downs

    @property
    def multiple(self) -> int:
        return 2 ** self.num_downs

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "the translator") -> "TranslatorMeta":
        """The meta a translator file records; fields this cellxfer does not know (a newer one wrote them)
        and values no cellxfer writes (damaged metadata) are refused in one line naming ``source``."""
        from dataclasses import fields

        from cellxfer.weights import check_number, damaged_meta, meta_object, refuse_unknown

        d = meta_object(text, source)
        refuse_unknown(d, source, sorted(set(d) - {f.name for f in fields(cls)}))
        for k in ("input_norm", "target_norm"):
            if k in d:
                if not isinstance(d[k], list) or len(d[k]) != 2:
                    raise damaged_meta(source, f"{k} {d[k]!r}: must be two percentiles")
                check_number(source, f"{k}[0]", d[k][0], 0, 100, low_open=False)
                check_number(source, f"{k}[1]", d[k][1], d[k][0], 100)
                d[k] = tuple(d[k])
        meta = cls(**d)
        for name in ("in_ch", "out_ch", "ngf", "num_downs", "size"):
            check_number(source, name, getattr(meta, name), 0, 2 ** 16, whole=True)
        if meta.norm not in ("batch", "instance") or not isinstance(meta.adapted, dict):
            raise damaged_meta(source, f"norm {meta.norm!r}: must be batch or instance; adapted a JSON object")
        return meta


def _norm_layer(kind: str, ch: int):
    import torch.nn as nn

    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)
    raise InputError(f"--norm {kind!r}: expected batch or instance")


def _unet_blocks(meta: TranslatorMeta):
    """``(downs, ups)`` module lists of the pix2pix UNet: down block i+1 has min(ngf * 2**i, 8 ngf) channels
    (norm on all but the first and last), up block j+1 mirrors down block nd-j (dropout on up blocks
    2..nd-4 when ``meta.dropout``), the last up block ends in tanh."""
    import torch.nn as nn

    nd, ngf = meta.num_downs, meta.ngf
    use_bias = meta.norm == "instance"
    chans = [min(ngf * 2 ** i, ngf * 8) for i in range(nd)]  # output channels of down i+1
    downs = []
    for i in range(nd):
        cin = meta.in_ch if i == 0 else chans[i - 1]
        layers = [] if i == 0 else [nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(cin, chans[i], 4, 2, 1, bias=use_bias))
        if 0 < i < nd - 1:
            layers.append(_norm_layer(meta.norm, chans[i]))
        downs.append(nn.Sequential(*layers))
    ups = []
    for j in range(nd):  # up block j+1 (layer nd+j+1) mirrors down block nd-j
        d = nd - 1 - j  # index of the mirrored down block
        cin = chans[d] if j == 0 else 2 * chans[d]
        if j == nd - 1:
            ups.append(nn.Sequential(nn.ReLU(True), nn.ConvTranspose2d(cin, meta.out_ch, 4, 2, 1), nn.Tanh()))
            continue
        cout = chans[d - 1]
        layers = [nn.ReLU(True), nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=use_bias), _norm_layer(meta.norm, cout)]
        if meta.dropout and 1 <= j <= nd - 5:
            layers.append(nn.Dropout(0.5))
        ups.append(nn.Sequential(*layers))
    return nn.ModuleList(downs), nn.ModuleList(ups)


def build_generator(meta: TranslatorMeta):
    """A randomly initialised :class:`UNetGenerator` (pix2pix init: N(0, 0.02) convs)."""
    import torch.nn as nn

    class UNetGenerator(nn.Module):
        def __init__(self, meta: TranslatorMeta):
            super().__init__()
            if meta.num_downs < 5:
                raise InputError(f"--num-downs {meta.num_downs}: the pix2pix UNet needs at least 5 down blocks")
            self.num_downs = meta.num_downs
            self.downs, self.ups = _unet_blocks(meta)

        @property
        def n_layers(self) -> int:
            return 2 * self.num_downs

        def block(self, layer: int):
            """The module computing ``layer`` (1-based)."""
            nd = self.num_downs
            return self.downs[layer - 1] if layer <= nd else self.ups[layer - nd - 1]

        def forward_to(self, x, layer: int):
            """State after ``layer``: ``(feature, skips)``; ``feature`` is the layer's activation."""
            nd = self.num_downs
            skips = []
            h = x
            for i in range(min(layer, nd)):
                h = self.downs[i](h)
                skips.append(h)
            if layer <= nd:
                return h, skips[:-1]
            import torch

            for j in range(layer - nd):
                if j > 0:
                    h = torch.cat([h, skips[nd - 1 - j]], 1)
                h = self.ups[j](h)
            return h, skips[: nd - (layer - nd)]

        def forward_from(self, state, layer: int):
            """Finish the pass from the state after ``layer`` (see :meth:`forward_to`)."""
            import torch

            nd = self.num_downs
            h, skips = state
            skips = list(skips)
            if layer <= nd:
                skips.append(h)
                for i in range(layer, nd):
                    h = self.downs[i](h)
                    skips.append(h)
                start = 0
            else:
                start = layer - nd
                skips = skips + [None] * (nd - len(skips))
            for j in range(start, nd):
                if j > 0:
                    h = torch.cat([h, skips[nd - 1 - j]], 1)
                h = self.ups[j](h)
            return h

        def forward(self, x):
            return self.forward_from(self.forward_to(x, 1), 1)

    g = UNetGenerator(meta)
    init_weights(g)
    return g


def build_discriminator(in_ch: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch", spatial: int | None = None):
    """pix2pix ``NLayerDiscriminator`` (n_layers 3 = the 70x70 PatchGAN): logits (N, 1, h, w).

    For feature maps too small for ``n_layers`` stride-2 convs (``spatial`` < 8 * 2**...), the number
    of strided convs is reduced to ``log2(spatial) - 2`` and the two final stride-1 convs use 3x3
    kernels with padding 1 when fewer than 4 pixels remain, so every UNet layer can be matched.
    """
    import math

    import torch.nn as nn

    n_strided = n_layers
    k_final, p_final = 4, 1
    if spatial is not None:
        n_strided = max(0, min(n_layers, int(math.log2(max(spatial, 1))) - 2))
        if spatial // 2 ** n_strided < 4:
            k_final, p_final = 3, 1
    use_bias = norm == "instance"
    seq = []
    cin = in_ch
    for i in range(n_strided):
        cout = ndf * min(2 ** i, 8)
        seq.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=(i == 0) or use_bias))
        if i > 0:
            seq.append(_norm_layer(norm, cout))
        seq.append(nn.LeakyReLU(0.2, True))
        cin = cout
    cout = ndf * min(2 ** n_strided, 8)
    seq += [nn.Conv2d(cin, cout, k_final, 1, p_final, bias=use_bias or n_strided == 0)]
    if n_strided > 0:
        seq.append(_norm_layer(norm, cout))
    seq += [nn.LeakyReLU(0.2, True), nn.Conv2d(cout, 1, k_final, 1, p_final)]
    d = nn.Sequential(*seq)
    init_weights(d)
    return d


def init_weights(net, gain: float = 0.02) -> None:
    """pix2pix 'normal' init: conv weights N(0, gain), norm weights N(1, gain), biases 0."""
    import torch.nn as nn

    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def save_translator(path: str | os.PathLike, model, meta: TranslatorMeta) -> Path:
    """Write the generator's weights and ``meta`` to one safetensors file, atomically."""
    import cellxfer
    from cellxfer.weights import save_module

    return save_module(path, model, {META_KEY: replace(meta, version=cellxfer.__version__).to_json()})


def resolve_model(path: str | os.PathLike) -> Path:
    """A translator file, or a run folder holding ``translator.safetensors``."""
    from cellxfer.weights import in_run_folder

    return in_run_folder(path, MODEL_FILE, f"--model needs a translator: a run folder from train-translate/adapt or its {MODEL_FILE}")


def read_translator_meta(path: str | os.PathLike) -> TranslatorMeta:
    from cellxfer.weights import read_metadata

    path = resolve_model(path)
    return TranslatorMeta.from_json(read_metadata(path, META_KEY, "give a translator from train-translate or adapt"), str(path))


def load_translator(path: str | os.PathLike):
    """``(generator in eval mode, meta)`` from a translator file or run folder."""
    from cellxfer.weights import load_weights

    path = resolve_model(path)
    meta = read_translator_meta(path)
    return load_weights(build_generator(meta), path, "the recorded translator architecture"), meta


def torch_runner(g):
    """A translator generator (put in eval mode) as a runner: numpy float32 (N, C, H, W) -> numpy."""
    import numpy as np
    import torch

    g.eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return g(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()

    return run
