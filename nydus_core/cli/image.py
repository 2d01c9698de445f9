"""``nydus-image``: create, merge, check, inspect, stat and unpack RAFS images (upstream's flags)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..errors import BuildError, IntegrityError, UsageError
from ..logsetup import setup_logging
from .convention import CONTEXT_SETTINGS
from .progress import progress_bar
from .runner import run_main

CTX = CONTEXT_SETTINGS


def _int(value: str, what: str) -> int:
    try:
        return int(value, 0)
    except ValueError:
        raise UsageError(f"invalid {what} '{value}': expected a number (decimal or 0x hex)") from None


def _list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",")] if value else None


def _write_json(path: str | None, data: Any) -> None:
    if not path:
        return
    from ..builder.outputs import write_file

    write_file(Path(path), (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), "output JSON")


def _prefetch_paths(policy: str) -> list[str] | None:
    if policy == "none":
        return None
    if policy == "blob":
        raise UsageError("prefetch policy 'blob' applies to RAFS v5 images, which nydus-py does not "
                         "write; use 'fs'")
    if policy != "fs":
        raise UsageError(f"invalid prefetch policy '{policy}': choose fs, blob or none")
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("--prefetch-policy fs reads the list of paths from stdin (one per line)")
    return [line.rstrip("\n") for line in sys.stdin if line.strip()]


def _chunk_source(blob_dir: str | None = None, blob: str | None = None, backend_type: str | None = None,
                  backend_config: str | None = None, backend_config_file: str | None = None,
                  config: str | None = None) -> Any:
    from ..tools.datasource import open_chunk_source

    cfg: dict[str, Any] | None = None
    if backend_config and backend_config_file:
        raise UsageError("give --backend-config or --backend-config-file, not both")
    if backend_config_file:
        try:
            backend_config = Path(backend_config_file).read_text()
        except OSError as exc:
            raise UsageError(f"{backend_config_file}: cannot read backend config: {exc.strerror}") from None
    if backend_config:
        from ..config import decode_text

        cfg = dict(decode_text(backend_config, source=backend_config_file or "--backend-config",
                               syntax="json"))
    if cfg is not None and not backend_type:
        raise UsageError("--backend-config needs --backend-type")
    return open_chunk_source(blob_dir=blob_dir, blob_file=blob, backend_type=backend_type,
                             backend_config=cfg, config_path=config)


@click.group(context_settings=CTX)
@click.version_option(__version__, "-V", "--version", prog_name="nydus-image")
@click.option("-l", "--log-level", default="info", show_default=True,
              help="trace, debug, info, warn or error.")
@click.option("-L", "--log-file", default=None, help="Write the log to this file.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def cli(log_level: str, log_file: str | None, debug: bool) -> None:
    """Build and examine RAFS (Nydus) images.

    \b
    Examples:
      nydus-image create ./rootfs -B image.boot -D ./blobs
      nydus-image check image.boot -D ./blobs -v
    """
    setup_logging("debug" if debug else log_level, log_file)


@cli.command(context_settings=CTX)
@click.argument("source")
@click.option("-t", "--type", "source_type", default="dir-rafs", show_default=True,
              help="dir-rafs (alias directory), tar-rafs, targz-rafs; targz-ref or tar-ref (the "
                   "layer itself stays the data blob).")
@click.option("-B", "--bootstrap", default=None, help="Write the bootstrap (RAFS metadata) here.")
@click.option("-D", "--blob-dir", default=None, help="Write the blob into this directory, named by its id.")
@click.option("-b", "--blob", default=None, help="Write the data blob to this file (or fifo).")
@click.option("--blob-inline-meta", "--inline-bootstrap", "inline_meta", is_flag=True,
              help="Store the bootstrap inside the data blob.")
@click.option("--blob-id", default=None, help="Record this blob id instead of the blob's sha256.")
@click.option("--chunk-size", default="0x100000", show_default=True,
              help="Power of two between 0x1000 and 0x1000000.")
@click.option("--compressor", default="zstd", show_default=True, help="none, lz4_block or zstd.")
@click.option("--digester", default="blake3", show_default=True, help="blake3 or sha256.")
@click.option("-v", "--fs-version", default="6", show_default=True, help="RAFS version (6 only).")
@click.option("--features", default="", help="Comma list; 'blob-toc' adds a ToC to the blob.")
@click.option("--chunk-dict", default=None, help="bootstrap=PATH: reuse chunks of that image.")
@click.option("--parent-bootstrap", default=None, help="Build this layer on top of that image.")
@click.option("--prefetch-policy", default="none", show_default=True,
              help="fs: read the paths to prefetch from stdin; none.")
@click.option("--aligned-chunk", is_flag=True, help="Accepted for upstream compatibility (v6 is aligned).")
@click.option("--repeatable", is_flag=True, help="Record no uid/gid (EXPLICIT_UID_GID clear).")
@click.option("--whiteout-spec", default="oci", show_default=True, help="oci, overlayfs or none.")
@click.option("--workers", type=int, default=None,
              help="Compression threads, and processes reading small files (default: CPU count).")
@click.option("-J", "--output-json", default=None, help="Write a JSON summary to this file.")
def create(source: str, source_type: str, bootstrap: str | None, blob_dir: str | None, blob: str | None,
           inline_meta: bool, blob_id: str | None, chunk_size: str, compressor: str, digester: str,
           fs_version: str, features: str, chunk_dict: str | None, parent_bootstrap: str | None,
           prefetch_policy: str, aligned_chunk: bool, repeatable: bool, whiteout_spec: str,
           workers: int | None, output_json: str | None) -> None:
    """Build a RAFS v6 image from a directory or a (gzipped) tar."""
    from ..builder import BuildOptions, build

    feats = {f.strip() for f in features.split(",") if f.strip()}
    unknown = feats - {"blob-toc"}
    if unknown:
        raise UsageError(f"unknown feature(s): {', '.join(sorted(unknown))} (supported: blob-toc)")
    total: int | None = None
    if source_type in ("dir-rafs", "directory") and not os.path.isdir(source):
        raise UsageError(f"{source}: not a directory (source type {source_type})")
    if source_type in ("tar-rafs", "targz-rafs") and source != "-" and os.path.isfile(source):
        total = os.path.getsize(source)
    opts = BuildOptions(
        chunk_size=_int(chunk_size, "chunk size"), compressor=compressor, digester=digester,
        fs_version=_int(fs_version, "fs version"), blob_toc="blob-toc" in feats, inline_meta=inline_meta,
        blob_id=blob_id, chunk_dict=chunk_dict, parent_bootstrap=parent_bootstrap,
        prefetch=_prefetch_paths(prefetch_policy), whiteout_spec=whiteout_spec, repeatable=repeatable,
        workers=workers,
    )
    with progress_bar("build", total) as update:
        opts.progress = update
        result = build(sys.stdin.buffer if source == "-" else source, source_type,
                       bootstrap=bootstrap, blob=blob, blob_dir=blob_dir, options=opts)
    _write_json(output_json, result.to_json())
    s = result.stats
    click.echo(f"built RAFS v6 image: {result.inode_count} inodes, {s.bytes_read} bytes of file data, "
               f"{s.chunks_new} new chunks ({s.chunks_dedup} deduplicated)"
               + (f", blob {result.blob_id}" if result.blob_id else ", no data blob"), err=True)


@cli.command(context_settings=CTX)
@click.argument("sources", nargs=-1, required=True)
@click.option("-B", "--bootstrap", required=True, help="Write the merged bootstrap here.")
@click.option("-D", "--blob-dir", default=None, help="Accepted for upstream compatibility.")
@click.option("--parent-bootstrap", default=None, help="Merge on top of this image.")
@click.option("--chunk-dict", default=None, help="bootstrap=PATH of a chunk dictionary image.")
@click.option("--blob-digests", default=None, help="Comma list: each layer's blob digest.")
@click.option("--original-blob-ids", default=None, help="Comma list: each layer's original blob id.")
@click.option("--blob-sizes", default=None, help="Comma list: each layer's blob size.")
@click.option("--blob-toc-digests", default=None, help="Comma list: each layer's ToC digest.")
@click.option("--blob-toc-sizes", default=None, help="Comma list: each layer's ToC size.")
@click.option("--prefetch-policy", default="none", show_default=True, help="fs: paths on stdin; none.")
@click.option("--whiteout-spec", default="oci", show_default=True, help="oci, overlayfs or none.")
@click.option("-J", "--output-json", default=None, help="Write a JSON summary to this file.")
def merge(sources: tuple[str, ...], bootstrap: str, blob_dir: str | None, parent_bootstrap: str | None,
          chunk_dict: str | None, blob_digests: str | None, original_blob_ids: str | None,
          blob_sizes: str | None, blob_toc_digests: str | None, blob_toc_sizes: str | None,
          prefetch_policy: str, whiteout_spec: str, output_json: str | None) -> None:
    """Merge per-layer bootstraps (lowest first) into one, applying whiteouts."""
    from ..builder import merge as do_merge

    def ints(v: str | None, what: str) -> list[int] | None:
        items = _list(v)
        return [_int(x, what) for x in items] if items is not None else None

    prefetch = _prefetch_paths(prefetch_policy)
    with progress_bar("merge", len(sources), unit="layer") as update:
        result = do_merge(
            list(sources), bootstrap=bootstrap, parent_bootstrap=parent_bootstrap, chunk_dict=chunk_dict,
            blob_digests=_list(blob_digests), original_blob_ids=_list(original_blob_ids),
            blob_sizes=ints(blob_sizes, "blob size"), blob_toc_digests=_list(blob_toc_digests),
            blob_toc_sizes=ints(blob_toc_sizes, "ToC size"), prefetch=prefetch,
            whiteout_spec=whiteout_spec, progress=update,
        )
    _write_json(output_json, result.to_json())
    click.echo(f"merged {len(sources)} layer(s): {result.inode_count} inodes, "
               f"{len(result.blobs)} blob(s)", err=True)


def _bootstrap_arg(arg: str | None, opt: str | None) -> str:
    path = arg or opt
    if not path:
        raise UsageError("give the bootstrap as an argument (or with -B)")
    return path


@cli.command(context_settings=CTX)
@click.argument("bootstrap_arg", metavar="[BOOTSTRAP]", required=False)
@click.option("-B", "--bootstrap", default=None, help="The bootstrap (deprecated form).")
@click.option("-D", "--blob-dir", default=None, help="Verify chunk data read from blobs in this directory.")
@click.option("-C", "--config", default=None,
              help="Verify chunk data read through this nydusd config's backend.")
@click.option("--backend-type", default=None, help="Verify chunk data read through this backend plugin.")
@click.option("--backend-config", default=None, help="The backend's JSON config.")
@click.option("--backend-config-file", default=None, help="A file holding the backend's JSON config.")
@click.option("-v", "--verbose", is_flag=True,
              help="Verbose: the image's shape, each blob and every problem found, on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("-J", "--output-json", default=None, help="Write the report as JSON to this file.")
def check(bootstrap_arg: str | None, bootstrap: str | None, blob_dir: str | None, config: str | None,
          backend_type: str | None, backend_config: str | None, backend_config_file: str | None,
          verbose: bool, as_json: bool, output_json: str | None) -> None:
    """Validate an image: every inode, and with blobs every chunk against its digest."""
    from ..tools.check import check_image

    path = _bootstrap_arg(bootstrap_arg, bootstrap)
    source = _chunk_source(blob_dir, None, backend_type, backend_config, backend_config_file, config)
    try:
        with progress_bar("verify", None, unit="chunk") as update:
            report = check_image(path, source, progress=update)
    finally:
        if source is not None:
            source.close()
    _write_json(output_json, report.to_json())
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    if verbose:
        _print_check_details(report)
    if report.errors:
        more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
        raise IntegrityError(f"{path}: {report.errors[0]}{more}")
    what = (f"{report.chunks_verified} chunks ({report.bytes_verified} bytes) verified"
            if source is not None else "metadata only: give --blob-dir or --config to verify data")
    click.echo(f"{path}: RAFS v{report.fs_version} OK: {report.inodes} entries, {report.files} files; "
               f"{what}", err=True)


def _print_check_details(report: Any) -> None:
    """``check -v``: what was checked, for people (stderr; ``--json`` has the same for programs)."""
    lines = [f"bootstrap: {report.bootstrap}",
             f"RAFS v{report.fs_version}, compressor {report.compressor}, digester {report.digester}, "
             f"chunk size {report.chunk_size:#x}",
             f"entries: {report.inodes} ({report.files} files, {report.dirs} directories, "
             f"{report.symlinks} symlinks, {report.hardlinks} hard links, {report.others} others), "
             f"{report.bytes} bytes of file data"]
    for blob in report.blobs:
        lines.append(f"blob {blob['blob_id']}: {blob['chunk_count']} chunks, {blob['compressed_size']} bytes "
                     f"compressed, {blob['uncompressed_size']} uncompressed")
    lines.append(f"verified: {report.chunks_verified} chunks, {report.bytes_verified} bytes")
    lines += [f"problem: {error}" for error in report.errors]
    for line in lines:
        click.echo(line, err=True)


@cli.command(context_settings=CTX)
@click.argument("bootstrap_arg", metavar="[BOOTSTRAP]", required=False)
@click.option("-B", "--bootstrap", default=None, help="The bootstrap (deprecated form).")
@click.option("-R", "--request", "requests", multiple=True,
              help="Answer this request as JSON and exit (stats, superblock, blobs, prefetch, files, "
                   "'file PATH'); without it, an interactive shell.")
def inspect(bootstrap_arg: str | None, bootstrap: str | None, requests: tuple[str, ...]) -> None:
    """Examine an image's metadata (request mode prints JSON)."""
    from ..rafs.image import open_image
    from ..tools.inspect import REQUESTS, run_request

    with open_image(_bootstrap_arg(bootstrap_arg, bootstrap)) as image:
        if requests:
            for req in requests:
                click.echo(json.dumps(run_request(image, req), indent=2))
            return
        if not sys.stdin.isatty():
            for line in sys.stdin:
                if line.strip():
                    click.echo(json.dumps(run_request(image, line), indent=2))
            return
        click.echo("requests: " + ", ".join(REQUESTS) + "; 'exit' to leave", err=True)
        while True:
            try:
                line = input("Inspecting RAFS :> ")
            except EOFError:
                break
            if line.strip() in ("exit", "quit", "q"):
                break
            if not line.strip():
                continue
            try:
                click.echo(json.dumps(run_request(image, line), indent=2))
            except UsageError as exc:
                click.echo(f"error: {exc}", err=True)


@cli.command(context_settings=CTX)
@click.option("-B", "--bootstrap", "bootstraps", multiple=True, help="A bootstrap (repeatable).")
@click.option("-D", "--blob-dir", default=None, help="Every bootstrap in this directory.")
@click.option("-T", "--target", default=None, help="Also count dedup against this image.")
@click.option("--digester", default=None, help="Accepted for upstream compatibility.")
@click.option("-J", "--output-json", default=None, help="Write the statistics as JSON to this file.")
def stat(bootstraps: tuple[str, ...], blob_dir: str | None, target: str | None, digester: str | None,
         output_json: str | None) -> None:
    """Chunk statistics of images and their dedup (against -T)."""
    from ..tools.stat import bootstraps_in, stat_images

    paths: list[Any] = list(bootstraps)
    if blob_dir:
        paths += bootstraps_in(blob_dir)
    if not paths:
        raise UsageError("give bootstraps with -B or a directory of them with -D")
    result = stat_images(paths, target)
    _write_json(output_json, result)
    click.echo(json.dumps(result, indent=2))


@cli.command(context_settings=CTX)
@click.argument("bootstrap_arg", metavar="[BOOTSTRAP]", required=False)
@click.option("-B", "--bootstrap", default=None, help="The bootstrap (deprecated form).")
@click.option("--output", required=True, help="Write the tar here ('-' for stdout).")
@click.option("-b", "--blob", default=None, help="Read chunk data from this blob file.")
@click.option("-D", "--blob-dir", default=None, help="Read chunk data from blobs in this directory.")
@click.option("-C", "--config", default=None,
              help="Read chunk data through this nydusd config's backend.")
@click.option("--backend-type", default=None, help="Read chunk data through this backend plugin.")
@click.option("--backend-config", default=None, help="The backend's JSON config.")
@click.option("--backend-config-file", default=None, help="A file holding the backend's JSON config.")
def unpack(bootstrap_arg: str | None, bootstrap: str | None, output: str, blob: str | None,
           blob_dir: str | None, config: str | None, backend_type: str | None,
           backend_config: str | None, backend_config_file: str | None) -> None:
    """Write an image's whole tree as a tar."""
    from ..builder.outputs import OutputFile
    from ..rafs.image import open_image
    from ..tools.datasource import use_real_blob_ids
    from ..tools.unpack import unpack_to_tar

    path = _bootstrap_arg(bootstrap_arg, bootstrap)
    source = _chunk_source(blob_dir, blob, backend_type, backend_config, backend_config_file, config)
    try:
        with open_image(path) as image, _write_errors(output):
            if source is not None:
                use_real_blob_ids(image, path)
            if output == "-":
                count = unpack_to_tar(image, source, sys.stdout.buffer)
            else:
                out = OutputFile(Path(output), what="output tar")
                try:
                    with progress_bar("unpack", None) as update:
                        count = unpack_to_tar(image, source, out.file, progress=lambda d: update(d, None))
                    out.commit()
                except BaseException:
                    out.discard()
                    raise
    finally:
        if source is not None:
            source.close()
    click.echo(f"unpacked {count} entries to {output}", err=True)


@contextmanager
def _write_errors(target: str) -> Iterator[None]:
    """Turn an OSError while writing ``target`` (disk full, closed pipe) into a one-line error."""
    try:
        yield
    except OSError as exc:
        raise BuildError(f"{target}: cannot write: {exc.strerror or exc}") from None


def main() -> None:
    """Entry point of ``nydus-image``."""
    raise SystemExit(run_main(cli, prog_name="nydus-image"))
