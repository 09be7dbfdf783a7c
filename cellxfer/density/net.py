"""A small UNet that maps a normalised image (N, in_chans, H, W) to a density map (N, 1, H, W) whose
sum is the cell count. Fully convolutional: any H, W (pooling uses ``ceil_mode``, upsampling goes to the
skip connection's exact size), so it exports to ONNX with dynamic height and width.

Options (``CounterMeta.arch_options``): ``base`` channels at full resolution (8), ``depth`` pooling
levels (3), ``scale`` (100): the head predicts ``scale`` x density, so its outputs are O(1); ``stem``
(1): average-pool the input by this factor first and upsample the density back (nearest, divided by
``stem ** 2``), ``stem ** 2`` times less compute for cells several pixels wide; ``norm`` ("batch", default; "group";
"none"): batch norm in evaluation mode keeps the network local, so stitched tiles equal the whole
image; group norm normalises by each tile's own statistics, so counts depend on the tiling; ``positive``
(false): a ReLU on the output, so the density is never negative and a background can be exactly empty.
"""

from __future__ import annotations

from cellxfer.bounds import Bound

DEFAULTS = {"base": 8, "depth": 3, "scale": 100.0, "stem": 1, "norm": "batch", "positive": False}
#: the range of each option (``train-count --arch-option KEY=VALUE``; :class:`cellxfer.bounds.Bound`)
BOUNDS = {"base": Bound(ge=1, le=512, multiple_of=1), "depth": Bound(ge=1, le=10, multiple_of=1),
          "scale": Bound(gt=0, le=1e6), "stem": Bound(ge=1, le=32, multiple_of=1),
          "norm": Bound(choices=("batch", "group", "none"))}


def build_density_unet(meta):
    import torch
    from torch import nn
    import torch.nn.functional as F

    opts = {**DEFAULTS, **(meta.arch_options or {})}
    base, depth, scale, stem = int(opts["base"]), int(opts["depth"]), float(opts["scale"]), int(opts["stem"])
    positive = bool(opts["positive"])  # a bool: `--arch-option positive=true` is parsed as its default's type
    if opts["norm"] not in ("group", "batch", "none"):
        raise ValueError(f"density UNet: norm {opts['norm']!r} is not 'group', 'batch' or 'none'")

    def norm(c):
        if opts["norm"] == "none":
            return nn.Identity()
        return nn.GroupNorm(max(1, min(8, c // 4)), c) if opts["norm"] == "group" else nn.BatchNorm2d(c)

    def block(cin, cout):
        bias = opts["norm"] == "none"
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=bias), norm(cout), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1, bias=bias), norm(cout), nn.ReLU(inplace=True))

    class DensityUNet(nn.Module):
        def __init__(self):
            super().__init__()
            chans = [base * 2 ** i for i in range(depth + 1)]
            self.down = nn.ModuleList([block(meta.in_chans, chans[0])] + [block(chans[i], chans[i + 1]) for i in range(depth)])
            self.up = nn.ModuleList([block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth))])
            self.head = nn.Conv2d(chans[0], 1, 1)
            self.scale = scale

        def forward(self, x):
            size = x.shape[-2:]
            if stem > 1:
                x = F.avg_pool2d(x, stem, ceil_mode=True)
            skips = []
            for i, blk in enumerate(self.down):
                if i:
                    x = F.max_pool2d(x, 2, ceil_mode=True)
                x = blk(x)
                skips.append(x)
            skips.pop()
            for blk in self.up:
                s = skips.pop()
                x = F.interpolate(x, size=s.shape[-2:], mode="nearest")
                x = blk(torch.cat([x, s], dim=1))
            out = self.head(x) / self.scale
            if positive:
                out = F.relu(out)
            if stem > 1:
                out = F.interpolate(out, scale_factor=float(stem), mode="nearest")[..., :size[0], :size[1]] / (stem * stem)
            return out

    return DensityUNet()
