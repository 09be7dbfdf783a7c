"""MkDocs hook: the CLI reference page, rendered from the registered commands themselves.

``docs/cli.md`` holds the marker ``@@CLI_REFERENCE@@``; this hook replaces it with one section per command
that ``cellxfer`` registers (built-ins and installed plugins alike), made from the click objects typer
builds: the command's help, its usage line and a table of its arguments and options with their types,
defaults and help. Nothing is copied by hand, so the page cannot go stale: a new option appears on the
next ``mkdocs build``.
"""

from __future__ import annotations

import re

MARKER = "@@CLI_REFERENCE@@"


def _cell(text) -> str:
    """One table cell: one line, ``|`` escaped, and outside `code` no HTML (``<name>.csv``) or emphasis (``2**n``)."""
    parts = " ".join(str(text).split()).replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*").replace("_", "\\_")
    return "`".join(parts)


def _default(param) -> str:
    default = param.default
    if callable(default) or default is None or default == () or default == []:
        return ""
    if getattr(param, "is_flag", False) and default is False:
        return ""
    if isinstance(default, (list, tuple)):
        default = ", ".join(map(str, default))
    return f"`{default}`"


def _type(param) -> str:
    """The value's type: click's type name, or (typer's own click) the annotation."""
    if getattr(param, "type", None) is not None:
        return param.type.name
    annotation = param.type_descriptor.annotation
    text = getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else None
    return (text or str(annotation)).replace("pathlib.", "").replace("typing.", "")


def _names(param) -> str:
    names = list(getattr(param, "opts", [])) + list(getattr(param, "secondary_opts", []))
    if param.param_type_name == "argument":
        return f"`{(param.metavar or param.name).upper()}` (argument)"
    return ", ".join(f"`{n}`" for n in names)


def _command_section(group, ctx, name: str) -> list[str]:
    import click  # noqa: F401 - typer's context needs click importable

    command = group.get_command(ctx, name)
    sub = type(ctx)(command, info_name=name, parent=ctx)
    usage = re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), " ".join(command.collect_usage_pieces(sub)))
    lines = [f"## `cellxfer {name}`", "", _cell(command.help or ""), ""]
    lines += ["```", f"cellxfer {name} {usage}", "```", ""]
    rows = [p for p in command.params if not getattr(p, "hidden", False)]
    if rows:
        lines += ["| argument / option | type | default | meaning |", "|---|---|---|---|"]
        for p in rows:
            kind = "flag" if getattr(p, "is_flag", False) else _cell(_type(p))
            need = " **required**" if p.required else ""
            lines.append(f"| {_names(p)}{need} | {kind} | {_default(p)} | {_cell(getattr(p, 'help', '') or '')} |")
        lines.append("")
    return lines


def reference() -> str:
    import typer

    from cellxfer.cli import build_app

    group = typer.main.get_command(build_app())
    ctx = group.make_context("cellxfer", ["--help"], resilient_parsing=True)
    lines: list[str] = []
    for name in group.list_commands(ctx):
        lines += _command_section(group, ctx, name)
    return "\n".join(lines)


def on_page_markdown(markdown, page, config, files):
    if MARKER in markdown:
        return markdown.replace(MARKER, reference())
    return markdown
