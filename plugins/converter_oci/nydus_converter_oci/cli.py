"""``nydusify`` (convert, check, mount) and ``nydus convert``: upstream's flag names."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from nydus_core.cli.convention import CONTEXT_SETTINGS
from nydus_core.cli.runner import run_main
from nydus_core.errors import UsageError
from nydus_core.logsetup import setup_logging

from . import __version__

LOG_LEVEL_HELP = "trace, debug, info, warn or error."
DEBUG_HELP = "Debug logging, and tracebacks on errors (-D as upstream)."


def _chunk_size(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        return int(value, 0)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number (decimal or 0x hex)") from None


def _logging(level: str, debug: bool) -> None:
    """Upstream's ``--log-level``; urllib3's retry warnings only with ``--debug`` (errors say it all)."""
    setup_logging("debug" if debug else level)
    if not debug:
        logging.getLogger("urllib3").setLevel(logging.ERROR)


def _stdin_paths() -> list[str]:
    return [line.strip() for line in sys.stdin if line.strip()]


@click.command("convert")
@click.option("--source", required=True, help="Source image reference (OCI or Docker).")
@click.option("--target", required=True, help="Target Nydus image reference.")
@click.option("--source-insecure", is_flag=True, help="Skip TLS verification / allow HTTP for the source.")
@click.option("--target-insecure", is_flag=True, help="Skip TLS verification / allow HTTP for the target.")
@click.option("--plain-http", is_flag=True, help="Talk plain HTTP to both registries.")
@click.option("--platform", default="linux/amd64", show_default=True, help="Platform to convert.")
@click.option("--compressor", default="zstd", show_default=True, help="none, lz4_block, zstd.")
@click.option("--fs-version", type=int, default=6, show_default=True, help="RAFS version (6 only).")
@click.option("--chunk-size", "--fs-chunk-size", "chunk_size", default="0x100000", show_default=True,
              callback=_chunk_size, help="Chunk size (power of two, 0x1000..0x1000000).")
@click.option("--chunk-dict", default=None, help="bootstrap:registry:REF or bootstrap:local:PATH.")
@click.option("--chunk-dict-insecure", is_flag=True, help="Skip TLS verification for the chunk-dict image.")
@click.option("--prefetch-patterns", is_flag=True, help="Read prefetch paths (absolute) from stdin.")
@click.option("--merge-platform", "--multi-platform", "merge_platform", is_flag=True,
              help="Push an index holding the OCI and the Nydus manifest.")
@click.option("--with-referrer", is_flag=True, help="Set the Nydus manifest's subject to the source.")
@click.option("--oci", is_flag=True, help="Use OCI media types even for a Docker source.")
@click.option("--oci-ref", is_flag=True,
              help="Keep the source's layers as the data blobs (zran): push only small RAFS blobs and "
                   "the bootstrap. Implies --oci.")
@click.option("--backend-type", default="registry", show_default=True,
              type=click.Choice(["registry", "s3", "oss"]), help="Where the data blobs go.")
@click.option("--backend-config", default=None, help="Backend config JSON (for s3/oss).")
@click.option("--backend-config-file", default=None, type=click.Path(dir_okay=False),
              help="Backend config JSON file.")
@click.option("--work-dir", default="./tmp", show_default=True, type=click.Path(file_okay=False),
              help="Work directory; converted layers are kept here and reused.")
@click.option("--output-json", default=None, type=click.Path(dir_okay=False),
              help="Write conversion metrics (timings, sizes) as JSON to this file.")
@click.option("--log-level", "-l", default="info", show_default=True, help=LOG_LEVEL_HELP)
@click.option("--debug", "-D", is_flag=True, help=DEBUG_HELP)
def convert_cmd(source: str, target: str, source_insecure: bool, target_insecure: bool, plain_http: bool,
                platform: str, compressor: str, fs_version: int, chunk_size: int, chunk_dict: str | None,
                chunk_dict_insecure: bool, prefetch_patterns: bool, merge_platform: bool,
                with_referrer: bool, oci: bool, oci_ref: bool, backend_type: str, backend_config: str | None,
                backend_config_file: str | None, work_dir: str, output_json: str | None, log_level: str,
                debug: bool) -> None:
    """Convert an OCI image in a registry to a Nydus image in a registry."""
    from nydus_core.interfaces import ConvertOptions

    from .converter import OciConverter
    from .options import parse_backend_config

    _logging(log_level, debug)
    if backend_config and backend_config_file:
        raise UsageError("give --backend-config or --backend-config-file, not both")
    cfg = {}
    if backend_config_file:
        try:
            backend_config = Path(backend_config_file).read_text()
        except OSError as exc:
            raise UsageError(f"{backend_config_file}: cannot read: {exc.strerror}") from None
    if backend_config:
        cfg = parse_backend_config(backend_config)
    opts = ConvertOptions(
        source_insecure=source_insecure, target_insecure=target_insecure,
        plain_http=plain_http, platform=platform, compressor=compressor, fs_version=fs_version,
        chunk_size=chunk_size, chunk_dict=chunk_dict, chunk_dict_insecure=chunk_dict_insecure,
        prefetch_patterns=tuple(_stdin_paths()) if prefetch_patterns else None, merge_platform=merge_platform,
        with_referrer=with_referrer, oci=oci or oci_ref, oci_ref=oci_ref, backend_type=backend_type,
        backend_config=cfg,
        work_dir=work_dir, output_json=output_json or None,
    )
    summary = OciConverter().convert(source, target, opts)
    click.echo(f"converted {source} -> {target} ({summary['manifest_digest']})")


@click.command("check")
@click.option("--source", default=None, help="The OCI image the Nydus image was converted from.")
@click.option("--target", required=True, help="The Nydus image to check.")
@click.option("--source-insecure", is_flag=True, help="Skip TLS verification / allow HTTP for the source.")
@click.option("--target-insecure", is_flag=True, help="Skip TLS verification / allow HTTP for the target.")
@click.option("--plain-http", is_flag=True, help="Talk plain HTTP to both registries.")
@click.option("--platform", default="linux/amd64", show_default=True, help="Platform to check.")
@click.option("--target-backend-type", default="registry", type=click.Choice(["registry", "s3", "oss"]),
              help="Where the Nydus image's blobs are (default: its registry).")
@click.option("--target-backend-config", default=None, help="Backend config JSON (for s3/oss).")
@click.option("--no-data", is_flag=True, help="Compare metadata only (no file data).")
@click.option("--work-dir", default="./output", show_default=True, type=click.Path(file_okay=False),
              help="Work directory for the bootstraps and trees being compared.")
@click.option("--log-level", "-l", default="info", show_default=True, help=LOG_LEVEL_HELP)
@click.option("--debug", "-D", is_flag=True, help=DEBUG_HELP)
def check_cmd(source: str | None, target: str, source_insecure: bool, target_insecure: bool, plain_http: bool,
              platform: str, target_backend_type: str, target_backend_config: str | None, no_data: bool,
              work_dir: str, log_level: str, debug: bool) -> None:
    """Check a Nydus image: manifest, bootstrap, and (with --source) every file against the OCI image."""
    from .check import CheckOptions, check
    from .options import parse_backend_config

    _logging(log_level, debug)
    cfg = parse_backend_config(target_backend_config) if target_backend_config else {}
    report = check(CheckOptions(
        source=source, target=target, source_insecure=source_insecure, target_insecure=target_insecure,
        plain_http=plain_http, platform=platform, backend_type=target_backend_type, backend_config=cfg,
        data=not no_data, work_dir=Path(work_dir)))
    for line in report.problems:
        click.echo(line)
    if report.problems:
        raise click.exceptions.Exit(1)
    click.echo(f"check passed: {report.summary()}")


@click.command("mount")
@click.option("--target", required=True, help="The Nydus image to mount.")
@click.option("--target-insecure", is_flag=True, help="Skip TLS verification / allow HTTP for the target.")
@click.option("--plain-http", is_flag=True, help="Talk plain HTTP to the registry.")
@click.option("--platform", default="linux/amd64", show_default=True, help="Platform to mount.")
@click.option("--backend-type", default="registry", type=click.Choice(["registry", "s3", "oss"]),
              help="Where the image's data blobs are (default: its registry).")
@click.option("--backend-config", default=None, help="Backend config JSON (for s3/oss).")
@click.option("--prefetch", is_flag=True, help="Prefetch the whole image in the background.")
@click.option("--mount-path", default="./image-fs", show_default=True, type=click.Path(file_okay=False),
              help="Mount the image here.")
@click.option("--work-dir", default="./tmp", show_default=True, type=click.Path(file_okay=False),
              help="Work directory for the bootstrap, the nydusd config and the blob cache.")
@click.option("--nydusd", default=None, help="Run this nydusd binary instead of serving in this process.")
@click.option("--amplify-io", default="0", show_default=True, callback=_chunk_size,
              help="Read-ahead bytes of on-demand reads (nydusd amplify_io).")
@click.option("--fs-driver", default="fusedev", show_default=True, type=click.Choice(["fusedev", "erofs"]),
              help="fusedev, or erofs: the kernel's EROFS driver over nydusd's blob devices "
                   "(RAFS v6, root, Linux 6.12+).")
@click.option("--log-level", "-l", default="info", show_default=True, help=LOG_LEVEL_HELP)
@click.option("--debug", "-D", is_flag=True, help=DEBUG_HELP)
def mount_cmd(target: str, target_insecure: bool, plain_http: bool, platform: str, backend_type: str,
              backend_config: str | None, prefetch: bool, mount_path: str, work_dir: str, nydusd: str | None,
              amplify_io: int, fs_driver: str, log_level: str, debug: bool) -> None:
    """Mount a Nydus image from a registry with nydusd; serve until interrupted."""
    from .mount import MountOptions, mount
    from .options import parse_backend_config

    _logging(log_level, debug)
    cfg = parse_backend_config(backend_config) if backend_config else {}
    rc = mount(MountOptions(target=target, insecure=target_insecure, plain_http=plain_http, platform=platform,
                            backend_type=backend_type, backend_config=cfg, prefetch=prefetch,
                            mount_path=Path(mount_path), work_dir=Path(work_dir), log_level=log_level,
                            nydusd=nydusd, amplify_io=amplify_io, fs_driver=fs_driver))
    if rc:
        raise click.exceptions.Exit(rc)


@click.group("nydusify", context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-v", "--version", prog_name="nydusify")
def nydusify() -> None:
    """Convert OCI images to Nydus images, check and mount them (nydus-py).

    \b
    Examples:
      nydusify convert --source docker.io/library/alpine:3 --target localhost:5000/alpine:3-nydus
      nydusify check --source docker.io/library/alpine:3 --target localhost:5000/alpine:3-nydus
      nydusify mount --target localhost:5000/alpine:3-nydus --mount-path ./rootfs
    """


nydusify.add_command(convert_cmd)
nydusify.add_command(check_cmd)
nydusify.add_command(mount_cmd)


def main() -> None:
    """Console script ``nydusify``."""
    sys.exit(run_main(nydusify, prog_name="nydusify"))


if __name__ == "__main__":
    main()
