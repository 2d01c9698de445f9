"""The plugin manager: guarded entry-point loading and one registry per capability.

Plugins are modules named by entry points in the ``nydus`` group. Each loads on its own: a broken
plugin is recorded (``nydus plugins`` shows it with its cause) and the rest keep working.
``NYDUS_STRICT_PLUGINS=1`` makes any load failure (and any name clash) fatal;
``NYDUS_DISABLE_PLUGINS=a,b`` blocks entry points by name. Nothing in the read hot path goes through
pluggy: registries are plain dicts filled once at load time.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pluggy

from . import __version__, hookspecs
from .errors import (
    DuplicatePluginError,
    PluginError,
    PluginLoadError,
    UnknownPluginError,
    UsageError,
    describe,
)
from .interfaces import (
    Backend,
    CachePolicy,
    Compressor,
    Converter,
    Digester,
    Frontend,
    Prefetcher,
)
from .pluginapi import api_mismatch

__all__ = [
    "CAPABILITIES",
    "COMMANDS_HOOK",
    "CORE_PLUGIN",
    "FIRST_PARTY",
    "GROUP",
    "RESOLVE_IMAGE_HOOK",
    "UPSTREAM_IDS",
    "Capability",
    "PluginManager",
    "PluginRecord",
    "Registry",
    "compressor_by_id",
    "digester_by_id",
    "get_compressor",
    "get_digester",
    "get_manager",
    "registry",
    "set_manager",
]

GROUP = "nydus"
CORE_PLUGIN = "core"
COMMANDS_HOOK = "nydus_register_commands"
RESOLVE_IMAGE_HOOK = "nydus_resolve_image"

T = TypeVar("T")


@dataclass(frozen=True)
class Capability:
    """One kind of thing plugins provide: its hook, interface and the words used in messages."""

    kind: str
    hook: str
    interface: type
    plural: str


CAPABILITIES: dict[str, Capability] = {
    c.kind: c
    for c in (
        Capability("backend", "nydus_register_backends", Backend, "backends"),
        Capability("compressor", "nydus_register_compressors", Compressor, "compressors"),
        Capability("digester", "nydus_register_digesters", Digester, "digesters"),
        Capability("cache", "nydus_register_caches", CachePolicy, "caches"),
        Capability("prefetcher", "nydus_register_prefetchers", Prefetcher, "prefetchers"),
        Capability("frontend", "nydus_register_frontends", Frontend, "frontends"),
        Capability("converter", "nydus_register_converters", Converter, "converters"),
    )
}

#: First-party names and the distribution that provides them, for the install hint.
FIRST_PARTY: dict[tuple[str, str], str] = {
    ("backend", "localfs"): "nydus-backend-localfs",
    ("backend", "registry"): "nydus-backend-registry",
    ("backend", "s3"): "nydus-backend-s3",
    ("backend", "oss"): "nydus-backend-oss",
    ("compressor", "zstd"): "nydus-compressor-zstd",
    ("compressor", "lz4_block"): "nydus-compressor-lz4",
    ("digester", "blake3"): "nydus-digester-blake3",
    ("cache", "blobcache"): "nydus-cache-blobcache",
    ("cache", "filecache"): "nydus-cache-blobcache",
    ("prefetcher", "table"): "nydus-prefetch-table",
    ("prefetcher", "files"): "nydus-prefetch-files",
    ("prefetcher", "all"): "nydus-prefetch-all",
    ("frontend", "fuse"): "nydus-frontend-fuse",
    ("converter", "oci"): "nydus-converter-oci",
}


#: The meta-distribution that installs nydus-core with the plugins a default install needs.
META_DISTRIBUTION = "nydus-py"
#: The distributions ``nydus-py`` installs (kept equal to its pyproject by a test).
DEFAULT_SET = frozenset({
    "nydus-compressor-zstd", "nydus-compressor-lz4", "nydus-compressor-gzip",
    "nydus-digester-blake3", "nydus-backend-localfs",
    "nydus-cache-blobcache", "nydus-prefetch-table", "nydus-prefetch-files", "nydus-prefetch-all",
    "nydus-frontend-fuse",
})


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@dataclass
class PluginRecord:
    """What ``nydus plugins`` shows about one plugin: where it came from and what it provides."""

    name: str
    distribution: str | None
    version: str | None
    module: str
    provides: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    disabled: bool = False

    @property
    def label(self) -> str:
        """The entry-point name, with the distribution when it is known (for messages)."""
        return f"'{self.name}' ({self.distribution})" if self.distribution else f"'{self.name}'"

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "provides": {k: sorted(v) for k, v in self.provides.items() if v},
            "error": self.error,
            "disabled": self.disabled,
        }


class Registry(Generic[T]):
    """The classes of one capability, keyed by name (plus aliases).

    A name provided by two plugins is a conflict: it is not usable, and asking for it raises
    :class:`~nydus_core.errors.DuplicatePluginError` naming both providers.
    """

    def __init__(self, capability: Capability, manager: PluginManager) -> None:
        self.capability = capability
        self._manager = manager
        self._entries: dict[str, type[T]] = {}
        self._providers: dict[str, str] = {}
        self._conflicts: dict[str, list[str]] = {}

    def _add(self, cls: type[Any], plugin: str) -> None:
        names = [cls.name, *getattr(cls, "aliases", ())]
        for name in dict.fromkeys(names):
            if name in self._conflicts:
                self._conflicts[name].append(plugin)
            elif name in self._entries and self._entries[name] is not cls:
                self._conflicts[name] = [self._providers.pop(name), plugin]
                del self._entries[name]
            else:
                self._entries[name] = cls
                self._providers[name] = plugin

    def conflict_message(self, name: str) -> str:
        """Return the message for a name that several plugins provide."""
        plugins = self._conflicts[name]
        labels = [self._manager.records[p].label if p in self._manager.records else f"'{p}'" for p in plugins]
        how_many = "two plugins" if len(plugins) == 2 else f"{len(plugins)} plugins"
        return (
            f"{self.capability.kind} '{name}' is provided by {how_many}: {_join(labels)}; "
            f"uninstall one, or disable it with NYDUS_DISABLE_PLUGINS={plugins[-1]}"
        )

    def conflicts(self) -> dict[str, list[str]]:
        """Return the names provided by more than one plugin, with those plugins."""
        return {k: list(v) for k, v in sorted(self._conflicts.items())}

    def names(self) -> list[str]:
        """Return every usable registered name, aliases included, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def provider(self, name: str) -> str:
        """Return the plugin (entry-point name) that provides ``name``."""
        return self._providers[name]

    def items(self) -> Iterable[tuple[str, type[T]]]:
        """Return ``(name, class)`` pairs."""
        return sorted(self._entries.items())

    def get(self, name: str, *, where: str | None = None) -> type[T]:
        """Return the class registered as ``name``, or raise a kind :class:`PluginError`.

        ``where`` says where the name came from (``"in /etc/nydusd.json"``, ``"recorded in the image"``).
        An unknown name raises UnknownPluginError (with an install hint or a suggestion); a name two
        plugins provide raises DuplicatePluginError naming both.
        """
        try:
            return self._entries[name]
        except KeyError:
            pass
        if name in self._conflicts:
            raise DuplicatePluginError(self.conflict_message(name))
        raise UnknownPluginError(self._manager.unknown_message(self.capability, name, where))

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        """Instantiate the class registered as ``name``."""
        return self.get(name)(*args, **kwargs)


class PluginManager:
    """Loads plugins from entry points, guarded, and builds one registry per capability.

    ``strict`` and ``disabled`` default to ``NYDUS_STRICT_PLUGINS`` and ``NYDUS_DISABLE_PLUGINS``;
    ``entry_points`` defaults to the installed entry points of the ``nydus`` group.
    """

    def __init__(
        self,
        *,
        strict: bool | None = None,
        disabled: Iterable[str] | None = None,
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
    ) -> None:
        self.strict = _truthy(os.environ.get("NYDUS_STRICT_PLUGINS")) if strict is None else strict
        if disabled is None:
            disabled = os.environ.get("NYDUS_DISABLE_PLUGINS", "").split(",")
        self.disabled = {d.strip() for d in disabled if d.strip()}
        self._entry_points = entry_points
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.registries: dict[str, Registry[Any]] = {
            kind: Registry(cap, self) for kind, cap in CAPABILITIES.items()
        }
        self._loaded = False
        self._load_error: PluginError | None = None
        self._filled: set[str] = set()  # capability kinds whose register hooks have run
        self._fill_error: PluginError | None = None
        self._lock = threading.RLock()

    # -- loading -------------------------------------------------------------------------------

    def load(self) -> PluginManager:
        """Load the core's own providers and every entry point (registries fill on first use, or
        here in strict mode).

        Safe to call again (and from several threads): loading happens once. In strict mode the
        first failure is raised, and raised again on later calls.
        """
        with self._lock:
            if self._load_error is not None:
                raise self._load_error
            if self._loaded:
                return self
            self._loaded = True
            try:
                self._load()
            except PluginError as exc:
                self._load_error = exc
                raise
        if self.strict:  # strict mode (CI) surfaces every hook failure at start-up
            self._ensure_filled()
        return self

    def _load(self) -> None:
        from . import builtins

        self.records[CORE_PLUGIN] = PluginRecord(CORE_PLUGIN, "nydus-core", __version__, builtins.__name__)
        self.pm.register(builtins, name=CORE_PLUGIN)
        for ep in self._iter_entry_points():
            self._load_entry_point(ep)
        self.check_pending()

    def _iter_entry_points(self) -> list[importlib.metadata.EntryPoint]:
        eps = (
            list(self._entry_points)
            if self._entry_points is not None
            else list(importlib.metadata.entry_points(group=GROUP))
        )
        seen: dict[str, importlib.metadata.EntryPoint] = {}
        for ep in eps:
            seen.setdefault(ep.name, ep)
        return sorted(seen.values(), key=lambda e: e.name)

    def _load_entry_point(self, ep: importlib.metadata.EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        record = PluginRecord(
            name=ep.name,
            distribution=dist.name if dist is not None else None,
            version=dist.version if dist is not None else None,
            module=ep.value,
        )
        if ep.name == CORE_PLUGIN:
            record.error = "the entry-point name 'core' is reserved for nydus-core"
            self.records[f"{ep.name} ({record.distribution or ep.value})"] = record
            return
        self.records[ep.name] = record
        if ep.name in self.disabled:
            record.disabled = True
            return
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not break the others
            self._fail(record, exc)
            return
        mismatch = api_mismatch(module, ep.value, __version__)
        if mismatch is not None:
            self._fail(record, mismatch)
            return
        try:
            self.pm.register(module, name=ep.name)
        except Exception as exc:
            self._fail(record, exc)

    def _fail(self, record: PluginRecord, exc: BaseException | str) -> None:
        record.error = exc if isinstance(exc, str) else describe(exc)
        if self.pm.has_plugin(record.name):
            self.pm.unregister(name=record.name)
        if self.strict:
            raise PluginLoadError(
                f"plugin {record.label} failed to load: {record.error} (NYDUS_STRICT_PLUGINS is set)"
            ) from (exc if isinstance(exc, BaseException) else None)

    def check_pending(self) -> None:
        """Fail a plugin whose hook implementations match no hook spec (a misspelt hook name).

        The plugin is reported as failed (fatal in strict mode); the others keep working.
        """
        while True:
            try:
                self.pm.check_pending()
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin) or str(exc.plugin)
                record = self.records.get(name)
                unknown = sorted(
                    attr for attr in dir(exc.plugin)
                    if self.pm.parse_hookimpl_opts(exc.plugin, attr) is not None
                    and not hasattr(hookspecs, attr)
                )
                what = ", ".join(unknown) or str(exc)
                hint = ""
                if unknown:
                    close = difflib.get_close_matches(unknown[0], _hook_names(), n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                message = f"implements an unknown hook: {what}{hint}"
                if record is None:
                    raise PluginLoadError(f"plugin '{name}' {message}") from exc
                self._fail(record, message)
            else:
                return

    def _ensure_filled(self, kind: str | None = None) -> None:
        """Call the register hooks once, on first need (so ``--help`` imports no implementation);
        with ``kind`` only that capability's (a build imports no backend, ~0.4 s of start-up)."""
        self.load()
        with self._lock:
            if self._fill_error is not None:
                raise self._fill_error
            todo = [k for k in ([kind] if kind in CAPABILITIES else CAPABILITIES) if k not in self._filled]
            if not todo:
                return
            self._filled.update(todo)
            try:
                self._fill(todo)
                conflicts = self.conflicts()
                if self.strict and conflicts:
                    raise DuplicatePluginError(conflicts[0] + " (NYDUS_STRICT_PLUGINS is set)")
            except PluginError as exc:
                self._fill_error = exc
                raise

    def _fill(self, kinds: list[str]) -> None:
        impls: dict[str, dict[str, Any]] = {}
        for cap in (CAPABILITIES[k] for k in kinds):
            for impl in getattr(self.pm.hook, cap.hook).get_hookimpls():
                impls.setdefault(impl.plugin_name, {})[cap.kind] = impl
        for plugin, record in list(self.records.items()):
            if record.error or record.disabled or plugin not in impls:
                continue
            provided: dict[str, list[type[Any]]] = {}
            try:
                for kind, impl in impls[plugin].items():
                    provided[kind] = _checked_classes(CAPABILITIES[kind], impl.function())
            except Exception as exc:
                self._fail(record, exc)
                continue
            for kind, classes in provided.items():
                for cls in classes:
                    self.registries[kind]._add(cls, plugin)
                    record.provides.setdefault(kind, []).append(cls.name)

    def add_commands(self, cli: Any) -> None:
        """Let every plugin add its click commands to ``cli`` (guarded per plugin).

        A plugin that raises, or that replaces a command someone else added, is reported as failed and
        its commands are removed.
        """
        self.load()
        for impl in reversed(getattr(self.pm.hook, COMMANDS_HOOK).get_hookimpls()):
            record = self.records[impl.plugin_name]
            if record.error:
                continue
            before = dict(getattr(cli, "commands", {}))
            try:
                impl.function(cli=cli)
                after = getattr(cli, "commands", {})
                replaced = sorted(n for n, cmd in before.items() if after.get(n) is not cmd)
                if replaced:
                    raise PluginError(f"it replaces the existing command(s) {', '.join(replaced)}")
            except Exception as exc:
                if hasattr(cli, "commands"):
                    cli.commands.clear()
                    cli.commands.update(before)
                self._fail(record, exc)
                continue
            added = sorted(set(getattr(cli, "commands", {})) - set(before))
            if added:
                record.provides.setdefault("command", []).extend(added)

    # -- lookup --------------------------------------------------------------------------------

    def registry(self, kind: str) -> Registry[Any]:
        """Return the registry of one capability (``backend``, ``compressor``, ...)."""
        self._ensure_filled(kind)
        try:
            return self.registries[kind]
        except KeyError:
            raise UsageError(
                f"unknown plugin kind '{kind}' (one of: {', '.join(CAPABILITIES)})"
            ) from None

    def conflicts(self) -> list[str]:
        """Return one message per name that several plugins provide."""
        return [reg.conflict_message(name) for reg in self.registries.values() for name in reg.conflicts()]

    def _record_of_distribution(self, dist: str) -> PluginRecord | None:
        ep_name = dist.removeprefix("nydus-")
        for record in self.records.values():
            if (record.distribution and record.distribution.lower() == dist) or record.name == ep_name:
                return record
        return None

    def unknown_message(self, cap: Capability, name: str, where: str | None) -> str:
        """Build the message for a name no plugin provides, with the install hint or a suggestion."""
        self._ensure_filled()  # every plugin's failure may be the one that was meant
        registry = self.registries[cap.kind]
        installed = ", ".join(registry.names()) or "none"
        subject = f"Unknown {cap.kind} '{name}'" + (f" ({where})" if where else "")
        dist = FIRST_PARTY.get((cap.kind, name))
        if dist:
            record = self._record_of_distribution(dist)
            if record is not None and record.disabled:
                return f"{subject}: {dist} is installed but disabled by NYDUS_DISABLE_PLUGINS."
            if record is not None and record.error:
                return f"{subject}: {dist} is installed but failed to load: {record.error}"
            if record is not None:
                return (
                    f"{subject}: {dist} {record.version or ''} is installed but does not provide it. "
                    f"Installed {cap.plural}: {installed}."
                ).replace("  ", " ")
            also = f" (or: pip install {META_DISTRIBUTION}, the default set)" if dist in DEFAULT_SET else ""
            return (f"{subject}. Installed {cap.plural}: {installed}. Install it with: pip install {dist}"
                    f"{also}{self._failed_note()}")
        close = difflib.get_close_matches(name, registry.names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return f"{subject}. Installed {cap.plural}: {installed}.{hint}{self._failed_note()}"

    def _failed_note(self) -> str:
        """Name the plugins that failed to load (any of them may be the one that was meant)."""
        failed = [r for r in self.records.values() if r.error and not r.disabled]
        return "".join(f" Plugin {r.label} failed to load: {(r.error or '').rstrip('.')}." for r in failed)

    def failures(self) -> list[PluginRecord]:
        """Return the plugins that failed to load."""
        self._ensure_filled()
        return [r for r in self.records.values() if r.error]


def _hook_names() -> list[str]:
    return [n for n in dir(hookspecs) if n.startswith("nydus_") and callable(getattr(hookspecs, n))]


def _checked_classes(cap: Capability, result: Any) -> list[type[Any]]:
    """Normalise a register hook's result to a list of classes, or raise TypeError saying what is wrong."""
    if result is None:
        return []
    classes = list(result) if isinstance(result, list | tuple) else [result]
    for cls in classes:
        if not isinstance(cls, type):
            raise TypeError(f"{cap.hook} returned {cls!r}, not a class")
        if not issubclass(cls, cap.interface):
            raise TypeError(
                f"{cap.hook} returned {cls.__qualname__}, not a {cap.interface.__name__} subclass"
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cap.hook} returned {cls.__qualname__}, which has no 'name'")
        aliases = getattr(cls, "aliases", ())
        if not isinstance(aliases, tuple | list) or not all(isinstance(a, str) and a for a in aliases):
            raise TypeError(f"{cls.__qualname__}.aliases must be a tuple of names")
    return classes


_manager: PluginManager | None = None
_lock = threading.Lock()


def get_manager() -> PluginManager:
    """Return the process-wide plugin manager, loading plugins on first use."""
    global _manager
    with _lock:
        if _manager is None:
            _manager = PluginManager()
        manager = _manager
    return manager.load()


def set_manager(manager: PluginManager | None) -> None:
    """Replace the process-wide manager (tests use this with a manager of their own)."""
    global _manager
    with _lock:
        _manager = manager


def registry(kind: str) -> Registry[Any]:
    """Return the registry of one capability from the process-wide manager."""
    return get_manager().registry(kind)


def get_compressor(name: str, *, where: str | None = None) -> Compressor:
    """Return an instance of the compressor registered as ``name``."""
    cls: type[Compressor] = registry("compressor").get(name, where=where)
    return cls()


def get_digester(name: str, *, where: str | None = None) -> Digester:
    """Return an instance of the digester registered as ``name``."""
    cls: type[Digester] = registry("digester").get(name, where=where)
    return cls()


def compressor_by_id(algorithm_id: int, *, where: str | None = None) -> Compressor:
    """Return the compressor whose upstream on-disk id is ``algorithm_id``."""
    cls: type[Compressor] = _class_by_id("compressor", algorithm_id, where)
    return cls()


def digester_by_id(algorithm_id: int, *, where: str | None = None) -> Digester:
    """Return the digester whose upstream on-disk id is ``algorithm_id``."""
    cls: type[Digester] = _class_by_id("digester", algorithm_id, where)
    return cls()


# Upstream's names for its on-disk ids, so an image needing a missing plugin gets the install hint.
UPSTREAM_IDS: dict[str, dict[int, str]] = {
    "compressor": {0: "none", 1: "lz4_block", 2: "gzip", 3: "zstd"},
    "digester": {0: "blake3", 1: "sha256"},
}


def _class_by_id(kind: str, algorithm_id: int, where: str | None) -> Any:
    reg = registry(kind)
    matches = {cls for _name, cls in reg.items() if cls.algorithm_id == algorithm_id}
    if len(matches) > 1:  # never let registration order pick one
        names = sorted(f"'{cls.name}' ({reg.provider(cls.name)})" for cls in matches)
        raise DuplicatePluginError(f"{kind} id {algorithm_id} is claimed by {' and '.join(names)}; "
                                   f"uninstall or disable one (NYDUS_DISABLE_PLUGINS)")
    if matches:
        return matches.pop()
    name = UPSTREAM_IDS[kind].get(algorithm_id, f"id {algorithm_id}")
    return reg.get(name, where=where)
