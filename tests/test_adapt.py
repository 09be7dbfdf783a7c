"""LM-ADDA: frozen rest, discriminator learning, sweep with held-out selection, CLI."""

from __future__ import annotations

import json

from cli_inproc import run_cli

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cellxfer.synth.paired import PairedConfig, write_pairs  # noqa: E402
from cellxfer.translate.adapt import AdaptConfig, adapt_layer  # noqa: E402
from cellxfer.translator.model import TranslatorMeta, build_generator, load_translator, save_translator  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt")
    write_pairs(PairedConfig(size=64, cell_size=12, cells=(3, 6)), 4, root / "pc", seed=0)
    write_pairs(PairedConfig(size=64, cell_size=12, cells=(3, 6), modality="bf", overexpose=2.0), 5, root / "bf", seed=1)
    torch.manual_seed(0)
    meta = TranslatorMeta(ngf=4, num_downs=5, size=32)
    g = build_generator(meta)
    for m in g.modules():  # running statistics = the statistics of one batch, so eval-mode features are O(1)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    g.train()
    with torch.no_grad():
        g(torch.randn(8, 1, 32, 32))
    save_translator(root / "src" / "translator.safetensors", g.eval(), meta)
    return root


def _cfg(root, out, layer, steps=25, **kw):
    return AdaptConfig(model=str(root / "src"), source=str(root / "pc"), target=str(root / "bf"), out=str(root / out),
                       layer=layer, steps=steps, batch_size=2, ndf=8, lr_d=1e-3, threads=1, **kw)


def test_adaptation_trains_only_up_to_layer_and_moves_d_loss(setup):
    root = setup
    s = adapt_layer(_cfg(root, "a3", 3))
    assert s.loss_d_last < s.loss_d_first - 0.005  # the discriminator learns to tell the domains apart
    g, _ = load_translator(root / "src")
    ga, meta = load_translator(root / "a3")
    assert meta.adapted["layer"] == 3 and meta.adapted["method"] == "LM-ADDA"
    for layer in range(1, g.n_layers + 1):
        same = all(torch.equal(a, b) for a, b in zip(g.block(layer).state_dict().values(), ga.block(layer).state_dict().values()))
        assert same == (layer > 3), layer
    # blocks after the layer are shared, so G' = G'_L followed by G's rest exactly
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(ga(x), g.forward_from(ga.forward_to(x, 3), 3))
    rows = (root / "a3" / "log.csv").read_text().splitlines()
    assert len(rows) == 26 and (root / "a3" / "manifest.json").is_file()


def test_output_layer_is_plain_adda_and_bad_layer(setup):
    root = setup
    s = adapt_layer(_cfg(root, "a10", 10, steps=3))
    assert s.layer == 10
    assert load_translator(root / "a10")[1].adapted["method"].startswith("ADDA")
    from cellxfer.errors import InputError

    with pytest.raises(InputError, match="layers 1..10"):
        adapt_layer(_cfg(root, "bad", 11, steps=1))


def test_same_seed_same_adapted_model(setup):
    root = setup
    adapt_layer(_cfg(root, "r1", 6, steps=4))
    adapt_layer(_cfg(root, "r2", 6, steps=4))
    from safetensors.torch import load_file

    a = load_file(str(root / "r1" / "translator.safetensors"))
    b = load_file(str(root / "r2" / "translator.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    from cellxfer.errors import InputError

    # the run-folder policy: the same settings redo the same run, other settings are refused unless overwrite
    adapt_layer(_cfg(root, "r2", 6, steps=4))
    assert all(torch.equal(a[k], v) for k, v in load_file(str(root / "r2" / "translator.safetensors")).items())
    with pytest.raises(InputError, match="steps 4 -> 5.*--overwrite"):
        adapt_layer(_cfg(root, "r2", 6, steps=5))
    adapt_layer(_cfg(root, "r2", 6, steps=5), overwrite=True)


def _adapt_cli(root, out: str, capsys, *extra: str):
    """`cellxfer adapt` of the setup's source translator from pc to bf, small and quick, into ``root / out``."""
    return run_cli(["adapt", "--model", str(root / "src"), "--source", str(root / "pc"), "--target", str(root / "bf"),
                    "--out", str(root / out), "--batch-size", "2", "--ndf", "8", "--holdout", "0.4", "--threads", "1",
                    *extra], capsys)


def test_sweep_cli_picks_on_held_out_pairs(setup, capsys):
    root = setup
    code, out, _ = _adapt_cli(root, "sw", capsys, "--sweep", "2,5,10", "--steps", "3")
    assert code == 0
    sweep = json.loads((root / "sw" / "sweep.json").read_text())
    assert [r["layer"] for r in sweep["rows"]] == ["none", 2, 5, 10]
    assert len(sweep["eval_pairs"]) == 2
    assert all(np.isfinite(r["pearson"]) for r in sweep["rows"])
    best = sweep["best_layer"]
    assert best == max(sweep["rows"][1:], key=lambda r: r["pearson"])["layer"]
    assert (root / "sw" / "translator.safetensors").read_bytes() == (root / "sw" / f"layer_{best:02d}" / "translator.safetensors").read_bytes()
    assert f"best layer {best}" in out


def test_one_layer_cli_scores_held_out_pairs(setup, capsys):
    """`adapt` at one layer: the library's adapt() returns the held-out score the command prints."""
    from cellxfer.translate.adapt import HeldOutScore, adapt, evaluate_held_out

    root = setup
    code, out, _ = _adapt_cli(root, "one", capsys, "--layer", "5", "--steps", "2")
    assert code == 0
    cfg = AdaptConfig(model=str(root / "src"), source=str(root / "pc"), target=str(root / "bf"), out=str(root / "one"),
                      layer=5, steps=2, batch_size=2, ndf=8, holdout=0.4, threads=1)
    held = evaluate_held_out(cfg)
    assert isinstance(held, HeldOutScore) and held.pairs == 2 and np.isfinite(held.pearson)
    assert f"held-out target pairs (2): Pearson {held.pearson:.4f}" in out
    again = adapt(cfg)  # same settings: the run is redone identically and scored the same
    assert again.held_out == held and again.layer == 5


def test_unpaired_target_folder(setup):
    root = setup
    s = adapt_layer(AdaptConfig(model=str(root / "src"), source=str(root / "pc" / "source"), target=str(root / "bf" / "source"),
                                out=str(root / "u"), layer=4, steps=2, batch_size=1, ndf=8, threads=1))
    assert s.steps == 2 and (root / "u" / "translator.safetensors").is_file()


def test_train_layer_only_keeps_earlier_blocks(setup):
    root = setup
    adapt_layer(_cfg(root, "only4", 4, steps=3, train="layer"))
    g, _ = load_translator(root / "src")
    ga, _ = load_translator(root / "only4")
    for layer in range(1, g.n_layers + 1):
        same = all(torch.equal(a, b) for a, b in zip(g.block(layer).state_dict().values(), ga.block(layer).state_dict().values()))
        assert same == (layer != 4), layer


def test_skip_matching_trains_and_changes_the_copys_skips(setup):
    root = setup
    s = adapt_layer(_cfg(root, "skips4", 4, steps=6, match="skips"))
    plain = adapt_layer(_cfg(root, "layer4", 4, steps=6))
    assert s.matched_tensors == 4 and plain.matched_tensors == 1  # layer 4 + the outputs of down blocks 1..3
    g, _ = load_translator(root / "src")
    ga, meta = load_translator(root / "skips4")
    gl, _ = load_translator(root / "layer4")
    assert meta.adapted["match"] == "skips"
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        _, skips_g = g.forward_to(x, 4)
        _, skips_a = ga.forward_to(x, 4)
        _, skips_l = gl.forward_to(x, 4)
    assert len(skips_a) == 3
    for a, b, c in zip(skips_g, skips_a, skips_l):
        assert not torch.allclose(a, b)  # the copy's skips moved
        assert not torch.allclose(b, c)  # and differently from layer-only matching (the skip discriminators pull on them)
    with pytest.raises(Exception, match="--train upto"):
        adapt_layer(_cfg(root, "bad", 4, steps=1, match="skips", train="layer"))
