"""Image references: ``[host[:port]/]repo[:tag][@algo:hex]``, with Docker Hub's defaults.

A first component with a ``.`` or ``:``, or ``localhost``, is a registry host; otherwise the
registry is Docker Hub (``docker.io``, API host ``registry-1.docker.io``) and a one-component
repository gets ``library/``. Without tag or digest the tag is ``latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nydus_core.errors import UsageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^(?P<algo>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<hex>[a-fA-F0-9]{32,})$")
_HOST_RE = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?$")
_DIGEST_LEN = {"sha256": 64, "sha512": 128}


@dataclass(frozen=True)
class Reference:
    """A parsed image reference. ``registry`` is as written (``docker.io`` for Docker Hub)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """The host to send API requests to (``registry-1.docker.io`` for Docker Hub)."""
        return DOCKER_HUB_API if self.registry in _HUB_ALIASES else self.registry

    @property
    def reference(self) -> str:
        """The manifest reference to fetch: the digest if there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        """Return this reference with ``tag`` and no digest."""
        if not TAG_RE.match(tag):
            raise UsageError(f"invalid tag {tag!r}")
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> Reference:
        """Return this reference pinned to ``digest`` (the tag is kept for display)."""
        check_digest(digest)
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def check_digest(digest: str) -> str:
    """Validate ``algo:hex`` (sha256 and sha512 lengths are checked); return it."""
    m = DIGEST_RE.match(digest)
    if not m:
        raise UsageError(f"invalid digest {digest!r}: expected algorithm:hex")
    want = _DIGEST_LEN.get(m.group("algo"))
    if want is not None and len(m.group("hex")) != want:
        raise UsageError(f"invalid digest {digest!r}: {m.group('algo')} needs {want} hex digits")
    return digest


def parse_reference(text: str) -> Reference:
    """Parse an image reference; raise :class:`~nydus_core.errors.UsageError` naming what is wrong."""
    ref = text.strip()
    if not ref:
        raise UsageError("empty image reference")
    for prefix in ("docker://", "oci://"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
    if "://" in ref:
        raise UsageError(f"invalid image reference {text!r}: no URL scheme allowed")
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        check_digest(digest)
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _HOST_RE.match(first):
            raise UsageError(f"invalid image reference {text!r}: bad registry host {first!r}")
        registry, remainder = first, rest
    else:
        registry, remainder = DOCKER_HUB, ref
    tag = None
    name, colon, maybe_tag = remainder.rpartition(":")
    if colon and "/" not in maybe_tag:
        remainder, tag = name, maybe_tag
        if not TAG_RE.match(tag):
            raise UsageError(f"invalid image reference {text!r}: bad tag {tag!r}")
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in remainder:
            remainder = "library/" + remainder
    if not REPO_RE.match(remainder):
        raise UsageError(f"invalid image reference {text!r}: bad repository name {remainder!r} "
                         "(lower-case letters, digits and . _ - separators)")
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, remainder, tag, digest)
