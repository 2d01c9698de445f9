"""The plugin API version: what a plugin declares it was written for, and the check made at load.

nydus-core provides plugin API ``PLUGIN_API_VERSION`` (``MAJOR.MINOR``). The major changes when a
hook, an interface or a public helper changes incompatibly; the minor when something is added. A
plugin's entry-point module declares the version it was written for, as a literal::

    NYDUS_PLUGIN_API = "1.0"

The plugin loads when its major equals the core's and its minor is not newer than the core's;
otherwise it is listed as failed by ``nydus plugins``, with this module's reason, and nothing of it
is registered.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["DECLARATION", "PLUGIN_API_VERSION", "api_mismatch", "parse_api_version"]

#: The plugin API this nydus-core provides.
PLUGIN_API_VERSION: Final = "1.0"
#: The module attribute a plugin sets to the plugin API version it was written for.
DECLARATION: Final = "NYDUS_PLUGIN_API"

_VERSION = re.compile(r"(\d+)\.(\d+)")


def parse_api_version(text: str) -> tuple[int, int] | None:
    """Return ``(major, minor)`` of a ``"MAJOR.MINOR"`` string, or None when it is not one."""
    match = _VERSION.fullmatch(text)
    return (int(match[1]), int(match[2])) if match else None


def api_mismatch(plugin: object, module: str, core_version: str) -> str | None:
    """Return why ``plugin`` (a loaded entry-point object) cannot be used, or None when it can.

    ``module`` names where the declaration belongs (for the message); ``core_version`` is
    nydus-core's package version.
    """
    declared = getattr(plugin, DECLARATION, None)
    if declared is None:
        return (f"declares no plugin API version: add {DECLARATION} = \"{PLUGIN_API_VERSION}\" to {module} "
                f"(the nydus-core plugin API it was written for)")
    wanted = parse_api_version(declared) if isinstance(declared, str) else None
    if wanted is None:
        return f"{DECLARATION} = {declared!r} in {module} is not a \"MAJOR.MINOR\" string such as \"1.0\""
    have = parse_api_version(PLUGIN_API_VERSION)
    assert have is not None
    provided = f"nydus-core {core_version} provides plugin API {PLUGIN_API_VERSION}"
    if wanted[0] != have[0]:
        return (f"built for plugin API {declared} (another major version); {provided}: install a release "
                f"of the plugin made for API {have[0]}.x")
    if wanted[1] > have[1]:
        return f"built for plugin API {declared}; {provided}: upgrade nydus-core"
    return None
