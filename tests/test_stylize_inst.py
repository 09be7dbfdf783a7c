"""InST end to end on tiny random SD-v1-shaped models (scripts/make_tiny_models.py), through the real
loading code: learn-style (resume included) and stylize (labels, dtypes, sizes, seeds), offline."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellxfer.dataset import CellDataset, CellDatasetWriter
from cellxfer.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("make_tiny_models", REPO / "scripts" / "make_tiny_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    assert _load_script().main([str(out)]) == 0  # in-process: diffusers is imported once per test run
    assert (out / "sd" / "model_index.json").is_file() and (out / "clip" / "config.json").is_file()
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) < 20e6
    return out / "sd", out / "clip"


@pytest.fixture(scope="module")
def style(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("style")
    for i in range(2):
        tifffile.imwrite(root / f"s{i}.tif", (rng.normal(8, 3, (70, 90)).clip(0, 255)).astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def content(tmp_path_factory):
    """64x64 uint8, 64x64 uint8 and 60x68 uint16 (not multiples of 8) labelled images."""
    rng = np.random.default_rng(1)
    root = tmp_path_factory.mktemp("content")
    w = CellDatasetWriter(root)
    for i, (shape, dtype) in enumerate([((64, 64), np.uint8), ((64, 64), np.uint8), ((60, 68), np.uint16)]):
        img = rng.integers(0, 200 if dtype == np.uint8 else 50000, shape).astype(dtype)
        w.write(f"c{i}", img, np.round(rng.uniform(2, 58, (5 + i, 2)), 3))
    w.finalize({"stage": "test"})
    return root


def learn(tiny, style, out, steps=4, on_progress=None, overwrite=False, **kw):
    from cellxfer.stylize.config import LearnStyleConfig
    from cellxfer.stylize.learn import learn_style

    cfg = LearnStyleConfig(model=str(tiny[0]), clip=str(tiny[1]), steps=steps, size=64, save_every=2, device="cpu", **kw)
    return learn_style([style], cfg, out, seed=3, overwrite=overwrite, on_progress=on_progress)


@pytest.fixture(scope="module")
def token(tiny, style, tmp_path_factory):
    """A finished 4-step learn-style run folder (``stylize --token`` takes the folder)."""
    out = tmp_path_factory.mktemp("tok") / "style"
    res = learn(tiny, style, out)
    assert res.steps == 4 and np.isfinite(res.loss) and res.token == out / "token.safetensors"
    return out


def test_learn_style_writes_a_run_folder_and_trains_the_mapper(token, tiny):
    from cellxfer.stylize.mapper import StyleMapper, load_token

    mapper, meta = load_token(token)
    assert meta["format"] == "cellxfer-inst-token" and meta["placeholder"] == "*"
    assert load_token(token / "token.safetensors")[1] == meta  # the folder or its token file
    assert mapper.spec == dict(image_dim=32, text_width=32, heads=8, dim_head=64, blocks=1, dropout=0.05)
    import torch

    torch.manual_seed(0)
    fresh = StyleMapper(**mapper.spec)
    # trained weights moved away from any fresh init (AdamW lr 1e-4 x 4 steps ~ 4e-4 per weight)
    moved = max((a - b).abs().max().item() for a, b in zip(mapper.state_dict().values(), fresh.state_dict().values()))
    assert moved > 0
    m = json.loads((token / "manifest.json").read_text())
    assert m["stage"] == "learn-style" and m["complete"] and m["steps_done"] == 4 and m["seed"] == 3
    assert m["config"]["lr"] == 1e-4 and m["config"]["heads"] == 8 and len(m["inputs"]) == 1 and m["inputs"][0]["files"] == 2
    history = (token / "history.csv").read_text().splitlines()
    assert history[0] == "step,loss" and [r.split(",")[0] for r in history[1:]] == ["1", "2", "3", "4"]
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert (token / "state.pt").is_file()  # kept: more --steps continue the run


def test_learn_style_resumes_and_continues_to_the_token_of_one_run(tiny, style, token, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "t"

    class Stop(Exception):
        pass

    seen = []

    def stop_after_three(n, loss):
        seen.append(n)
        if len(seen) == 3:
            raise Stop

    with pytest.raises(Stop):
        learn(tiny, style, out, on_progress=stop_after_three)
    assert not (out / "token.safetensors").exists() and (out / "state.pt").is_file()  # saved after step 2
    assert json.loads((out / "manifest.json").read_text())["complete"] is False
    res = learn(tiny, style, out)
    assert res.resumed_from == 2

    def same(a, b):
        a, b = load_file(str(a / "token.safetensors")), load_file(str(b / "token.safetensors"))
        return a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)

    assert same(token, out)
    assert learn(tiny, style, out).seconds == 0.0  # done: a rerun returns at once
    # more --steps continue the finished run, to the token of one uninterrupted 6-step run
    assert learn(tiny, style, out, steps=6).resumed_from == 4
    learn(tiny, style, tmp_path / "six", steps=6)
    assert same(out, tmp_path / "six")
    assert len((out / "history.csv").read_text().splitlines()) == 7


def test_learn_style_refuses_other_settings_fewer_steps_changed_images_and_a_second_writer(tiny, style, tmp_path):
    import shutil

    import tifffile

    from cellxfer.lock import OutputLock

    mine = tmp_path / "style"
    shutil.copytree(style, mine)
    out = tmp_path / "run"
    learn(tiny, mine, out, steps=2)
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(InputError, match=r"other settings \(lr 0.0001 -> 0.0002\); pass --overwrite"):
        learn(tiny, mine, out, steps=2, lr=2e-4)
    with pytest.raises(InputError, match="more than --steps 1"):
        learn(tiny, mine, out, steps=1)
    with OutputLock(out, "test"):
        with pytest.raises(InputError, match="is writing"):
            learn(tiny, mine, out, steps=2)
    first = sorted(mine.iterdir())[0]
    tifffile.imwrite(first, tifffile.imread(first) // 2)
    with pytest.raises(InputError, match="inputs changed since"):
        learn(tiny, mine, out, steps=2)
    res = learn(tiny, mine, out, steps=2, lr=2e-4, overwrite=True)
    assert res.resumed_from == 0 and (out / "notes.txt").read_text() == "mine\n"  # foreign files are kept
    assert json.loads((out / "manifest.json").read_text())["config"]["lr"] == 2e-4
    with pytest.raises(InputError, match="learn-style --out is a run folder"):
        learn(tiny, mine, tmp_path / "old.safetensors", steps=1)


def test_inst_stylize_keeps_labels_dtypes_sizes_and_is_seeded(tiny, style, token, content, tmp_path):
    from cellxfer.plugins import get_registry
    from cellxfer.stylize.base import run_stylize
    from cellxfer.stylize.config import InSTConfig

    st = get_registry().get("cellxfer_stylizers", "inst")
    cfg = InSTConfig(token=str(token), model=str(tiny[0]), clip=str(tiny[1]), steps=6, batch_size=2, device="cpu")
    a = run_stylize(st, cfg, content, [style], tmp_path / "a", seed=5)
    assert a.written == 3 and not a.failed, a.failed
    src, out = CellDataset(content), CellDataset(tmp_path / "a")
    for id_ in src.ids:
        s, o = src[id_], out[id_]
        assert (o.image.dtype, o.image.shape) == (s.image.dtype, s.image.shape)
        np.testing.assert_array_equal(o.points, s.points)
        assert not np.array_equal(o.image, s.image) and o.image.std() > 0
    assert (content / "counts.csv").read_text() == (tmp_path / "a" / "counts.csv").read_text()
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["method"] == "inst" and m["config"]["strength"] == 0.7 and m["config"]["guidance"] == 10.0
    assert m["config"]["steps"] == 6 and any(i["path"] == str((token / "token.safetensors").resolve()) for i in m["inputs"])
    b = run_stylize(st, cfg, content, [style], tmp_path / "b", seed=5)
    assert b.written == 3
    for id_ in src.ids:
        assert (tmp_path / "a" / "images" / f"{id_}.tif").read_bytes() == (tmp_path / "b" / "images" / f"{id_}.tif").read_bytes()
    c = run_stylize(st, cfg, content, [style], tmp_path / "c", seed=6, limit=1)
    assert c.written == 1
    assert not np.array_equal(CellDataset(tmp_path / "c")["c0"].image, out["c0"].image)


def test_inst_adain_gives_style_channel_statistics():
    import torch

    from cellxfer.stylize.inst import adain

    g = torch.Generator().manual_seed(0)
    c, s = torch.randn(2, 4, 8, 8, generator=g) * 3 + 1, torch.randn(2, 4, 8, 8, generator=g) * 0.5 - 2
    y = adain(c, s)
    torch.testing.assert_close(y.mean((2, 3)), s.mean((2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std((2, 3)), s.std((2, 3)), atol=1e-4, rtol=1e-4)


def test_model_paths_errors_are_one_clear_line(tiny, tmp_path):
    from cellxfer.stylize.mapper import load_token
    from cellxfer.stylize.models import load_clip, load_sd

    with pytest.raises(InputError, match="no such file or folder; --model needs a local Stable Diffusion"):
        load_sd(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no model_index.json"):
        load_sd(tmp_path / "empty")
    with pytest.raises(InputError, match="no config.json; --clip needs"):
        load_clip(tmp_path / "empty")
    with pytest.raises(InputError, match="not a CLIP model"):
        load_clip(tiny[0] / "unet")
    with pytest.raises(InputError, match="no such file"):
        load_token(tmp_path / "t.safetensors")
    # a full CLIPModel folder (as openai/clip-vit-large-patch14 ships) gives its vision tower + projection
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    full = CLIPModel(CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, vocab_size=100),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=32, patch_size=8), projection_dim=24))
    full.save_pretrained(tmp_path / "fullclip")
    enc = load_clip(tmp_path / "fullclip")
    x = torch.rand(2, 40, 40)
    assert enc.dim == 24
    with torch.no_grad():
        want = full.get_image_features(pixel_values=((torch.nn.functional.interpolate(
            x[:, None], size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1).expand(-1, 3, -1, -1)
            - torch.tensor(enc.mean).view(1, 3, 1, 1)) / torch.tensor(enc.std).view(1, 3, 1, 1)))
        got = enc.embed(x)
    want = getattr(want, "pooler_output", want)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    for err in (tmp_path / "x",):
        err.write_text("x")
    with pytest.raises(InputError, match=r"not a folder nor a \.safetensors"):
        load_sd(tmp_path / "x")
    from safetensors.torch import save_file
    import torch

    save_file({"a": torch.zeros(3)}, str(tmp_path / "bogus.safetensors"))
    with pytest.raises(InputError, match="cannot build SD v1 from this single file offline.*--model-config"):
        load_sd(tmp_path / "bogus.safetensors", model_config=tiny[0])


def test_single_file_checkpoint_loads_the_same_models_and_stylizes_the_same(tiny, style, token, content, tmp_path):
    """A single-file SD v1 checkpoint (original LDM key layout, what users download) with --model-config:
    the same weights as the diffusers folder, hence byte-identical stylized images."""
    import torch
    from sd_single_file import write_single_file

    from cellxfer.plugins import get_registry
    from cellxfer.stylize.base import run_stylize
    from cellxfer.stylize.config import InSTConfig
    from cellxfer.stylize.models import load_sd

    single = write_single_file(tiny[0], tmp_path / "sd-v1-tiny.safetensors")
    a, b = load_sd(tiny[0]), load_sd(single, model_config=tiny[0])
    for name in ("vae", "unet", "text_encoder"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), name
    st = get_registry().get("cellxfer_stylizers", "inst")
    common = dict(token=str(token), clip=str(tiny[1]), steps=6, device="cpu")
    folder = run_stylize(st, InSTConfig(model=str(tiny[0]), **common), content, [style], tmp_path / "f", seed=5, limit=1)
    one = run_stylize(st, InSTConfig(model=str(single), model_config=str(tiny[0]), **common), content, [style],
                      tmp_path / "s", seed=5, limit=1)
    assert folder.written == one.written == 1
    for img in (tmp_path / "f" / "images").iterdir():
        assert img.read_bytes() == (tmp_path / "s" / "images" / img.name).read_bytes()


def cli(args) -> int:
    from cellxfer.cli import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_learn_style_and_stylize_inst(tiny, style, content, tmp_path, capsys):
    tok = tmp_path / "cli"
    assert cli(["learn-style", "--style", str(style), "--model", str(tiny[0]), "--clip", str(tiny[1]),
                "--steps", "2", "--size", "64", "--device", "cpu", "--out", str(tok)]) == 0
    assert "2 steps" in capsys.readouterr().out and (tok / "token.safetensors").is_file()
    assert cli(["stylize", "--method", "inst", "--content", str(content), "--style", str(style), "--token", str(tok),
                "--model", str(tiny[0]), "--clip", str(tiny[1]), "--steps", "4", "--limit", "2",
                "--out", str(tmp_path / "o")]) == 0
    assert "2 images (2 written" in capsys.readouterr().out
    # a wrong path: one line, exit 2, no traceback, and diffusers is never imported for it
    env = {**os.environ, "HF_HUB_OFFLINE": "0"}
    r = subprocess.run([sys.executable, "-c", "import sys; from cellxfer.cli import main\ntry: main(sys.argv[1:])\n"
                        "finally: print('diffusers' in sys.modules, file=sys.stderr)", "stylize", "--method", "inst",
                        "--content", str(content), "--style", str(style), "--token", str(tok), "--model", str(tmp_path / "no-sd"),
                        "--clip", str(tiny[1]), "--out", str(tmp_path / "p")], capture_output=True, text=True, cwd=REPO, env=env)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr and lines[-1] == "False" and len(lines) == 2, r.stderr
    assert "no-sd: no such file or folder; --model needs" in lines[0]


@pytest.mark.gpu
def test_inst_on_cuda_in_fp16(tiny, style, content, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from cellxfer.plugins import get_registry
    from cellxfer.stylize.base import run_stylize
    from cellxfer.stylize.config import InSTConfig, LearnStyleConfig
    from cellxfer.stylize.learn import learn_style

    tok = tmp_path / "gpu"
    cfg = LearnStyleConfig(model=str(tiny[0]), clip=str(tiny[1]), steps=3, size=64, device="cuda", precision="fp16")
    assert np.isfinite(learn_style([style], cfg, tok, seed=0).loss)
    st = get_registry().get("cellxfer_stylizers", "inst")
    icfg = InSTConfig(token=str(tok), model=str(tiny[0]), clip=str(tiny[1]), steps=6, device="cuda", precision="fp16")
    res = run_stylize(st, icfg, content, [style], tmp_path / "o", seed=0)
    assert res.written == 3 and not res.failed
    for s in CellDataset(tmp_path / "o"):
        assert np.isfinite(s.image.astype(float)).all() and s.image.std() > 0
