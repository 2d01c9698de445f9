"""A test suite checking that an installed plugin distribution's entry point is really wired.

Subclass :class:`EntryPointSuite` in the plugin's tests and set its class attributes: the suite runs
``nydus plugins --json`` and ``nydus plugins --check`` and checks that registering the plugin does not
import its heavy SDK (so ``nydus --help`` stays fast).
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from typing import ClassVar

from .cli import nydus_plugins_json, plugin_record, run_nydus

__all__ = ["EntryPointSuite"]


class EntryPointSuite:
    """`nydus plugins` lists the plugin with its distribution, version, module and what it provides."""

    #: The entry-point name, ``<kind>-<name>`` (the distribution is ``nydus-<entry_point>``).
    entry_point: ClassVar[str]
    #: What it registers, as ``nydus plugins --json`` shows it: ``{"backend": ["s3"]}``.
    provides: ClassVar[dict[str, list[str]]]
    #: The dotted path of the class ``nydus plugins --check`` names for the first thing it provides.
    implementation: ClassVar[str]
    #: Modules (the SDK) that registering must not import.
    lazy_modules: ClassVar[tuple[str, ...]] = ()
    #: True: fetching the class from the registry imports none of :attr:`lazy_modules` (the SDK is
    #: imported on first use); False: only importing the ``hooks`` module imports none of them.
    lazy_through_registry: ClassVar[bool] = True

    @property
    def distribution(self) -> str:
        """``nydus-<entry_point>``."""
        return f"nydus-{self.entry_point}"

    @property
    def hooks_module(self) -> str:
        """``nydus_<kind>_<name>.hooks``."""
        return f"{self.distribution.replace('-', '_')}.hooks"

    def _first(self) -> tuple[str, str]:
        kind, names = next(iter(self.provides.items()))
        return kind, names[0]

    def test_listed_by_nydus_plugins(self) -> None:
        listing = nydus_plugins_json()
        record = plugin_record(listing, self.entry_point)
        assert record["distribution"] == self.distribution
        assert record["version"] == version(self.distribution)
        assert record["module"] == self.hooks_module
        assert record["error"] is None and record["disabled"] is False
        assert record["provides"] == self.provides
        for kind, names in self.provides.items():
            for name in names:
                assert name in listing["capabilities"][kind]

    def test_check_finds_it(self) -> None:
        kind, name = self._first()
        proc = run_nydus("plugins", "--check", f"{kind}:{name}")
        assert proc.returncode == 0, proc.stderr
        assert self.implementation in proc.stdout

    def test_registering_does_not_import_the_sdk(self) -> None:
        """Heavy SDK imports happen on first use, so `nydus --help` and `nydus plugins` stay fast."""
        kind, name = self._first()
        cls_name = self.implementation.rsplit(".", 1)[1]
        if self.lazy_through_registry:
            load = (
                "from nydus_core.plugins import registry\n"
                f"cls = registry({kind!r}).get({name!r})\n"
                f"assert cls.__name__ == {cls_name!r}\n"
            )
        else:
            load = f"import {self.hooks_module}\n"
        code = f"import sys\n{load}print(sorted(m for m in {self.lazy_modules!r} if m in sys.modules))\n"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "[]"
