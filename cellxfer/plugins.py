"""The plugin registry: built-in stages and third-party plugins, loaded through the same hooks.

Loading order: the built-in modules in :data:`BUILTIN_PLUGINS`, then every entry point of the
``cellxfer`` group. ``CELLXFER_DISABLE_PLUGINS=name,...`` skips plugins by name (built-in or entry
point). A plugin that fails to import, fails validation against :mod:`cellxfer.hookspecs`, or raises
from a hook is named in a warning and skipped; the rest keeps working.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

import pluggy

from cellxfer import hookspecs
from cellxfer.console import warn
from cellxfer.errors import PluginError

ENTRY_POINT_GROUP = "cellxfer"
DISABLE_ENV = "CELLXFER_DISABLE_PLUGINS"

#: Built-in plugins: (name, module). They implement the same hooks a third-party plugin does.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("core", "cellxfer.stages.core"),
    ("synth", "cellxfer.stages.synth"),
    ("stylize", "cellxfer.stages.stylize"),
    ("imageio", "cellxfer.imageio"),
    ("executors", "cellxfer.executors"),
    ("export", "cellxfer.stages.export"),
    ("count", "cellxfer.stages.count"),
    ("train-count", "cellxfer.stages.train_count"),
    ("adapt-count", "cellxfer.stages.adapt_count"),
    ("density", "cellxfer.stages.density"),
    ("ensemble", "cellxfer.stages.ensemble"),
    ("translate", "cellxfer.stages.translate"),
)

#: What a broken plugin's import or hook may raise without ending the CLI: any error, and ``sys.exit()`` (a
#: module that exits when its own dependency is missing); Ctrl-C still ends it.
PLUGIN_FAULTS = (Exception, SystemExit)

#: Hooks that return lists of named objects (each with the attributes :data:`cellxfer.hookspecs.PROVIDES` names).
PROVIDER_HOOKS = tuple(hookspecs.PROVIDES)


@dataclass
class PluginInfo:
    """What the registry knows of one plugin (shown by ``cellxfer plugins``)."""

    name: str
    source: str  # "builtin" or "entry point"
    module: str
    distribution: str | None = None
    version: str | None = None
    status: str = "loaded"  # loaded | failed | disabled
    error: str | None = None
    provides: dict[str, list[str]] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        if self.source == "builtin":
            return "builtin"
        dist = f"{self.distribution} {self.version}" if self.distribution else "unknown distribution"
        return f"entry point ({dist})"


def disabled_names() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


class Registry:
    """A pluggy PluginManager plus the bookkeeping ``cellxfer plugins`` shows."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self._provided: dict[str, dict[str, Any]] = {}

    # -- loading ---------------------------------------------------------------------------------
    def load(self, builtins=BUILTIN_PLUGINS, use_entry_points: bool = True) -> "Registry":
        disabled = disabled_names()
        for name, module in builtins:
            info = PluginInfo(name=name, source="builtin", module=module)
            self._add(info, lambda module=module: import_module(module), disabled)
        if use_entry_points:
            for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                dist = getattr(ep, "dist", None)
                info = PluginInfo(
                    name=ep.name,
                    source="entry point",
                    module=ep.value,
                    distribution=dist.metadata["Name"] if dist is not None else None,
                    version=dist.version if dist is not None else None,
                )
                self._add(info, ep.load, disabled)
        self._collect()
        return self

    def register(self, obj, name: str, source: str = "entry point") -> None:
        """Register an already imported plugin object (tests, notebooks)."""
        info = PluginInfo(name=name, source=source, module=getattr(obj, "__name__", repr(obj)))
        self._add(info, lambda: obj, set())
        self._collect()

    def _add(self, info: PluginInfo, loader, disabled: set[str]) -> None:
        if info.name in self.infos:
            warn(f"plugin '{info.name}' from {info.origin} has the name of an already loaded plugin; skipped")
            return
        self.infos[info.name] = info
        if info.name in disabled:
            info.status = "disabled"
            return
        try:
            plugin = loader()
            self.pm.register(plugin, name=info.name)
            self.pm.check_pending()
        except PLUGIN_FAULTS as exc:  # a broken plugin must not break the CLI
            self._fail(info, f"failed to load: {type(exc).__name__}: {exc}")

    def _fail(self, info: PluginInfo, why: str) -> None:
        info.status, info.error = "failed", why
        plugin = self.pm.get_plugin(info.name)
        if plugin is not None:
            self.pm.unregister(plugin)
        warn(f"plugin '{info.name}' ({info.origin}) {why}; skipped")

    # -- calling hooks with per-plugin isolation -----------------------------------------------
    def call(self, hook_name: str, **kwargs) -> list[tuple[str, Any]]:
        """Call ``hook_name`` on every loaded plugin, one at a time: a plugin that raises is reported
        and unregistered, and the others still answer. Returns ``[(plugin_name, result), ...]`` in
        registration order (built-ins first)."""
        results = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            info = self.infos.get(impl.plugin_name)
            try:
                result = impl.function(*[kwargs[a] for a in impl.argnames])
            except PLUGIN_FAULTS as exc:
                if info is not None:
                    self._fail(info, f"raised in {hook_name}: {type(exc).__name__}: {exc}")
                continue
            if result is not None:
                results.append((impl.plugin_name, result))
        return results

    def _collect(self) -> None:
        self._provided = {hook: {} for hook in PROVIDER_HOOKS}
        for info in self.infos.values():
            info.provides = {k: v for k, v in info.provides.items() if k == "commands"}
        for hook in PROVIDER_HOOKS:
            for plugin_name, items in self.call(hook):
                info = self.infos[plugin_name]
                if not isinstance(items, (list, tuple)):
                    warn(f"plugin '{plugin_name}' returned {type(items).__name__} from {hook}, not a list; ignored")
                    continue
                for item in items:
                    name = getattr(item, "name", None)
                    if not isinstance(name, str) or not name:
                        warn(f"plugin '{plugin_name}' returned an unnamed object from {hook}; ignored")
                        continue
                    lacks = [a for a in hookspecs.PROVIDES[hook] if not hasattr(item, a)]
                    if lacks:
                        warn(f"plugin '{plugin_name}' provides {_kind(hook)} '{name}' without {', '.join(lacks)}; ignored")
                        continue
                    if name in self._provided[hook]:
                        warn(f"plugin '{plugin_name}' provides {_kind(hook)} '{name}', already provided; ignored")
                        continue
                    self._provided[hook][name] = item
                    if hook != "cellxfer_commands":  # a spec is listed as its command (register_commands)
                        info.provides.setdefault(_kind(hook), []).append(name)

    # -- what plugins provide ------------------------------------------------------------------
    def provided(self, hook_name: str) -> dict[str, Any]:
        return dict(self._provided.get(hook_name, {}))

    def get(self, hook_name: str, name: str) -> Any:
        items = self._provided.get(hook_name, {})
        if name not in items:
            known = ", ".join(sorted(items)) or "none"
            raise PluginError(f"no {_kind(hook_name)} named '{name}' (available: {known}); see `cellxfer plugins`")
        return items[name]

    def commands(self) -> dict[str, Any]:
        """Command name -> its :class:`cellxfer.commands.CommandSpec`."""
        return self.provided("cellxfer_commands")

    def synthesizers(self) -> dict[str, Any]:
        return self.provided("cellxfer_synthesizers")

    def stylizers(self) -> dict[str, Any]:
        return self.provided("cellxfer_stylizers")

    def image_readers(self) -> dict[str, Any]:
        return self.provided("cellxfer_image_readers")

    def executors(self) -> dict[str, Any]:
        return self.provided("cellxfer_executors")

    def register_commands(self, app) -> None:
        """Let every plugin add its commands to ``app``; record which plugin added which."""
        for impl in self.pm.hook.cellxfer_register_commands.get_hookimpls():
            before = {c.name or c.callback.__name__ for c in app.registered_commands}
            before_groups = {g.name for g in app.registered_groups}
            n_cmd, n_grp = len(app.registered_commands), len(app.registered_groups)
            info = self.infos[impl.plugin_name]
            try:
                impl.function(app=app)
            except PLUGIN_FAULTS as exc:
                del app.registered_commands[n_cmd:]
                del app.registered_groups[n_grp:]
                self._fail(info, f"raised in cellxfer_register_commands: {type(exc).__name__}: {exc}")
                continue
            added = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands[n_cmd:]]
            added += [g.name for g in app.registered_groups[n_grp:]]
            clash = [a for a in added if a in before or a in before_groups]
            if clash:
                del app.registered_commands[n_cmd:]
                del app.registered_groups[n_grp:]
                self._fail(info, f"adds command(s) {', '.join(clash)} that already exist")
                continue
            if added:
                info.provides["commands"] = added
        self._guard_commands(app)

    def _guard_commands(self, app) -> None:
        """Every command checks the environment, and the extra its spec names, before its body runs
        (:func:`cellxfer.environment.guarded`)."""
        from cellxfer.environment import guarded

        specs = self.commands()
        for command in app.registered_commands:
            name = command.name or command.callback.__name__.replace("_", "-")
            spec = specs.get(name)
            command.callback = guarded(name, spec.extra if spec is not None else "", command.callback)


def _kind(hook_name: str) -> str:
    return {
        "cellxfer_commands": "command spec",
        "cellxfer_synthesizers": "synthesizer",
        "cellxfer_stylizers": "stylizer",
        "cellxfer_image_readers": "image reader",
        "cellxfer_executors": "executor",
        "cellxfer_engines": "engine",
        "cellxfer_counter_architectures": "counter architecture",
    }.get(hook_name, hook_name)


@functools.cache
def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    return Registry().load()
