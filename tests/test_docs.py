"""The README and the docs site stay true to the command line (issue 28).

Every ``cellxfer COMMAND --option`` written in a code block of README.md or docs/**/*.md names a command and
options that exist (hidden old spellings count), so a renamed option cannot leave a stale example behind; the
README stays a five-minute read. ``mkdocs build --strict`` in .ci/run checks the site's links and pages.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def command_options() -> dict[str, set[str]]:
    import typer

    from cellxfer.cli import build_app

    group = typer.main.get_command(build_app())
    ctx = group.make_context("cellxfer", ["--help"], resilient_parsing=True)
    found = {}
    for name in group.list_commands(ctx):
        params = group.get_command(ctx, name).params
        found[name] = {o for p in params for o in [*p.opts, *getattr(p, "secondary_opts", [])] if o.startswith("-")}
    return found


def written_commands(text: str):
    """(command, [options]) of every ``cellxfer ...`` line in the code blocks of ``text``."""
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").split("\n"):
            line = line.split(" #")[0]
            for part in re.split(r"&&|\||;", line):
                m = re.search(r"\bcellxfer (?:--debug )?([a-z][a-z-]*)(.*)", part)
                if m:
                    yield m.group(1), re.findall(r"(?:^|\s)(--?[a-zA-Z][\w-]*)", m.group(2))


def test_every_command_line_in_the_docs_uses_options_that_exist():
    options = command_options()
    wrong, seen = [], 0
    for page in PAGES:
        for command, opts in written_commands(page.read_text()):
            if command not in options:
                continue  # prose such as "cellxfer closes the gap", or a plugin's command shown being installed
            seen += 1
            wrong += [f"{page.relative_to(REPO)}: cellxfer {command} {o}" for o in opts
                      if o not in options[command] and o not in ("-h", "--help")]
    assert seen > 50, "the parser found too few command lines: the check would pass vacuously"
    assert not wrong, "options that do not exist:\n" + "\n".join(wrong)


def test_the_checker_catches_a_stale_option():
    options = command_options()
    [(command, opts)] = written_commands("```\ncellxfer count a/ --no-such-option 3\n```\n")
    assert command == "count" and "--no-such-option" in opts and "--no-such-option" not in options["count"]


def test_the_readme_is_a_five_minute_read():
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= 200, f"README.md has {lines} lines; move detail to a page under docs/"
