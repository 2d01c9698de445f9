"""Image references where a bootstrap is accepted: resolving a reference gives a bootstrap and a
config that reads the image through the registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nydus_converter_oci.convert import convert
from nydus_converter_oci.imageref import looks_like_reference, resolve_image_reference
from nydus_converter_oci.options import ConversionJob
from nydus_testkit.samples import random_bytes
from nydus_testsupport.oci_images import LayerWriter, push_image
from nydus_testsupport.registry import RegistryFlavour

from nydus_core.errors import FormatError
from nydus_core.fs import open_fs


def test_reference_resolves_to_a_readable_image(registry_open: RegistryFlavour, tmp_path: Path) -> None:
    host, client = registry_open.server.host, registry_open.client()
    data = random_bytes(700_000, 61)
    push_image(client, "src/ref-lookup", "v1", [LayerWriter().dir("d").file("d/f", data).tar_gz()])
    convert(ConversionJob(source=f"{host}/src/ref-lookup:v1", target=f"{host}/nydus/ref-lookup:v1",
                           plain_http=True, work_dir=tmp_path / "w"))
    ref = f"{host}/nydus/ref-lookup:v1"
    assert looks_like_reference(ref)
    # loopback registries are insecure by default: HTTP works without --plain-http
    resolved = resolve_image_reference(ref, work_dir=tmp_path / "images")
    assert resolved.bootstrap.is_file() and resolved.bootstrap.parent == tmp_path / "images"
    assert not looks_like_reference(str(resolved.bootstrap))
    with open_fs(resolved.bootstrap, resolved.config) as fs:
        assert fs.read_bytes("/d/f") == data
    # by digest too
    by_digest = resolve_image_reference(f"{host}/nydus/ref-lookup@{resolved.manifest_digest}",
                                        work_dir=tmp_path / "images")
    assert by_digest.bootstrap == resolved.bootstrap
    with pytest.raises(FormatError, match="not a Nydus image"):
        resolve_image_reference(f"{host}/src/ref-lookup:v1", work_dir=tmp_path / "images")


def test_converter_through_the_plugin_registry(registry_open: RegistryFlavour, tmp_path: Path) -> None:
    from nydus_core.interfaces import ConvertOptions
    from nydus_core.plugins import registry

    host, client = registry_open.server.host, registry_open.client()
    push_image(client, "src/registry-api", "v1", [LayerWriter().file("f", b"x" * 5000).tar_gz()])
    converter = registry("converter").get("oci")()
    summary = converter.convert(f"{host}/src/registry-api:v1", f"{host}/nydus/registry-api:v1",
                                ConvertOptions(plain_http=True, work_dir=str(tmp_path)))
    assert summary["manifest_digest"] == client.get_manifest("nydus/registry-api", "v1").digest
    assert [entry["cached"] for entry in summary["layers"]] == [False]


def test_nydus_ls_and_cat_accept_a_reference(registry_open: RegistryFlavour, tmp_path: Path) -> None:
    """`nydus ls|cat REF` resolve the reference through the `nydus_resolve_image` hook of this plugin:
    the bootstrap is fetched, the blobs are read lazily from the registry."""
    from nydus_testkit.cli import run_nydus

    host, client = registry_open.server.host, registry_open.client()
    data = random_bytes(300_000, 62)
    push_image(client, "src/ref-cli", "v1", [LayerWriter().dir("d").file("d/f", data).tar_gz()])
    convert(ConversionJob(source=f"{host}/src/ref-cli:v1", target=f"{host}/nydus/ref-cli:v1",
                           plain_http=True, work_dir=tmp_path / "w"))
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    ls = run_nydus("ls", f"{host}/nydus/ref-cli:v1", "/d", env=env)
    assert ls.returncode == 0 and ls.stdout.split() == ["f"], ls.stderr
    cat = subprocess.run([str(Path(sys.executable).parent / "nydus"), "cat", f"{host}/nydus/ref-cli:v1",
                          "/d/f"], capture_output=True, env={**os.environ, **env}, timeout=60)
    assert cat.returncode == 0 and cat.stdout == data, cat.stderr
    assert list((tmp_path / "cache" / "nydus" / "images").iterdir())  # the cached bootstrap
    missing = run_nydus("ls", f"{host}/nydus/no-such:v1", env=env)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    last = missing.stderr.strip().splitlines()[-1]  # (after the warning about plain HTTP)
    assert last.startswith("error:") and "no-such" in last and "not found" in last
