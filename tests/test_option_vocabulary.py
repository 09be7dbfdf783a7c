"""One vocabulary of options across every registered command: a short flag stands for the same long option
everywhere, and a long option is a flag in every command or takes a value in every command."""

from __future__ import annotations

from collections import defaultdict


def _commands():
    import typer

    from cellxfer.cli import build_app

    return typer.main.get_command(build_app()).commands


def test_a_short_flag_means_one_option_everywhere():
    meaning = defaultdict(set)
    for name, command in _commands().items():
        for p in command.params:
            longs = tuple(o for o in p.opts if o.startswith("--"))
            for o in p.opts + p.secondary_opts:
                if o.startswith("-") and not o.startswith("--"):
                    meaning[o].add((longs, name))
    clashes = {s: sorted(v) for s, v in meaning.items() if len({longs for longs, _ in v}) > 1}
    assert not clashes, f"short flags with several meanings: {clashes}"


def test_an_option_is_a_flag_everywhere_or_nowhere():
    kinds = defaultdict(set)
    for name, command in _commands().items():
        for p in command.params:
            for o in p.opts:
                if o.startswith("--"):
                    kinds[o].add((bool(getattr(p, "is_flag", False)), name))
    mixed = {o: sorted(v) for o, v in kinds.items() if len({flag for flag, _ in v}) > 1}
    assert not mixed, f"options that are a flag in one command and take a value in another: {mixed}"


#: Old or rival spellings of one concept -> the one name every command uses. Kept hidden for one release
#: at most (cellxfer.options.deprecated_flag/deprecated_option), never shown in --help.
BANNED_SYNONYMS = {
    "--fp32": "--precision fp32",
    "--fp16": "--precision fp16",
    "--half": "--precision fp16",
    "--fresh": "--overwrite",
    "--force": "--overwrite",
    "--norm-low": "--input-norm LOW:HIGH",
    "--norm-high": "--input-norm LOW:HIGH",
    "--percentiles": "--input-norm LOW:HIGH",
    "--backend": "--engine",
    "--jobs": "--workers",
    "--num-workers": "--workers",
    "--bs": "--batch-size",
    "--random-seed": "--seed",
    "--output": "--out",
}

#: Options that mean the same thing everywhere, so they default the same everywhere (`--engine`: auto in
#: `count`, `translate`, `evaluate` and `evaluate-translator`, resolved by one function, load_runner).
SAME_DEFAULT = ("--device", "--precision", "--seed", "--overwrite", "--threads", "--workers", "--tile", "--input-norm",
                "--engine")


def test_no_visible_option_uses_a_banned_synonym():
    found = sorted((o, name) for name, command in _commands().items() for p in command.params
                   if not getattr(p, "hidden", False) for o in p.opts + p.secondary_opts if o in BANNED_SYNONYMS)
    assert not found, f"use the one name: {[(o, n, BANNED_SYNONYMS[o]) for o, n in found]}"


def _effective_default(p) -> str:
    """The default a command uses: the option's, or for a None that defers to the stage's config (synth,
    stylize) the ``[default: X]`` its help states."""
    import re

    m = re.search(r"\[default: ([^\]]+?)\]", p.help or "") if p.default is None else None
    return repr(m.group(1)) if m else repr(p.default)


def test_a_shared_option_has_one_default():
    defaults = defaultdict(set)
    for name, command in _commands().items():
        for p in command.params:
            for o in p.opts:
                if o in SAME_DEFAULT and not getattr(p, "hidden", False):
                    defaults[o].add((_effective_default(p), name))
    differ = {o: sorted(v) for o, v in defaults.items() if len({d for d, _ in v}) > 1}
    assert not differ, f"one option, several defaults: {differ}"


def test_hidden_old_spellings_still_work_and_say_so(tmp_path, capsys):
    """`--fresh` (train-translate) is tested with a run in test_translate; here the options that need no run."""
    from cli_inproc import run_cli

    code, _, err = run_cli(["export", "--model", tmp_path / "missing.safetensors", "--fp32"], capsys)
    assert "--fp32 is deprecated" in err and code == 2
    code, _, err = run_cli(["train-count", "--regime", "supervised", "--out", tmp_path / "r", "--norm-low", "1"], capsys)
    assert "--norm-low is deprecated" in err and code == 2  # then refused: no --real
    code, _, err = run_cli(["train-count", "--regime", "supervised", "--out", tmp_path / "r", "--resume"], capsys)
    assert "--resume is deprecated" in err and code == 2


def _plain(value):
    """An option default and a config default compared as the user sees them: LOW:HIGH for pairs,
    lists as tuples, "not given" (None) as the config's 0 sentinel."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"{value[0]:g}:{value[1]:g}"
    if isinstance(value, list):
        return tuple(value)
    return 0 if value is None else value


def test_command_defaults_are_their_configs():
    """A default lives in the typed config; the command that fills it shows the same value. train-count,
    train-translate, adapt, synth-pairs, count and evaluate take their defaults from their configs (numpy-free
    modules: cellxfer.train.config, cellxfer.translate.config, cellxfer.synth.paired_config,
    cellxfer.count.config, cellxfer.evaluate.config), so this checks the wiring (and the options that still
    spell a literal default, such as the shared vocabulary's)."""
    import dataclasses

    from cellxfer.count.job import CountConfig
    from cellxfer.evaluate.run import EvaluateConfig
    from cellxfer.synth.paired import PairedConfig
    from cellxfer.train.config import TrainConfig
    from cellxfer.translate.adapt import AdaptConfig
    from cellxfer.translate.train import TrainTranslateConfig

    commands = _commands()
    checked = 0
    for name, cls in (("train-count", TrainConfig), ("train-translate", TrainTranslateConfig), ("adapt", AdaptConfig),
                      ("synth-pairs", PairedConfig), ("count", CountConfig), ("evaluate", EvaluateConfig)):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for p in commands[name].params:
            f = fields.get(p.name)
            if f is None or p.required or getattr(p, "hidden", False) or f.default is dataclasses.MISSING:
                continue
            assert _plain(p.default) == _plain(f.default), f"{name} --{p.name.replace('_', '-')}: {p.default!r} vs {cls.__name__} {f.default!r}"
            checked += 1
    norm = next(p for p in commands["train-count"].params if p.name == "input_norm")
    assert norm.default == _plain((TrainConfig().norm_low, TrainConfig().norm_high))
    assert checked >= 70


#: Visible options of config-built commands that are not named after a config field, and why. Anything else
#: must carry its field's name, so one field never has two option names across commands (`--teacher-ema`
#: for TrainConfig.ema, say, beside train-count's `--ema`).
NOT_A_FIELD = {
    ("train-count", "arch_option"): "goes into extra['arch_options'], checked against the architecture",
    ("train-count", "input_norm"): "one LOW:HIGH option for norm_low and norm_high",
    ("adapt-count", "model"): "the counter to adapt: --model/-m as in every command that reads one (pretrained)",
    ("train-translate", "overwrite"): "a run-folder option, not a setting", ("adapt", "overwrite"): "idem",
    ("adapt", "sweep"): "several runs of the config, one per layer",
    ("synth-pairs", "n"): "how many pairs", ("synth-pairs", "out"): "where", ("synth-pairs", "seed"): "the run's seed",
    ("synth-pairs", "overwrite"): "a run-folder option",
    ("count", "precision"): "--precision, the vocabulary's name, sets fp16",
    ("evaluate", "csv"): "--csv, the vocabulary's name for a CSV output, sets out_csv",
    ("evaluate", "json_out"): "--json sets out_json",
}


def test_an_option_that_sets_a_config_field_is_named_after_it():
    import dataclasses

    from cellxfer.count.job import CountConfig
    from cellxfer.evaluate.run import EvaluateConfig
    from cellxfer.synth.paired_config import PairedConfig
    from cellxfer.train.config import TrainConfig
    from cellxfer.translate.config import AdaptConfig, TrainTranslateConfig

    commands = _commands()
    odd = []
    for name, cls in (("train-count", TrainConfig), ("adapt-count", TrainConfig), ("train-translate", TrainTranslateConfig),
                      ("adapt", AdaptConfig), ("synth-pairs", PairedConfig), ("count", CountConfig), ("evaluate", EvaluateConfig)):
        fields = {f.name for f in dataclasses.fields(cls)}
        odd += [(name, p.name) for p in commands[name].params if not getattr(p, "hidden", False)
                and p.name not in fields and (name, p.name) not in NOT_A_FIELD]
    assert not odd, f"options not named after the config field they set: {odd}"


def test_the_documented_command_table_lists_every_command():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "guide" / "index.md").read_text()
    table = page.split("## Commands", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in _commands() if f"| `{name}` |" not in table]
    assert not missing, f"the command table of docs/guide/index.md lacks {missing}"


def test_every_normalisation_field_is_a_train_count_option_both_ways():
    """A model's normalisation (:class:`cellxfer.counter.model.Normalization`) is set by train-count's ``norm_*``
    fields and kept by adapt-count through :meth:`TrainConfig.norm_options`: every field of it but ``eps`` has one
    (a new field cannot be forgotten on either side), and a normalisation survives the round trip."""
    import dataclasses

    from cellxfer.counter.model import Normalization
    from cellxfer.train.config import NORM_FIELDS, TrainConfig

    assert set(NORM_FIELDS) == {f.name for f in dataclasses.fields(Normalization)} - {"eps"}
    commands = _commands()
    train = {p.name for p in commands["train-count"].params}
    assert {f for f in NORM_FIELDS.values() if f not in ("norm_low", "norm_high")} <= train  # low/high: --input-norm
    n = Normalization(low=1.0, high=99.0, clip=3.0, min_snr=8.0, min_levels=16.0, max_top=1.5, lift=0.5)
    assert TrainConfig(**TrainConfig.norm_options(n)).normalization() == n
