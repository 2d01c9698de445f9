"""Image reference parsing with Docker Hub defaults."""

from __future__ import annotations

import pytest
from nydus_backend_registry.reference import Reference, parse_reference

from nydus_core.errors import UsageError

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("busybox", Reference("docker.io", "library/busybox", "latest")),
        ("busybox:1.36", Reference("docker.io", "library/busybox", "1.36")),
        ("user/app", Reference("docker.io", "user/app", "latest")),
        ("docker.io/busybox", Reference("docker.io", "library/busybox", "latest")),
        ("index.docker.io/user/app:v1", Reference("docker.io", "user/app", "v1")),
        ("localhost/app", Reference("localhost", "app", "latest")),
        ("localhost:5000/ns/app:tag", Reference("localhost:5000", "ns/app", "tag")),
        ("127.0.0.1:5000/app@" + D, Reference("127.0.0.1:5000", "app", None, D)),
        ("ghcr.io/o/r/app:v1@" + D, Reference("ghcr.io", "o/r/app", "v1", D)),
        ("docker://quay.io/a/b", Reference("quay.io", "a/b", "latest")),
        ("[::1]:5000/app", Reference("[::1]:5000", "app", "latest")),
        ("reg.example.com/a__b/c-d.e", Reference("reg.example.com", "a__b/c-d.e", "latest")),
    ],
)
def test_parse(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "library/UPPER", "app:bad tag", "app@sha256:1234", "app@md5", "http://reg/app", "reg.io/-app",
     "app:" + "x" * 200, "reg.io/app@sha256:" + "zz" * 32],
)
def test_invalid(text: str) -> None:
    with pytest.raises(UsageError):
        parse_reference(text)


def test_api_host_and_str() -> None:
    ref = parse_reference("busybox")
    assert ref.api_host == "registry-1.docker.io"
    assert str(ref) == "docker.io/library/busybox:latest"
    assert ref.reference == "latest"
    pinned = ref.with_digest(D)
    assert pinned.reference == D and str(pinned) == f"docker.io/library/busybox:latest@{D}"
    assert parse_reference("localhost:5000/a").api_host == "localhost:5000"
    assert ref.with_tag("v2").tag == "v2"
