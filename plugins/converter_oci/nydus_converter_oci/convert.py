"""``nydusify convert``: an OCI/Docker image in a registry -> a Nydus image in a registry.

Per source layer (bottom first) the layer's tar(.gz) is streamed from the registry into a RAFS v6
build with inline metadata and a blob ToC: one data blob per layer, as upstream's converter makes.
Chunks already stored by a lower layer (or the ``--chunk-dict`` image) are not stored again: each
layer is built with the merge of the layers below it as its chunk dictionary. The per-layer
bootstraps are then merged (whiteouts applied) into the image's bootstrap, which records each blob
under its layer digest (sha256 of the blob file). Blobs go to the target registry as
``nydus.blob`` layers (or to object storage with ``--backend-type``), the bootstrap as the last
tar.gz layer, then the config and the manifest (and with ``--merge-platform`` an index).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nydus_backend_registry.client import RegistryClient
from nydus_backend_registry.reference import Reference

from nydus_core.builder import BuildOptions, build, merge
from nydus_core.cli.progress import progress_bar
from nydus_core.errors import FormatError, NydusError, UsageError
from nydus_core.interfaces import Backend
from nydus_core.oci import image as oci
from nydus_core.oci import mediatypes as mt
from nydus_core.plugins import registry
from nydus_core.rafs.image import open_image

from . import remote
from .layerdata import ZstdLayerReader, is_estargz
from .options import ConversionJob, parse_chunk_dict
from .streams import IterStream, layer_label
from .workcache import LayerRecord, WorkCache, layer_key

log = logging.getLogger("nydusify")

#: Per converted layer: the directories its tar did not list (JSON list of paths).
IMPLICIT_FILE = "implicit.json"
#: Blobs at least this large are pushed in chunks of this size.
PUSH_CHUNK = 16 << 20


@dataclass
class ChunkDict:
    """The ``--chunk-dict`` image: its bootstrap, and where its blobs can be copied from."""

    bootstrap: Path
    ident: str
    image: remote.RemoteImage | None = None
    blob_ids: list[str] = field(default_factory=list)


@dataclass
class ConvertResult:
    """What a conversion produced (``--output-json``)."""

    target: str
    manifest_digest: str
    manifest: dict[str, Any]
    bootstrap_path: Path
    layers: list[LayerRecord]
    index_digest: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {"target": self.target, "manifest_digest": self.manifest_digest,
                "index_digest": self.index_digest,
                "layers": [{"source_digest": r.source_digest, "blob_digest": r.blob_digest,
                            "blob_size": r.blob_size, "cached": r.key in self.metrics.get("cached", [])}
                           for r in self.layers],
                **{k: v for k, v in self.metrics.items() if k != "cached"}}


def _layer_source_type(desc: dict[str, Any], where: str, *, oci_ref: bool = False) -> str:
    media = desc.get("mediaType", "")
    if media in mt.GZIP_LAYERS:
        return "targz-ref" if oci_ref else "targz-rafs"
    if media in mt.TAR_LAYERS:
        return "tar-ref" if oci_ref else "tar-rafs"
    if media == mt.OCI_LAYER_ZSTD:  # decompressed here, built as a tar (zran is for gzip only)
        if oci_ref:
            raise FormatError(f"{where}: --oci-ref needs gzip or tar layers (zran cannot index zstd)")
        return "tar-rafs"
    if media == mt.NYDUS_BLOB:
        raise UsageError(f"{where}: the source is already a Nydus image")
    raise FormatError(f"{where}: unsupported media type {media!r} "
                      "(tar, tar+gzip and tar+zstd layers can be converted)")


def _save_implicit(staging: Path, paths: list[bytes]) -> None:
    """Record the layer's implicit directories (the merge keeps the lower layer's attributes)."""
    (staging / IMPLICIT_FILE).write_text(json.dumps([os.fsdecode(p) for p in paths]))


def _load_implicit(directory: Path) -> list[bytes]:
    """The implicit directories a converted layer recorded (none for older work-dir records)."""
    try:
        return [os.fsencode(p) for p in json.loads((directory / IMPLICIT_FILE).read_text())]
    except (OSError, ValueError, TypeError):
        return []


class Conversion:
    """Runs one conversion (see the module docstring)."""

    def __init__(self, opts: ConversionJob) -> None:
        opts.validate()
        self.opts = opts
        self.cache = WorkCache(opts.work_dir)
        self.metrics: dict[str, Any] = {"cached": []}

    # -- source side ---------------------------------------------------------------------------

    def _load_chunk_dict(self) -> ChunkDict | None:
        if self.opts.chunk_dict is None:
            return None
        kind, ref = parse_chunk_dict(self.opts.chunk_dict)
        if kind == "local":
            path = Path(ref)
            if not path.is_file():
                raise UsageError(f"--chunk-dict: {path}: no such bootstrap")
            img = open_image(str(path))
            try:
                ids = [b.blob_id for b in img.blobs]
            finally:
                img.close()
            return ChunkDict(path, "local:" + str(path.resolve()), None, ids)
        client, parsed = remote.open_registry(ref, insecure=self.opts.chunk_dict_insecure,
                                              plain_http=self.opts.plain_http)
        image = remote.resolve(client, parsed, self.opts.platform, nydus=True)
        path = image.fetch_bootstrap(self.cache.root / "chunk-dict" / "bootstrap")
        img = open_image(str(path))
        try:
            ids = [b.blob_id for b in img.blobs]
        finally:
            img.close()
        return ChunkDict(path, "registry:" + image.manifest.digest, image, ids)

    def _convert_layer_ref(self, src: remote.RemoteImage, index: int, desc: dict[str, Any], key: str
                           ) -> LayerRecord:
        """``--oci-ref``: index the layer (zran for gzip); only the small RAFS blob is kept."""
        where = layer_label(src.ref, index, desc)
        source_type = _layer_source_type(desc, where, oci_ref=True)
        staging = self.cache.staging(key)
        size = int(desc.get("size") or 0) or None
        layer = staging / "layer"
        t0 = time.monotonic()
        with progress_bar(f"pull layer {index + 1}", size, enabled=self.opts.progress) as pull, \
                open(layer, "wb") as fh:
            got = 0
            with src.client.open_blob(src.repo, desc["digest"]) as reader:
                for piece in reader:
                    fh.write(piece)
                    got += len(piece)
                    pull(got, size)
        t1 = time.monotonic()
        bopts = BuildOptions(chunk_size=self.opts.chunk_size, fs_version=self.opts.fs_version,
                             estargz=is_estargz(desc))
        try:
            result = build(layer, source_type, bootstrap=staging / "bootstrap", blob=staging / "blob",
                           options=bopts)
        except NydusError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        t2 = time.monotonic()
        prof = self.metrics.setdefault("profile", {"download": 0.0, "index": 0.0})
        prof["download"] = round(prof["download"] + t1 - t0, 3)
        prof["index"] = round(prof["index"] + t2 - t1, 3)
        layer.unlink()
        _save_implicit(staging, result.implicit_dirs)
        info = result.blob_info
        if info is not None and "sha256:" + info.blob_id != desc["digest"]:
            raise FormatError(f"{where}: the layer's sha256 is {info.blob_id}, not its digest")
        if result.blob_path is None or info is None:  # no file data: nothing to push for this layer
            (staging / "blob").write_bytes(b"")
            rec = LayerRecord(source_digest=desc["digest"], blob_digest="", blob_size=0, has_blob_data=False,
                              key=key, directory=str(staging))
        else:
            meta_digest = "sha256:" + info.blob_meta_digest.hex()
            rec = LayerRecord(source_digest=desc["digest"], blob_digest=meta_digest,
                              blob_size=os.path.getsize(result.blob_path), has_blob_data=True, key=key,
                              directory=str(staging))
        return self.cache.commit(staging, rec)

    def _convert_layer(self, src: remote.RemoteImage, index: int, desc: dict[str, Any], key: str,
                       dict_bootstrap: Path | None) -> LayerRecord:
        if self.opts.oci_ref:
            return self._convert_layer_ref(src, index, desc, key)
        where = layer_label(src.ref, index, desc)
        source_type = _layer_source_type(desc, where)
        staging = self.cache.staging(key)
        size = int(desc.get("size") or 0) or None
        with ExitStack() as stack:
            pull = stack.enter_context(progress_bar(f"pull layer {index + 1}", size,
                                                    enabled=self.opts.progress))
            reader = stack.enter_context(src.client.open_blob(src.repo, desc["digest"]))
            built = stack.enter_context(progress_bar(f"build layer {index + 1}", size,
                                                     enabled=self.opts.progress))
            stream = IterStream(iter(reader), on_read=lambda n: pull(n, size), name=where)
            source: Any = stream
            if desc.get("mediaType") == mt.OCI_LAYER_ZSTD:
                source = ZstdLayerReader(stream, name=where)
            bopts = BuildOptions(compressor=self.opts.compressor, chunk_size=self.opts.chunk_size,
                                 fs_version=self.opts.fs_version, inline_meta=True, blob_toc=True,
                                 chunk_dict=str(dict_bootstrap) if dict_bootstrap else None,
                                 progress=built, estargz=is_estargz(desc))
            result = build(source, source_type, bootstrap=staging / "bootstrap", blob=staging / "blob",
                           options=bopts)
            stream.drain()  # the rest of the layer (tar padding): completes the digest check
        _save_implicit(staging, result.implicit_dirs)
        if result.blob_path is None or result.blob_info is None:
            raise NydusError(f"{where}: the builder wrote no blob")
        blob_id = result.blob_info.blob_id
        rec = LayerRecord(source_digest=desc["digest"], blob_digest="sha256:" + blob_id,
                          blob_size=os.path.getsize(result.blob_path),
                          has_blob_data=result.blob_info.blob_id in {b.blob_id for b in result.blobs},
                          key=key, directory=str(staging))
        return self.cache.commit(staging, rec)

    def _dictionary(self, chunk_dict: ChunkDict | None, layers: list[LayerRecord], step: int) -> Path | None:
        """The chunk dictionary for the next layer: the chunk-dict image and the layers so far."""
        sources = ([chunk_dict.bootstrap] if chunk_dict else []) + [r.bootstrap_path for r in layers]
        if not sources:
            return None
        if len(sources) == 1:
            return sources[0]
        out = self.cache.root / "dicts" / f"upto-{step}"
        out.parent.mkdir(parents=True, exist_ok=True)
        merge(sources, bootstrap=out)
        return out

    def convert_layers(self, src: remote.RemoteImage, chunk_dict: ChunkDict | None) -> list[LayerRecord]:
        """Convert every layer of ``src`` (or reuse the work-dir record)."""
        records: list[LayerRecord] = []
        chain: list[str] = []
        opts = self.opts.layer_options(chunk_dict.ident if chunk_dict else None)
        for i, desc in enumerate(src.layers):
            chain.append(desc["digest"])
            key = layer_key(list(chain), opts)
            rec = self.cache.get(key)
            if rec is not None:
                log.info("layer %d (%s): converted before, reusing %s", i, desc["digest"], rec.blob_digest)
                self.metrics["cached"].append(key)
            else:
                dict_boot = None if self.opts.oci_ref else self._dictionary(chunk_dict, records, i)
                rec = self._convert_layer(src, i, desc, key, dict_boot)
            records.append(rec)
        return records

    # -- target side ---------------------------------------------------------------------------

    def _push_blob(self, client: RegistryClient, repo: str, path: Path, digest: str,
                   bar: Callable[[int, int | None], None],
                   done: list[int], total: int) -> None:
        size = path.stat().st_size
        client.push_blob(repo, path, digest=digest, size=size,
                         chunk_size=PUSH_CHUNK if size >= PUSH_CHUNK else None)
        done[0] += size
        bar(done[0], total)

    def _copy_dict_blob(self, client: RegistryClient, target: Reference, chunk_dict: ChunkDict,
                        blob_id: str) -> int:
        """Make a chunk-dict blob available in the target repository; return its size."""
        digest = "sha256:" + blob_id
        size = client.blob_size(target.repository, digest)
        if size is not None:
            return size
        image = chunk_dict.image
        if image is None:
            raise UsageError(f"blob {blob_id} of the local chunk dict is not in {target}: push it first")
        src_size = image.client.blob_size(image.repo, digest)
        if src_size is None:
            raise FormatError(f"{image.ref}: chunk-dict blob {digest} is missing from its repository")
        if image.ref.api_host == target.api_host and client.mount_blob(target.repository, digest, image.repo):
            return src_size
        tmp = self.cache.root / "dict-blobs" / blob_id
        tmp.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            image.client.download_blob(image.repo, digest, fh)
        client.push_blob(target.repository, tmp, digest=digest)
        tmp.unlink()
        return src_size

    def _object_backend(self) -> Backend:
        cls: type[Backend] = registry("backend").get(self.opts.backend_type, where="--backend-type")
        return cls(self.opts.backend_config)

    def convert(self) -> ConvertResult:
        """Run the conversion; return what was pushed."""
        opts = self.opts
        t0 = time.monotonic()
        sclient, sref = remote.open_registry(opts.source, insecure=opts.source_insecure,
                                             plain_http=opts.plain_http)
        tclient, tref = remote.open_registry(opts.target, insecure=opts.target_insecure,
                                             plain_http=opts.plain_http)
        with sclient, tclient:
            src = remote.resolve(sclient, sref, opts.platform, nydus=False)
            chunk_dict = self._load_chunk_dict()
            t_pull = time.monotonic()
            layers = self.convert_layers(src, chunk_dict)
            bootstrap = self.cache.root / "bootstrap"
            prefetch = list(opts.prefetch_patterns) if opts.prefetch_patterns else None
            merged = merge([r.bootstrap_path for r in layers], bootstrap=bootstrap,
                           chunk_dict=chunk_dict.bootstrap if chunk_dict else None, prefetch=prefetch,
                           implicit_dirs=[_load_implicit(Path(r.directory)) for r in layers])
            t_built = time.monotonic()
            own = {(r.source_digest if opts.oci_ref else r.blob_digest).removeprefix("sha256:")
                   for r in layers}
            dict_blobs = [b.blob_id for b in merged.blobs if b.blob_id not in own]
            result = self._push(src, tclient, tref, layers, bootstrap, chunk_dict, dict_blobs)
            t_end = time.monotonic()
        result.metrics.update({
            "source_image_size": sum(int(d.get("size") or 0) for d in src.layers),
            "target_image_size": sum(int(d.get("size") or 0) for d in result.manifest["layers"]),
            "bootstrap_size": merged.bootstrap_size,
            "conversion_elapsed": round(t_built - t_pull, 3),
            "manifest_elapsed": round(t_pull - t0, 3),
            "push_elapsed": round(t_end - t_built, 3),
            "total_elapsed": round(t_end - t0, 3),
            "pushed_bytes": self.metrics.get("pushed_bytes", 0),
        })
        if "profile" in self.metrics:
            result.metrics["profile"] = {**self.metrics["profile"], "push": round(t_end - t_built, 3)}
        result.metrics["cached"] = self.metrics["cached"]
        if opts.output_json is not None:
            Path(opts.output_json).write_text(json.dumps(result.to_json(), indent=2) + "\n")
        return result

    def _push(self, src: remote.RemoteImage, client: RegistryClient, target: Reference,
              layers: list[LayerRecord], bootstrap: Path, chunk_dict: ChunkDict | None,
              dict_blobs: list[str]) -> ConvertResult:
        opts = self.opts
        docker = src.docker and not opts.oci
        repo = target.repository
        layer_descs: list[dict[str, Any]] = []
        diff_ids: list[str] = []
        boot_gz, boot_diff_id = oci.pack_bootstrap_layer(bootstrap.read_bytes())
        boot_digest = oci.sha256_digest(boot_gz)
        total = sum(r.blob_size for r in layers) + len(boot_gz)
        with progress_bar("push", total, enabled=opts.progress) as bar:
            done = [0]
            if opts.oci_ref:
                for r in layers:
                    self._ensure_source_layer(src, client, target, r.source_digest)
                    if not r.has_blob_data:
                        continue
                    if not client.blob_exists(repo, r.blob_digest):
                        self._push_blob(client, repo, r.blob_path, r.blob_digest, bar, done, total)
                        self.metrics["pushed_bytes"] = self.metrics.get("pushed_bytes", 0) + r.blob_size
                    layer_descs.append(oci.ref_blob_layer(r.blob_digest, r.blob_size, r.source_digest))
                    diff_ids.append(r.blob_digest)
            elif opts.backend_type == "registry":
                for r in layers:
                    self._push_blob(client, repo, r.blob_path, r.blob_digest, bar, done, total)
                    self.metrics["pushed_bytes"] = self.metrics.get("pushed_bytes", 0) + r.blob_size
                    layer_descs.append(oci.blob_layer(r.blob_digest, r.blob_size))
                    diff_ids.append(r.blob_digest)
                for blob_id in dict_blobs:
                    assert chunk_dict is not None
                    size = self._copy_dict_blob(client, target, chunk_dict, blob_id)
                    layer_descs.append(oci.blob_layer("sha256:" + blob_id, size))
                    diff_ids.append("sha256:" + blob_id)
            else:
                backend = self._object_backend()
                try:
                    for r in layers:
                        with open(r.blob_path, "rb") as fh:
                            backend.write(r.blob_digest.removeprefix("sha256:"), fh, r.blob_size)
                        done[0] += r.blob_size
                        bar(done[0], total)
                finally:
                    close = getattr(backend, "close", None)
                    if close is not None:
                        close()
            client.push_blob(repo, boot_gz, digest=boot_digest)
            self.metrics["pushed_bytes"] = self.metrics.get("pushed_bytes", 0) + len(boot_gz)
            done[0] += len(boot_gz)
            bar(done[0], total)
        layer_descs.append(oci.bootstrap_layer_descriptor(
            boot_digest, len(boot_gz), docker=docker, fs_version=opts.fs_version,
            reference_blob_ids=dict_blobs))
        diff_ids.append(boot_diff_id)
        config = oci.nydus_config(src.config, diff_ids)
        config_bytes = oci.dumps(config)
        config_digest = client.push_blob(repo, config_bytes)
        config_type = mt.config_media_type(docker)
        if opts.merge_platform and not docker:
            config_type = mt.NYDUS_CONFIG
        subject = src.descriptor if opts.with_referrer else None
        if subject is not None:
            self._copy_manifest(src, client, target)
        manifest = oci.image_manifest(oci.descriptor(config_type, config_digest, len(config_bytes)),
                                      layer_descs, docker=docker, subject=subject)
        manifest_bytes = oci.dumps(manifest)
        media = mt.manifest_media_type(docker)
        index_digest = None
        if opts.merge_platform:
            digest = oci.sha256_digest(manifest_bytes)
            client.put_manifest(repo, digest, manifest_bytes, media)
            index_digest = self._push_index(src, client, target, oci.descriptor(media, digest,
                                                                                 len(manifest_bytes)))
        else:
            digest = client.put_manifest(repo, target.reference, manifest_bytes, media)
        return ConvertResult(str(target), digest, manifest, bootstrap, layers, index_digest)

    def _ensure_source_layer(self, src: remote.RemoteImage, client: RegistryClient, target: Reference,
                             digest: str) -> None:
        """``--oci-ref``: nydusd pulls the original layer from the target repository by digest, so it
        must be there: mounted from the source repository (same registry) or copied."""
        repo = target.repository
        if client.blob_exists(repo, digest):
            return
        if src.ref.api_host == target.api_host and client.mount_blob(repo, digest, src.repo):
            return
        tmp = self.cache.root / "copy-blob"
        with open(tmp, "wb") as fh:
            src.client.download_blob(src.repo, digest, fh)
        client.push_blob(repo, tmp, digest=digest, chunk_size=PUSH_CHUNK)
        self.metrics["pushed_bytes"] = self.metrics.get("pushed_bytes", 0) + tmp.stat().st_size
        tmp.unlink()

    def _copy_manifest(self, src: remote.RemoteImage, client: RegistryClient, target: Reference) -> None:
        """Put the source manifest (and its blobs) into the target repository, by digest."""
        repo = target.repository
        same_host = src.ref.api_host == target.api_host
        doc = src.doc
        for desc in [doc["config"], *doc.get("layers", [])]:
            digest = desc["digest"]
            if client.blob_exists(repo, digest):
                continue
            if same_host and client.mount_blob(repo, digest, src.repo):
                continue
            tmp = self.cache.root / "copy-blob"
            with open(tmp, "wb") as fh:
                src.client.download_blob(src.repo, digest, fh)
            client.push_blob(repo, tmp, digest=digest, chunk_size=PUSH_CHUNK)
            tmp.unlink()
        client.put_manifest(repo, src.manifest.digest, src.manifest.content, src.manifest.media_type)

    def _push_index(self, src: remote.RemoteImage, client: RegistryClient, target: Reference,
                    nydus_desc: dict[str, Any]) -> str:
        """``--merge-platform``: an index with the source manifest and the Nydus one, tagged."""
        self._copy_manifest(src, client, target)
        plat = src.platform
        if plat is None:
            raise FormatError(f"{src.ref}: the image config names no os/architecture")
        oci_desc = dict(src.descriptor, platform=plat.to_json())
        nydus_desc = dict(nydus_desc, platform=plat.to_json(), artifactType=mt.NYDUS_ARTIFACT_TYPE)
        index = oci.merged_index([oci_desc, nydus_desc])
        body = oci.dumps(index)
        return client.put_manifest(target.repository, target.reference, body, mt.OCI_INDEX)


def convert(opts: ConversionJob) -> ConvertResult:
    """Convert ``opts.source`` to ``opts.target`` (see :class:`Conversion`)."""
    return Conversion(opts).convert()
