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
