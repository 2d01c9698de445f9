"""``nydus containerd ...``: commands that talk to containerd (``pull``)."""

from __future__ import annotations

import json

import click

DEFAULT_ADDRESS = "/run/containerd/containerd.sock"


@click.group("containerd")
def containerd() -> None:
    """Work with containerd and the Nydus snapshotter."""


@containerd.command("pull")
@click.argument("ref")
@click.option("--address", "-a", default=DEFAULT_ADDRESS, show_default=True, envvar="CONTAINERD_ADDRESS",
              help="containerd's gRPC socket.")
@click.option("--namespace", "-n", default="default", show_default=True, envvar="CONTAINERD_NAMESPACE",
              help="containerd namespace.")
@click.option("--snapshotter", default="nydus", show_default=True, help="Snapshotter (proxy plugin) name.")
@click.option("--plain-http", is_flag=True, help="Talk to the registry over plain HTTP.")
@click.option("--insecure", is_flag=True, help="Skip TLS verification (and allow HTTP fallback).")
@click.option("--docker-config", default=None, help="Docker config.json for credentials.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def pull_cmd(ref: str, address: str, namespace: str, snapshotter: str, plain_http: bool, insecure: bool,
             docker_config: str | None, as_json: bool) -> None:
    """Lazily pull the Nydus image REF into containerd: only its bootstrap is downloaded."""
    from .pull import pull

    res = pull(ref, address=address, namespace=namespace, snapshotter=snapshotter, plain_http=plain_http,
               insecure=insecure, docker_config=docker_config)
    if as_json:
        click.echo(json.dumps({"ref": res.ref, "manifest": res.manifest_digest, "chain_ids": res.chain_ids,
                               "prepared": res.prepared, "existing": res.existing}))
    else:
        click.echo(f"{res.ref}: {res.manifest_digest} ({len(res.prepared)} layer(s) prepared, "
                   f"{len(res.existing)} already there)")
