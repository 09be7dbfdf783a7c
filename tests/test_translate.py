"""Translator: layer split, determinism, testbed, metrics, blending, training CLI, export, translate."""

from __future__ import annotations

import json

from pathlib import Path

from cli_inproc import run_cli as cli

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cellxfer.synth.paired import PairedConfig, overexpose, render, scale, write_pairs  # noqa: E402
from cellxfer.count.parts import RampTiles, blend_image  # noqa: E402


def translate_array(x, run, tile=256, overlap=32, batch_size=8):
    """Blend ``run`` over ``x`` as Translator.translate does (ramp tiles, weighted merge)."""
    return blend_image(run, x, RampTiles(tile, overlap), batch_size)
from cellxfer.translate.metrics import mae, pearson, ssim  # noqa: E402
from cellxfer.translator.model import TranslatorMeta, build_generator, load_translator, save_translator  # noqa: E402

from benchlib import ISL as _ISL  # noqa: E402  (scripts/benchlib.py: $CELLXFER_DATA or ../shared/data)

ISL = _ISL / "images"


def _trained_like(g):
    """Give batch-norm layers non-trivial running statistics (as after training)."""
    g.train()
    with torch.no_grad():
        for _ in range(2):
            g(torch.randn(2, 1, 256, 256) * 2)
    g.eval()
    return g


def test_layer_split_is_exact_at_every_layer():
    torch.manual_seed(0)
    g = _trained_like(build_generator(TranslatorMeta(ngf=4)))
    assert g.n_layers == 16
    x = torch.randn(2, 1, 256, 256)
    with torch.no_grad():
        y = g(x)
        for layer in range(1, 17):
            state = g.forward_to(x, layer)
            assert torch.equal(g.forward_from(state, layer), y), layer
        # a copy's blocks up to L + G's frozen rest == G when the copy equals G
        import copy

        gp = copy.deepcopy(g)
        for layer in (1, 8, 13):
            assert torch.equal(g.forward_from(gp.forward_to(x, layer), layer), y)
    assert g.forward_to(x, 16)[0].shape == (2, 1, 256, 256)
    assert g.forward_to(x, 8)[0].shape[-1] == 1  # the bottleneck


def test_paper_default_size_and_eval_determinism():
    g = build_generator(TranslatorMeta())
    assert 54_000_000 < sum(p.numel() for p in g.parameters()) < 55_000_000  # pix2pix unet_256
    small = build_generator(TranslatorMeta(ngf=4)).eval()
    x = torch.randn(1, 1, 256, 256)
    with torch.no_grad():
        assert torch.equal(small(x), small(x))  # dropout is off in eval mode
    small.train()
    with torch.no_grad():
        assert not torch.equal(small(x), small(x))  # ... and on in train mode


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(1)
    meta = TranslatorMeta(ngf=4, num_downs=5, size=32)
    g = _trained_like_small(build_generator(meta))
    save_translator(tmp_path / "t.safetensors", g, meta)
    g2, meta2 = load_translator(tmp_path / "t.safetensors")
    assert meta2.num_downs == 5 and meta2.input_norm == (0.5, 99.5)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(g.eval()(x), g2(x))


def _trained_like_small(g):
    g.train()
    with torch.no_grad():
        g(torch.randn(2, 1, 32, 32))
    return g.eval()


def test_testbed_is_deterministic_and_shares_layouts():
    a = render(PairedConfig(modality="pc"), 3, 5)
    b = render(PairedConfig(modality="pc"), 3, 5)
    c = render(PairedConfig(modality="bf"), 3, 5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a[0].dtype == np.uint16 and a[1].dtype == np.uint16
    assert np.array_equal(a[1], c[1]) and not np.array_equal(a[0], c[0])  # same cells and target, other input
    assert len(a[2]) > 5
    # BF has lower contrast than PC
    assert np.std(c[0].astype(float)) < np.std(a[0].astype(float))
    # CD29 halo differs from DAPI nuclei on the same layout
    d = render(PairedConfig(marker="cd29"), 3, 5)
    assert pearson(a[1], d[1]) < 0.5


def test_shift_transforms():
    img = np.array([[100, 30000], [50000, 65535]], np.uint16)
    assert overexpose(img, 2.0).tolist() == [[200, 60000], [65535, 65535]]
    src, tgt, pts = render(PairedConfig(), 0, 1)
    over = render(PairedConfig(overexpose=3.0), 0, 1)
    assert np.array_equal(over[1], tgt)  # the fluorescence is unchanged
    assert (over[0] == 65535).mean() > 0.3
    zoomed, zpts = scale(tgt, 2.0, pts)
    assert zoomed.shape == tgt.shape and zoomed.dtype == np.uint16
    assert len(zpts) < len(pts)
    z = render(PairedConfig(scale=2.0), 0, 1)
    assert np.array_equal(z[1], zoomed) and np.allclose(z[2], zpts)


def test_write_pairs_resumes(tmp_path):
    out = tmp_path / "p"
    r = write_pairs(PairedConfig(size=32, cell_size=8), 3, out, seed=0)
    assert r.written == 3 and sorted(p.name for p in (out / "source").iterdir()) == ["000000.tif", "000001.tif", "000002.tif"]
    r = write_pairs(PairedConfig(size=32, cell_size=8), 4, out, seed=0)
    assert (r.written, r.skipped) == (1, 3)
    from cellxfer.errors import InputError

    with pytest.raises(InputError, match="--overwrite"):
        write_pairs(PairedConfig(size=32, cell_size=8, modality="bf"), 4, out, seed=0)


def test_metrics():
    rng = np.random.default_rng(0)
    a = rng.random((40, 40))
    assert pearson(a, 2 * a + 3) == pytest.approx(1.0)
    assert pearson(a, -a) == pytest.approx(-1.0)
    assert np.isnan(pearson(a, np.ones_like(a)))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, rng.random((40, 40))) < 0.2
    assert mae(a, a + 0.25) == pytest.approx(0.25)


def test_blending_has_no_seams():
    const = np.full((300, 517), 0.37, np.float32)
    out = translate_array(const, lambda b: b, tile=128, overlap=32)
    assert out.shape == const.shape and np.allclose(out, 0.37, atol=1e-6)
    rng = np.random.default_rng(0)
    img = rng.random((200, 333)).astype(np.float32)
    assert np.allclose(translate_array(img, lambda b: b, tile=64, overlap=16), img, atol=1e-6)
    # every tile returns its own constant: the blend must ramp between them (no jump at tile edges)
    calls = iter(np.linspace(0, 1, 1000))
    out = translate_array(const, lambda b: np.stack([np.full_like(t, next(calls)) for t in b]), tile=128, overlap=32,
                          batch_size=1)
    jumps = max(np.abs(np.diff(out, axis=0)).max(), np.abs(np.diff(out, axis=1)).max())
    spread = out.max() - out.min()
    assert spread > 0.005 and jumps < spread / 8
    # an image smaller than a tile is padded and cropped back
    assert translate_array(img[:50, :40], lambda b: b, tile=64).shape == (50, 40)


def test_blending_with_a_unet_on_a_constant_image():
    torch.manual_seed(0)
    from cellxfer.translator.model import torch_runner

    g = _trained_like_small(build_generator(TranslatorMeta(ngf=4, num_downs=5, size=32)))
    run = torch_runner(g)
    out = translate_array(np.zeros((160, 160), np.float32), run, tile=64, overlap=16)
    single = run(np.zeros((1, 1, 64, 64), np.float32))[0, 0]
    # the blend adds no step larger than the steps a single tile already has (no seams at tile edges)
    step = lambda a: max(np.abs(np.diff(a, axis=0)).max(), np.abs(np.diff(a, axis=1)).max())  # noqa: E731
    assert step(out) <= step(single) + 1e-6
    assert np.ptp(out) <= np.ptp(single) + 1e-6


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("translate")
    pairs = root / "pairs"
    write_pairs(PairedConfig(size=64, cell_size=12, cells=(3, 6)), 4, pairs, seed=0)
    return root, pairs


def _train_args(pairs, out, steps):
    return ["train-translate", "--pairs", pairs, "--out", out, "--steps", steps, "--batch-size", 2, "--size", 32,
            "--ngf", 4, "--ndf", 4, "--num-downs", 5, "--checkpoint-every", 2, "--threads", 1]


def test_train_translate_cli_resume_and_determinism(tiny_run, capsys):
    root, pairs = tiny_run
    code, out, err = cli(_train_args(pairs, root / "a", 3), capsys)
    assert code == 0, err
    assert (root / "a" / "translator.safetensors").is_file() and (root / "a" / "manifest.json").is_file()
    code, _, err = cli(_train_args(pairs, root / "a", 5), capsys)  # resume to 5 steps
    assert code == 0, err
    log = (root / "a" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log[1:]] == ["1", "2", "3", "4", "5"]
    code, _, err = cli(_train_args(pairs, root / "b", 5), capsys)  # straight to 5 steps
    assert code == 0, err
    from safetensors.torch import load_file

    a, b = load_file(str(root / "a" / "translator.safetensors")), load_file(str(root / "b" / "translator.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed -> same model, resumed or not
    code, _, err = cli(_train_args(pairs, root / "b", 5) + ["--lr", "1e-3"], capsys)  # other settings: refused
    assert code == 2 and "lr 0.0002 -> 0.001" in err and "--overwrite" in err
    code, _, err = cli(_train_args(pairs, root / "b", 2) + ["--fresh"], capsys)  # old spelling of --overwrite
    assert code == 0 and "--fresh is deprecated" in err
    assert len((root / "b" / "log.csv").read_text().splitlines()) == 1 + 2


def test_train_translate_pure_l1(tiny_run, capsys):
    """--lambda-gan 0: the generator trains on L1 alone, the discriminator is never stepped (its weights stay
    the seed's initialisation), the GAN losses are logged as NaN; the GAN run from the same seed differs."""
    root, pairs = tiny_run
    code, out, err = cli(_train_args(pairs, root / "l1", 3) + ["--lambda-gan", "0"], capsys)
    assert code == 0, err
    assert ", D -; " in out and "nan" not in out  # no discriminator loss to show, not "D nan"
    code, _, err = cli(_train_args(pairs, root / "gan", 3), capsys)
    assert code == 0, err
    from safetensors.torch import load_file

    from cellxfer.translator.model import build_discriminator

    rows = [r.split(",") for r in (root / "l1" / "log.csv").read_text().splitlines()[1:]]
    assert len(rows) == 3 and all(r[1] == r[2] == "nan" and float(r[3]) > 0 for r in rows)
    state = torch.load(root / "l1" / "checkpoint.pt", weights_only=False)
    torch.manual_seed(0)
    build_generator(TranslatorMeta(ngf=4, num_downs=5, size=32))  # same draws as training before D is built
    d0 = build_discriminator(2, 4, 3, "batch").state_dict()
    assert all(torch.equal(state["d"][k], d0[k]) for k in d0)
    a, b = load_file(str(root / "l1" / "translator.safetensors")), load_file(str(root / "gan" / "translator.safetensors"))
    assert not all(torch.equal(a[k], b[k]) for k in a)
    code, _, err = cli(_train_args(pairs, root / "bad", 1) + ["--lambda-gan", "0", "--lambda-l1", "0"], capsys)
    assert code == 2 and "not both 0" in err and not (root / "bad" / "translator.safetensors").exists()


def test_train_translate_selects_on_val(tiny_run, capsys):
    """--val-pairs/--val-every: val.csv has a row per score (every 2 steps and the last), each equal to what
    evaluate-translator gives for that step's generator; the translator is the best row's; training is unchanged."""
    import json

    from cellxfer.translate.infer import evaluate_pairs, load, summarize
    from cellxfer.translate.data import list_pairs

    root, pairs = tiny_run
    val = root / "valpairs"
    write_pairs(PairedConfig(size=64, cell_size=12, cells=(3, 6)), 2, val, seed=1)
    scores = []
    for n in (2, 4, 5):  # the plain runs' translators = the generator after n steps
        code, _, err = cli(_train_args(pairs, root / f"plain{n}", n), capsys)
        assert code == 0, err
        scores.append(summarize(evaluate_pairs(load(root / f"plain{n}"), list_pairs(val)))["pearson"])
    code, out, err = cli(_train_args(pairs, root / "sel", 5) + ["--val-pairs", val, "--val-every", 2], capsys)
    assert code == 0, err
    rows = [r.split(",") for r in (root / "sel" / "val.csv").read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows] == [2, 4, 5]
    assert [float(r[1]) for r in rows] == pytest.approx(scores, abs=2e-6)
    best = int(np.argmax(scores))
    from safetensors.torch import load_file

    a = load_file(str(root / "sel" / "translator.safetensors"))
    b = load_file(str(root / f"plain{(2, 4, 5)[best]}" / "translator.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    manifest = json.loads((root / "sel" / "manifest.json").read_text())
    assert manifest["selected_step"] == (2, 4, 5)[best] and f"step {(2, 4, 5)[best]}" in out
    last = torch.load(root / "sel" / "checkpoint.pt", weights_only=False)["g"]
    assert all(torch.equal(last[k], v) for k, v in load_file(str(root / "plain5" / "translator.safetensors")).items())
    code, _, err = cli(_train_args(pairs, root / "bad", 1) + ["--val-pairs", val], capsys)
    assert code == 2 and "--val-every" in err


def test_train_translate_bad_input(tmp_path, capsys):
    (tmp_path / "nopairs").mkdir()
    code, out, err = cli(["train-translate", "--pairs", tmp_path / "nopairs", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "not a pairs folder" in err and "Traceback" not in err
    code, _, err = cli(["train-translate", "--pairs", tmp_path / "nopairs", "--out", tmp_path / "o", "--size", 100], capsys)
    assert code == 2 and "multiple of" in err


def test_translate_evaluate_and_onnx_parity(tiny_run, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    root, pairs = tiny_run
    monkeypatch.setenv("CELLXFER_CACHE", str(root / "cache"))
    run = root / "a"
    if not (run / "translator.safetensors").is_file():
        assert cli(_train_args(pairs, run, 2), capsys)[0] == 0
    from cellxfer.imageio import read_image, write_tiff

    imgs = root / "imgs"
    big = render(PairedConfig(size=96, cell_size=12), 0, 0)[0]
    write_tiff(imgs / "big.tif", big)
    write_tiff(imgs / "small.tif", big[:20, :50])
    (imgs / "broken.tif").write_bytes(b"not a tiff")
    code, out, err = cli(["translate", imgs, "--model", run, "--out", root / "t_torch", "--engine", "torch"], capsys)
    assert code == 1 and "2 written" in out and "broken.tif" in err, (code, out, err)  # per-file failure reported, others done
    code, out, err = cli(["translate", imgs / "big.tif", imgs / "small.tif", "--model", run, "--out", root / "t_onnx",
                          "--engine", "onnx"], capsys)
    assert code == 0, err
    assert "translator parity: ok" in out
    for name in ("big", "small"):
        t = read_image(root / "t_torch" / f"{name}.tif").astype(np.int64)
        o = read_image(root / "t_onnx" / f"{name}.tif").astype(np.int64)
        assert t.shape == read_image(imgs / f"{name}.tif").shape and t.dtype == np.int64
        assert np.abs(t - o).max() <= 65535 * 1e-3
    code, out, err = cli(["translate", imgs / "big.tif", "--model", run, "--out", root / "t_torch"], capsys)
    assert "1 already done" in out and "engine auto -> " in out  # rerun skips; auto resolved as in count
    manifest = json.loads((root / "t_torch" / "manifest.json").read_text())
    assert manifest["stage"] == "translate" and manifest["complete"] and manifest["config"]["dtype"] == "uint16"
    assert manifest["inputs"][0]["path"].endswith("translator.safetensors") and manifest["summary"]["skipped"] == 1
    # other settings into the same folder: refused, naming them (never two dtypes or models mixed in one folder)
    (root / "t_torch" / "notes.txt").write_text("mine")
    code, out, err = cli(["translate", imgs / "big.tif", "--model", run, "--out", root / "t_torch", "--dtype", "uint8"],
                         capsys)
    assert code == 2 and "dtype 'uint16' -> 'uint8'" in err and "--overwrite" in err, err
    code, out, err = cli(["translate", imgs / "big.tif", "--model", run, "--out", root / "t_torch", "--dtype", "uint8",
                          "--overwrite"], capsys)
    assert code == 0 and "1 written" in out and read_image(root / "t_torch" / "big.tif").dtype == np.uint8
    # --overwrite took every translation the folder's earlier runs wrote (small.tif too), no file of another tool
    assert not (root / "t_torch" / "small.tif").exists() and (root / "t_torch" / "notes.txt").read_text() == "mine"
    assert json.loads((root / "t_torch" / "manifest.json").read_text())["outputs"] == ["big.tif"]
    (cached,) = (root / "cache" / "onnx").glob("translator-*.onnx")  # the counters' cache, rebuilt the same way
    good = cached.read_bytes()
    cached.write_bytes(good[: len(good) // 3])
    code, out, err = cli(["translate", imgs / "small.tif", "--model", run, "--out", root / "t_re", "--engine", "onnx"],
                         capsys)
    assert code == 0 and f"warning: {cached}: the cached ONNX export of" in err and "translator parity: ok" in out
    assert cached.read_bytes() == good
    code, out, err = cli(["evaluate-translator", "--model", run, "--pairs", pairs, "--engine", "onnx"], capsys)
    assert code == 0 and "parity" not in out, err  # the cached export is reused
    onnx_mean = out.splitlines()[-1]
    code, out, err = cli(["evaluate-translator", "--model", run, "--pairs", pairs, "--csv", root / "m.csv"], capsys)
    assert code == 0, err
    assert "mean over 4 images: Pearson" in out and len((root / "m.csv").read_text().splitlines()) == 5
    torch_mean = out.splitlines()[-1]
    got = [float(w) for w in onnx_mean.split()[5::2]]
    want = [float(w) for w in torch_mean.split()[5::2]]
    assert len(got) == 3 and np.allclose(got, want, atol=2e-3), (onnx_mean, torch_mean)
    code, out, err = cli(["export", "--model", run, "--out", root / "x.onnx"], capsys)
    assert code == 0 and "parity: ok" in out
    code, out, err = cli(["export", "--model", run], capsys)  # default --out: the translator's file with .onnx
    assert code == 0 and (run / "translator.onnx").is_file(), err
    kept = (run / "translator.onnx").read_bytes()
    code, out, err = cli(["export", "--model", run], capsys)  # again: refused, the file kept
    assert code == 2 and f"{run / 'translator.onnx'}: exists; pass --overwrite" in err and len(err.strip().splitlines()) == 1
    assert (run / "translator.onnx").read_bytes() == kept

    # a core install (no torch) translates with the run's exported translator.onnx, beside its weights
    from test_extras import core_cli

    (root / "core").mkdir()  # its own empty cache: the translator.onnx beside the weights is what runs
    proc = core_cli(["translate", imgs / "small.tif", "--model", run, "--out", root / "t_core", "--engine", "onnx"],
                    root / "core")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(read_image(root / "t_core" / "small.tif"), read_image(root / "t_onnx" / "small.tif"))


def test_translate_trt_is_gated(tiny_run, capsys):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available():
        pytest.skip("TensorRT and a GPU are present; the gate does not apply")
    root, pairs = tiny_run
    run = root / "a"
    if not (run / "translator.safetensors").is_file():
        assert cli(_train_args(pairs, run, 2), capsys)[0] == 0
    code, out, err = cli(["translate", pairs / "source", "--model", run, "--out", root / "t_trt", "--engine", "trt"], capsys)
    assert code == 2 and "error:" in err and len(err.strip().splitlines()) == 1
    assert not (root / "t_trt").exists()


def test_real_isl_field_translates(tmp_path):
    if not ISL.is_dir():
        pytest.skip(f"real data not found at {ISL}")
    from cellxfer.imageio import read_image
    from cellxfer.translate.infer import Translator
    from cellxfer.translator.model import torch_runner

    phase = read_image(ISL / "phase_z6.png")
    assert phase.dtype == np.uint16 and phase.shape == (1024, 1024)
    torch.manual_seed(0)
    meta = TranslatorMeta(ngf=4, num_downs=5, size=128)
    g = _trained_like_small(build_generator(meta))
    pred = Translator(torch_runner(g), meta, "torch").translate(phase[:300, :260], tile=128)
    assert pred.shape == (300, 260) and np.isfinite(pred).all() and pred.min() >= -1 and pred.max() <= 1
