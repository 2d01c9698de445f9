"""The registry client against real registries: manifests, indexes, tags, blob upload (monolithic and
chunked), cross-repo mount, digest verification, Docker config credentials."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
from pathlib import Path

import pytest
from nydus_backend_registry import mediatypes
from nydus_backend_registry.client import RegistryClient, compute_digest
from nydus_testkit.samples import payload, random_bytes
from nydus_testsupport.registry import BASIC_USER, RegistryFlavour

from nydus_core.errors import AuthError, BlobNotFoundError, IntegrityError


def _manifest(config_digest: str, config_size: int, layers: list[tuple[str, int]], media_type: str) -> bytes:
    layer_type = ("application/vnd.oci.image.layer.v1.tar+gzip" if media_type == mediatypes.OCI_MANIFEST
                  else "application/vnd.docker.image.rootfs.diff.tar.gzip")
    config_type = ("application/vnd.oci.image.config.v1+json" if media_type == mediatypes.OCI_MANIFEST
                   else "application/vnd.docker.container.image.v1+json")
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "config": {"mediaType": config_type, "digest": config_digest, "size": config_size},
           "layers": [{"mediaType": layer_type, "digest": d, "size": s} for d, s in layers]}
    return json.dumps(doc, indent=1).encode()


@pytest.fixture(params=["registry_open", "registry_token"])
def flavour(request: pytest.FixtureRequest) -> RegistryFlavour:
    return request.getfixturevalue(request.param)


def test_push_monolithic_and_chunked_then_fetch(flavour: RegistryFlavour) -> None:
    repo = "client/blobs"
    a, b = payload(3 * 1024 * 1024 + 17, seed=90), random_bytes(700_001, seed=91)
    with flavour.client() as client:
        da = client.push_blob(repo, a)
        db = client.push_blob(repo, io.BytesIO(b), chunk_size=256 * 1024)
        assert da == "sha256:" + hashlib.sha256(a).hexdigest()
        assert db == "sha256:" + hashlib.sha256(b).hexdigest()
        assert client.blob_size(repo, da) == len(a)
        assert client.fetch_blob(repo, db) == b
        sink = io.BytesIO()
        assert client.download_blob(repo, da, sink) == len(a) and sink.getvalue() == a
        assert client.read_blob_range(repo, db, 699_990, 100) == b[699_990:]
        assert client.read_blob_range(repo, db, len(b), 100) == b""
        assert client.push_blob(repo, a) == da  # already there: skipped
        missing = compute_digest(b"never pushed")
        assert client.blob_size(repo, missing) is None and not client.blob_exists(repo, missing)
        with pytest.raises(BlobNotFoundError):
            client.fetch_blob(repo, missing)


def test_push_from_path_and_wrong_digest(flavour: RegistryFlavour, tmp_path: Path) -> None:
    repo = "client/paths"
    data = random_bytes(50_000, seed=92)
    f = tmp_path / "layer.bin"
    f.write_bytes(data)
    with flavour.client() as client:
        assert client.push_blob(repo, f) == compute_digest(data)
        with pytest.raises(IntegrityError):
            client.push_blob(repo, io.BytesIO(data + b"!"), digest=compute_digest(b"other"),
                             size=len(data) + 1)
        with pytest.raises(IntegrityError):
            client.push_blob(repo, io.BytesIO(data), digest=compute_digest(b"other"), chunk_size=20_000)


def test_manifests_index_and_tags(flavour: RegistryFlavour) -> None:
    repo = "client/images"
    with flavour.client() as client:
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                                                                                "diff_ids": []}}).encode()
        layer = random_bytes(10_000, seed=93)
        cd, ld = client.push_blob(repo, config), client.push_blob(repo, layer)
        digests = {}
        for mt, tag in ((mediatypes.OCI_MANIFEST, "oci"), (mediatypes.DOCKER_MANIFEST, "docker")):
            body = _manifest(cd, len(config), [(ld, len(layer))], mt)
            digests[tag] = client.put_manifest(repo, tag, body, mt)
            assert digests[tag] == compute_digest(body)
            got = client.get_manifest(repo, tag)
            assert got.media_type == mt and got.content == body and got.digest == digests[tag]
            assert not got.is_index
            assert client.get_manifest(repo, digests[tag]).content == body
            assert client.head_manifest(repo, tag) == (digests[tag], mt, len(body))
        index = json.dumps({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [
            {"mediaType": mediatypes.OCI_MANIFEST, "digest": digests["oci"],
             "size": client.get_manifest(repo, "oci").size,
             "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
        client.put_manifest(repo, "multi", index, mediatypes.OCI_INDEX)
        got = client.get_manifest(repo, "multi")
        assert got.is_index and got.json()["manifests"][0]["digest"] == digests["oci"]
        for i in range(5):
            client.put_manifest(repo, f"v{i}", _manifest(cd, len(config), [], mediatypes.OCI_MANIFEST),
                                mediatypes.OCI_MANIFEST)
        tags = client.list_tags(repo, page_size=2)  # paginated via Link
        assert sorted(tags) == sorted(["oci", "docker", "multi", "v0", "v1", "v2", "v3", "v4"])
        assert client.head_manifest(repo, "nope") is None
        with pytest.raises(BlobNotFoundError):
            client.get_manifest(repo, "nope")


def test_cross_repo_mount(flavour: RegistryFlavour) -> None:
    data = random_bytes(30_000, seed=94)
    with flavour.client() as client:
        digest = client.push_blob("client/mount-src", data)
        assert not client.blob_exists("client/mount-dst", digest)
        assert client.mount_blob("client/mount-dst", digest, "client/mount-src") is True
        assert client.fetch_blob("client/mount-dst", digest) == data
        assert client.mount_blob("client/mount-dst2", compute_digest(b"absent"), "client/mount-src") is False
        other = random_bytes(1000, seed=95)
        d2 = client.push_blob("client/mount-src", other)
        assert client.push_blob("client/mount-dst3", other, mount_from=["client/mount-src"]) == d2
        assert client.fetch_blob("client/mount-dst3", d2) == other


def test_corrupt_blob_is_detected(registry_open: RegistryFlavour) -> None:
    """Flip bytes of the blob in the registry's own storage: the verified download refuses it."""
    data = random_bytes(40_000, seed=96)
    with registry_open.client() as client:
        digest = client.push_blob("client/corrupt", data)
        hexd = digest.split(":")[1]
        path = (registry_open.server.directory / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
                / hexd[:2] / hexd / "data")
        raw = bytearray(path.read_bytes())
        raw[100] ^= 0xFF
        path.write_bytes(bytes(raw))
        with pytest.raises(IntegrityError) as info:
            client.fetch_blob("client/corrupt", digest)
        assert digest in str(info.value)


def _docker_config(tmp_path: Path, doc: dict) -> Path:
    d = tmp_path / "docker"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(doc))
    return d


def test_docker_config_auths(registry_basic: RegistryFlavour, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    host = registry_basic.server.host
    monkeypatch.setenv("DOCKER_CONFIG", str(_docker_config(tmp_path, {"auths": {
        f"http://{host}/v1/": {"auth": registry_basic.auth}}})))
    with RegistryClient(host, plain_http=True) as client:
        client.ping()
    monkeypatch.setenv("DOCKER_CONFIG", str(_docker_config(tmp_path, {"auths": {
        host: {"username": BASIC_USER, "password": registry_basic.password}}})))
    with RegistryClient(host, plain_http=True) as client:
        client.ping()
    with RegistryClient(host, plain_http=True, docker_config=False) as client, pytest.raises(AuthError):
        client.ping()


def test_docker_credential_helper(registry_token: RegistryFlavour, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``credHelpers`` runs ``docker-credential-<name> get`` with the server on stdin."""
    host = registry_token.server.host
    user, password = base64.b64decode(registry_token.auth).decode().split(":", 1)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-nydustest"
    log = tmp_path / "helper.log"
    helper.write_text("#!/bin/sh\n"
                      f'read server; echo "$1 $server" >> {log}\n'
                      f'[ "$server" = "{host}" ] || exit 1\n'
                      f"printf '%s' '{json.dumps({'Username': user, 'Secret': password})}'\n")
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CONFIG", str(_docker_config(tmp_path, {
        "credHelpers": {host: "nydustest"}, "credsStore": "not-installed-helper"})))
    with RegistryClient(host, plain_http=True) as client:
        client.ping()
        digest = client.push_blob("client/helper", b"pushed with helper credentials")
        assert client.blob_exists("client/helper", digest)
    assert log.read_text().split() == ["get", host]
    # credsStore (global) is used when no credHelpers entry matches; a missing helper is skipped
    monkeypatch.setenv("DOCKER_CONFIG", str(_docker_config(tmp_path, {"credsStore": "nydustest"})))
    with RegistryClient(host, plain_http=True) as client:
        client.ping()
    monkeypatch.setenv("DOCKER_CONFIG", str(_docker_config(tmp_path, {"credsStore": "not-installed-helper"})))
    with RegistryClient(host, plain_http=True) as client, pytest.raises(AuthError):
        client.ping()


def test_for_reference(registry_open: RegistryFlavour) -> None:
    client, ref = RegistryClient.for_reference(f"{registry_open.server.host}/client/ref:v1", plain_http=True,
                                               docker_config=False)
    with client:
        assert ref.repository == "client/ref" and ref.tag == "v1"
        client.ping()
