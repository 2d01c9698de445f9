"""Small plugins for testing the plugin manager, good and bad, each a namespace class that an entry
point can name: ``EntryPoint("x", "nydus_testsupport.sample_plugins:EveryHook", "nydus")``.

:func:`entry_point` builds such an entry point. :class:`EveryHook` implements every hook; the others
each break the contract in one way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint
from typing import Any

import click
from nydus_testkit.fakes import DirectoryChunkCache, MemoryBackend

from nydus_core.hookspecs import hookimpl
from nydus_core.interfaces import (
    Backend,
    Compressor,
    Converter,
    ConvertOptions,
    Digester,
    Frontend,
    HashObject,
    Prefetcher,
    ServeOptions,
)
from nydus_core.pluginapi import PLUGIN_API_VERSION

__all__ = ["SAMPLE_NAMES", "entry_point"]


def entry_point(name: str, target: str) -> EntryPoint:
    """Return an entry point of the ``nydus`` group named ``name``.

    ``target`` is a sample plugin of this module (``"EveryHook"``) or else a module path or
    ``module:attr`` (``"my_test_module"``).
    """
    value = f"{__name__}:{target}" if target in globals() else target
    return EntryPoint(name=name, value=value, group="nydus")


class SampleBackend(MemoryBackend):
    """A backend named ``sample``."""

    name = "sample"


class SampleCompressor(Compressor):
    """A compressor named ``sample-xor`` (xor with 0x5a; upstream has no id for it)."""

    name = "sample-xor"

    def compress(self, data: bytes) -> bytes:
        """Xor every byte with 0x5a."""
        return bytes(b ^ 0x5A for b in data)

    def decompress(self, data: bytes, uncompressed_size: int) -> bytes:
        """Undo :meth:`compress`."""
        return bytes(b ^ 0x5A for b in data)


class _Sum:
    def __init__(self) -> None:
        self.total = 0

    def update(self, data: bytes, /) -> None:
        self.total = (self.total + sum(data)) % (1 << 256)

    def digest(self) -> bytes:
        return self.total.to_bytes(32, "big")


class SampleDigester(Digester):
    """A digester named ``sample-sum`` (the byte sum; for tests only)."""

    name = "sample-sum"

    def new(self) -> HashObject:
        """Return a fresh byte-sum object."""
        return _Sum()


class SampleCache(DirectoryChunkCache):
    """A cache policy named ``sample-cache`` (alias ``sample-cache-alias``)."""

    name = "sample-cache"
    aliases = ("sample-cache-alias",)


class SamplePrefetcher(Prefetcher):
    """A prefetcher named ``sample-prefetch`` that records what it was asked to do."""

    name = "sample-prefetch"

    def start(self, image: Any, pipeline: Any, hints: Iterable[str] = ()) -> None:
        """Remember the hints."""
        self.hints = list(hints)

    def stop(self) -> None:
        """Nothing to stop."""


class SampleFrontend(Frontend):
    """A frontend named ``sample-frontend`` that serves nothing."""

    name = "sample-frontend"

    def serve(self, options: ServeOptions) -> int:
        """Return 0 at once."""
        return 0


class SampleConverter(Converter):
    """A converter named ``sample-converter`` that reports what it was given."""

    name = "sample-converter"

    def convert(self, source: str, target: str, options: ConvertOptions | None = None) -> dict[str, Any]:
        """Return the arguments as the summary."""
        return {"source": source, "target": target, "options": options}


#: What :class:`EveryHook` provides, per capability (and the command it adds).
SAMPLE_NAMES: Mapping[str, tuple[type, str]] = {
    "backend": (SampleBackend, "sample"),
    "compressor": (SampleCompressor, "sample-xor"),
    "digester": (SampleDigester, "sample-sum"),
    "cache": (SampleCache, "sample-cache"),
    "prefetcher": (SamplePrefetcher, "sample-prefetch"),
    "frontend": (SampleFrontend, "sample-frontend"),
    "converter": (SampleConverter, "sample-converter"),
}


@click.command("sample-hello")
@click.argument("who", default="world")
def sample_hello(who: str) -> None:
    """Say hello (added by the sample plugin)."""
    click.echo(f"hello, {who}, from a sample plugin")


class _Declared:
    """Base of the sample plugins: declares the plugin API they were written for."""

    NYDUS_PLUGIN_API = PLUGIN_API_VERSION


class EveryHook(_Declared):
    """Implements every hook, each returning the sample class of its capability."""

    @staticmethod
    @hookimpl
    def nydus_register_backends() -> type[Backend]:
        return SampleBackend

    @staticmethod
    @hookimpl
    def nydus_register_compressors() -> list[type[Compressor]]:
        return [SampleCompressor]

    @staticmethod
    @hookimpl
    def nydus_register_digesters() -> tuple[type[Digester], ...]:
        return (SampleDigester,)

    @staticmethod
    @hookimpl
    def nydus_register_caches() -> list[type[DirectoryChunkCache]]:
        return [SampleCache]

    @staticmethod
    @hookimpl
    def nydus_register_prefetchers() -> list[type[Prefetcher]]:
        return [SamplePrefetcher]

    @staticmethod
    @hookimpl
    def nydus_register_frontends() -> list[type[Frontend]]:
        return [SampleFrontend]

    @staticmethod
    @hookimpl
    def nydus_register_converters() -> list[type[Converter]]:
        return [SampleConverter]

    @staticmethod
    @hookimpl
    def nydus_register_commands(cli: click.Group) -> None:
        cli.add_command(sample_hello)

    @staticmethod
    @hookimpl
    def nydus_resolve_image(reference: str) -> tuple[str, dict[str, Any]] | None:
        if not reference.startswith("sample.invalid/"):
            return None
        return f"/sample/{reference}.boot", {"device": {"backend": {"type": "sample", "config": {}}}}


class OtherResolver(_Declared):
    """A second plugin resolving ``sample.invalid/`` references (clashes with :class:`EveryHook`)."""

    @staticmethod
    @hookimpl
    def nydus_resolve_image(reference: str) -> tuple[str, dict[str, Any]] | None:
        if not reference.startswith("sample.invalid/"):
            return None
        return "/other/image.boot", {}


class OtherBackend(MemoryBackend):
    """Another backend, named ``other``."""

    name = "other"


class AnotherSampleBackend(MemoryBackend):
    """A different class that also calls itself ``sample``: clashes with :class:`SampleBackend`."""

    name = "sample"


class ClashingCache(DirectoryChunkCache):
    """A cache whose name is :class:`SampleCache`'s alias."""

    name = "sample-cache-alias"


class OtherBackendPlugin(_Declared):
    """A well-behaved plugin providing backend ``other``."""

    @staticmethod
    @hookimpl
    def nydus_register_backends() -> list[type[Backend]]:
        return [OtherBackend]


class DuplicateBackendPlugin(_Declared):
    """Provides a second ``sample`` backend and ``other``."""

    @staticmethod
    @hookimpl
    def nydus_register_backends() -> list[type[Backend]]:
        return [AnotherSampleBackend]


class DuplicateAliasPlugin(_Declared):
    """Provides a cache named like another cache's alias."""

    @staticmethod
    @hookimpl
    def nydus_register_caches() -> list[type[DirectoryChunkCache]]:
        return [ClashingCache]


class MisspeltHook(_Declared):
    """Implements ``nydus_register_backend`` (no s): no such hook."""

    @staticmethod
    @hookimpl
    def nydus_register_backend() -> list[type[Backend]]:
        return [OtherBackend]


class WrongArgumentHook(_Declared):
    """Implements ``nydus_register_commands`` with an argument the spec does not have."""

    @staticmethod
    @hookimpl
    def nydus_register_commands(group: click.Group) -> None:
        """Wrong argument name."""


class _NoName(Backend):
    def size(self, blob_id: str) -> int:
        return 0

    def read(self, blob_id: str, offset: int, length: int) -> bytes:
        return b""


class ReturnsInstance(_Declared):
    """Returns a backend instance instead of a class."""

    @staticmethod
    @hookimpl
    def nydus_register_backends() -> Any:
        return OtherBackend()


class ReturnsWrongKind(_Declared):
    """Returns a compressor class from the backend hook."""

    @staticmethod
    @hookimpl
    def nydus_register_backends() -> Any:
        return [SampleCompressor]


class ReturnsNameless(_Declared):
    """Returns a backend class without a ``name``."""

    @staticmethod
    @hookimpl
    def nydus_register_backends() -> Any:
        return [_NoName]


class ReturnsString(_Declared):
    """Returns a string."""

    @staticmethod
    @hookimpl
    def nydus_register_backends() -> Any:
        return "other"


class RaisesInHook(_Declared):
    """Its hook raises (a missing SDK discovered late, say)."""

    @staticmethod
    @hookimpl
    def nydus_register_backends() -> Any:
        raise RuntimeError("the SDK is not configured")


class HalfBad(_Declared):
    """A good backend hook and a bad compressor hook: nothing of it may be registered."""

    @staticmethod
    @hookimpl
    def nydus_register_backends() -> list[type[Backend]]:
        return [OtherBackend]

    @staticmethod
    @hookimpl
    def nydus_register_compressors() -> Any:
        return [object]


class CommandClash(_Declared):
    """Adds a command named ``plugins``, replacing the core's."""

    @staticmethod
    @hookimpl
    def nydus_register_commands(cli: click.Group) -> None:
        @cli.command("plugins")
        def fake_plugins() -> None:
            """Pretend to be the core's command."""


class CommandRaises(_Declared):
    """Adds one command, then raises."""

    @staticmethod
    @hookimpl
    def nydus_register_commands(cli: click.Group) -> None:
        cli.add_command(click.Command("half-added", callback=lambda: None))
        raise RuntimeError("command registration failed")
