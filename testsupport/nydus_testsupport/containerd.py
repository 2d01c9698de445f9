"""Helpers for tests that run the real snapshotter under a real, private containerd.

- :func:`containerd_unavailable`: why these tests cannot run here (None when they can).
- :class:`SnapshotterProcess`: ``containerd-nydus-grpc`` in a child process on a temp socket.
- :class:`ContainerdProcess`: ``containerd`` with its own root, state, socket and config, the
  snapshotter registered as ``[proxy_plugins.nydus]``; :meth:`ContainerdProcess.ctr` runs ``ctr``.
- :func:`host_rootfs`: a tiny runnable root filesystem made of this host's binaries and their
  shared libraries; :func:`push_oci_image` pushes directories as an OCI image (tar+gzip layers);
  :func:`push_nydus_image` builds them into a Nydus image with ``nydus_core.builder`` (one data blob
  per layer + merged bootstrap layer, rafs-format.md §8) and pushes that.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nydus_core.mounts import force_unmount, mounts_under

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
NYDUS_BLOB_MEDIA = "application/vnd.oci.image.layer.nydus.blob.v1"


def containerd_unavailable() -> str | None:
    """Return why a private containerd cannot run containers here, or None."""
    if os.geteuid() != 0:
        return "containerd tests need root"
    for tool in ("containerd", "ctr", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install containerd runc)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    return None


def _script(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _wait(pred: Any, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} not ready in {timeout}s\n{tail}")


class SnapshotterProcess:
    """``containerd-nydus-grpc`` in a child process (``root``/``address`` under ``workdir``)."""

    def __init__(self, workdir: Path, *, config_text: str = "", daemon_mode: str = "shared") -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root = self.workdir / "root"
        self.address = self.workdir / "nydus.sock"
        self.config_path = self.workdir / "snapshotter.toml"
        self.config_path.write_text(f'address = "{self.address}"\nroot = "{self.root}"\nlog_level = "debug"\n'
                                    f'daemon_mode = "{daemon_mode}"\n' + config_text)
        self.log_path = self.workdir / "snapshotter.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def script() -> str:
        """Path of the installed ``containerd-nydus-grpc``."""
        return _script("containerd-nydus-grpc")

    def start(self, timeout: float = 30.0) -> SnapshotterProcess:
        """Start and wait until the socket accepts connections."""
        import socket

        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([_script("containerd-nydus-grpc"), "--config", str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"snapshotter exited: {self.log_path.read_text(errors='replace')[-3000:]}")
            if not self.address.exists():
                return False
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(str(self.address))
                return True
            except OSError:
                return False
            finally:
                s.close()

        _wait(ready, timeout, "snapshotter", self.log_path)
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait (nydusd keeps running: it belongs to the containers)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)

    def stop_nydusd(self) -> None:
        """Stop every nydusd this snapshotter started, shared or dedicated (end of a test)."""
        from nydus_snapshotter_containerd.nydusd import stop_all

        stop_all(self.root)

    def log(self) -> str:
        """What the snapshotter logged."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class ContainerdProcess:
    """A private ``containerd`` (root, state, socket in ``workdir``) with the ``nydus`` proxy plugin."""

    def __init__(self, workdir: Path, snapshotter_address: Path) -> None:
        self.workdir = Path(workdir)
        self.address = self.workdir / "containerd.sock"
        self.config_path = self.workdir / "containerd.toml"
        self.log_path = self.workdir / "containerd.log"
        self.snapshotter_address = snapshotter_address
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        w = self.workdir
        return "\n".join([
            "version = 2",
            f'root = "{w / "root"}"',
            f'state = "{w / "state"}"',
            "[grpc]",
            f'  address = "{self.address}"',
            "[ttrpc]",
            f'  address = "{w / "containerd.ttrpc.sock"}"',
            "[debug]",
            f'  address = "{w / "debug.sock"}"',
            '  level = "debug"',
            "[plugins]",
            '  [plugins."io.containerd.grpc.v1.cri"]',
            "    disable = true",
            # collect right after each deletion, so that removals reach the snapshotter promptly
            '  [plugins."io.containerd.gc.v1.scheduler"]',
            "    deletion_threshold = 1",
            "[proxy_plugins]",
            "  [proxy_plugins.nydus]",
            '    type = "snapshot"',
            f'    address = "{self.snapshotter_address}"',
            "",
        ])

    def start(self, timeout: float = 30.0) -> ContainerdProcess:
        """Write the config, start containerd and wait until ``ctr version`` answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config())
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(["containerd", "--config", str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited: {self.log_path.read_text(errors='replace')[-3000:]}")
            return self.address.exists() and self.ctr("version", check=False).returncode == 0

        _wait(ready, timeout, "containerd", self.log_path)
        return self

    def ctr(self, *args: str, check: bool = True, timeout: float = 120.0,
            namespace: str = "default") -> subprocess.CompletedProcess[str]:
        """Run ``ctr --address SOCK -n NS ARGS``; RuntimeError with its output when ``check`` fails."""
        res = subprocess.run(["ctr", "--address", str(self.address), "-n", namespace, *args],
                             capture_output=True, text=True, timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def stop(self, timeout: float = 20.0) -> None:
        """Stop containerd, its shims (killed via ``ctr``) and unmount what it left."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                for line in self.ctr("tasks", "ls", "-q", check=False, timeout=10).stdout.split():
                    self.ctr("tasks", "kill", "-s", "SIGKILL", line, check=False, timeout=10)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        for mp in mounts_under(self.workdir.resolve()):
            force_unmount(mp)

    def log(self) -> str:
        """What containerd logged."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# -- images -----------------------------------------------------------------------------------


#: Host programs a test image carries (with their shared libraries).
ROOTFS_BINARIES = ("sh", "cat", "ls", "echo", "sha256sum", "sleep", "stat", "head", "tail", "wc", "mkdir",
                   "touch")


def host_rootfs(dest: Path, binaries: Sequence[str] = ROOTFS_BINARIES) -> Path:
    """Copy host binaries (from ``/bin``) and the shared libraries they need into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    libs: set[str] = set()
    for b in binaries:
        src = shutil.which(b, path="/usr/bin:/bin")
        if src is None:
            raise RuntimeError(f"{b}: not found on this host")
        target = dest / "bin" / b
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(src), target)
        out = subprocess.run(["ldd", src], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            parts = line.split()
            for p in parts:
                if p.startswith("/"):
                    libs.add(p)
    for lib in libs:
        target = dest / lib.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(lib), target)
    for d in ("tmp", "proc", "sys", "dev", "etc", "data"):
        (dest / d).mkdir(exist_ok=True)
    return dest


def tar_dir(root: Path) -> bytes:
    """An uncompressed tar of ``root`` (sorted, numeric owners, fixed mtimes come from the files)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class PushedImage:
    """What was pushed: reference, manifest digest, layer descriptors and the config."""

    ref: str
    manifest_digest: str
    layers: list[dict[str, Any]]
    config: dict[str, Any]


def _config(diff_ids: list[str], cmd: Sequence[str], history: list[dict[str, Any]]) -> dict[str, Any]:
    return {"architecture": "amd64", "os": "linux",
            "config": {"Cmd": list(cmd), "Env": ["PATH=/bin:/usr/bin"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}


def _push(client: Any, host: str, repo: str, tag: str, layers: list[tuple[bytes, dict[str, Any]]],
          config: dict[str, Any]) -> PushedImage:
    descs = []
    for blob, desc in layers:
        client.push_blob(repo, blob)
        descs.append(desc)
    cfg_bytes = json.dumps(config, sort_keys=True).encode()
    client.push_blob(repo, cfg_bytes)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": _sha(cfg_bytes), "size": len(cfg_bytes)},
                "layers": descs}
    mbytes = json.dumps(manifest, sort_keys=True).encode()
    client.put_manifest(repo, tag, mbytes, OCI_MANIFEST)
    return PushedImage(f"{host}/{repo}:{tag}", _sha(mbytes), descs, config)


def push_oci_image(client: Any, host: str, repo: str, tag: str, layer_dirs: Sequence[Path],
                   cmd: Sequence[str] = ("/bin/sh",)) -> PushedImage:
    """Push ``layer_dirs`` (lowest first) as an OCI image with gzip'd tar layers."""
    layers, diff_ids = [], []
    for d in layer_dirs:
        raw = tar_dir(d)
        gz = gzip.compress(raw, mtime=0)
        diff_ids.append(_sha(raw))
        layers.append((gz, {"mediaType": OCI_LAYER_GZIP, "digest": _sha(gz), "size": len(gz)}))
    cfg = _config(diff_ids, cmd, [{"created_by": f"layer {i}"} for i in range(len(layers))])
    return _push(client, host, repo, tag, layers, cfg)


def bootstrap_layer(bootstrap: bytes) -> tuple[bytes, bytes]:
    """The bootstrap layer (gzip'd tar with ``image/image.boot``) and its uncompressed tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("image")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        f = tarfile.TarInfo("image/image.boot")
        f.size, f.mode = len(bootstrap), 0o444
        tar.addfile(f, io.BytesIO(bootstrap))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), raw


def push_nydus_image(client: Any, host: str, repo: str, tag: str, layer_dirs: Sequence[Path],
                     cmd: Sequence[str] = ("/bin/sh",), compressor: str = "none",
                     digester: str = "sha256") -> PushedImage:
    """Build ``layer_dirs`` into a Nydus image (a blob per layer, merged bootstrap) and push it."""
    from nydus_core.builder import BuildOptions, build

    with tempfile.TemporaryDirectory(prefix="nydus-img-") as tmp:
        t = Path(tmp)
        boots, blobs = [], []
        parent: Path | None = None
        for i, d in enumerate(layer_dirs):
            boot = t / f"layer{i}.boot"
            res = build(str(d), "dir-rafs", bootstrap=boot, blob_dir=t / "blobs",
                        options=BuildOptions(compressor=compressor, digester=digester,
                                             parent_bootstrap=parent, whiteout_spec="oci"))
            parent = boot
            boots.append(boot)
            if res.blob_path is not None:
                blobs.append(res.blob_path.read_bytes())
        merged = boots[-1]  # built on its parents: the whole tree and every blob
        layers, diff_ids = [], []
        for blob in blobs:
            digest = _sha(blob)
            diff_ids.append(digest)
            layers.append((blob, {"mediaType": NYDUS_BLOB_MEDIA, "digest": digest, "size": len(blob),
                                  "annotations": {"containerd.io/snapshot/nydus-blob": "true"}}))
        gz, raw = bootstrap_layer(merged.read_bytes())
        diff_ids.append(_sha(raw))
        layers.append((gz, {"mediaType": OCI_LAYER_GZIP, "digest": _sha(gz), "size": len(gz),
                            "annotations": {"containerd.io/snapshot/nydus-bootstrap": "true",
                                            "containerd.io/snapshot/nydus-fs-version": "6"}}))
        history = [{"created_by": f"layer {i}"} for i in range(len(blobs))]
        history.append({"created_by": "Nydus Converter", "comment": "Nydus Bootstrap Layer"})
        return _push(client, host, repo, tag, layers, _config(diff_ids, cmd, history))


class ContainerdEnv:
    """A snapshotter and a private containerd using it, in ``workdir``; ``plain_http`` registries."""

    def __init__(self, workdir: Path, plain_http: Sequence[str] = (), *, daemon_mode: str = "shared",
                 config_text: str = "") -> None:
        hosts = ", ".join(f'"{h}"' for h in plain_http)
        self.snapshotter = SnapshotterProcess(Path(workdir) / "sn", config_text=f"plain_http = [{hosts}]\n"
                                              + config_text, daemon_mode=daemon_mode)
        self.containerd = ContainerdProcess(Path(workdir) / "cd", self.snapshotter.address)

    def start(self) -> ContainerdEnv:
        """Start the snapshotter, then containerd."""
        self.snapshotter.start()
        try:
            self.containerd.start()
        except BaseException:
            self.snapshotter.stop()
            raise
        return self

    def ctr(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """``ctr`` against this containerd."""
        return self.containerd.ctr(*args, **kwargs)

    def restart_snapshotter(self) -> None:
        """Stop the snapshotter process and start a new one on the same root and socket."""
        self.snapshotter.stop()
        self.snapshotter.start()

    def stop(self) -> None:
        """Stop containerd, the snapshotter and its nydusd; unmount leftovers."""
        try:
            self.containerd.stop()
        finally:
            self.snapshotter.stop()
            self.snapshotter.stop_nydusd()
            for mp in mounts_under(self.snapshotter.workdir.resolve()):
                force_unmount(mp)

    def logs(self) -> str:
        """The tail of both logs, for failure messages."""
        return (f"--- snapshotter ---\n{self.snapshotter.log()[-4000:]}\n"
                f"--- containerd ---\n{self.containerd.log()[-4000:]}")


@dataclass
class Lab:
    """A test registry, a counting proxy in front of it, and containerd + snapshotter trusting both."""

    registry: Any  # nydus_testsupport.registry.RegistryFlavour
    proxy: Any  # nydus_testsupport.registry.FaultProxy
    env: ContainerdEnv

    def ctr(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """``ctr`` against the private containerd."""
        return self.env.ctr(*args, **kwargs)


class SnapshotsClient:
    """A direct gRPC client of a snapshotter socket (what containerd's proxy plugin sends)."""

    def __init__(self, address: Path | str) -> None:
        import grpc
        from nydus_snapshotter_containerd.api import snapshots_grpc, snapshots_pb2

        self.pb = snapshots_pb2
        self.channel = grpc.insecure_channel(f"unix://{address}")
        self.stub = snapshots_grpc.SnapshotsStub(self.channel)

    def prepare(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> list[Any]:
        """Prepare; returns the mounts."""
        req = self.pb.PrepareSnapshotRequest(key=key, parent=parent, labels=labels or {})
        return list(self.stub.Prepare(req, timeout=120).mounts)

    def view(self, key: str, parent: str, labels: dict[str, str] | None = None) -> list[Any]:
        """View; returns the mounts."""
        return list(self.stub.View(self.pb.ViewSnapshotRequest(key=key, parent=parent, labels=labels or {}),
                                   timeout=120).mounts)

    def mounts(self, key: str) -> list[Any]:
        """Mounts of ``key``."""
        return list(self.stub.Mounts(self.pb.MountsRequest(key=key), timeout=120).mounts)

    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        """Commit ``key`` as ``name``."""
        self.stub.Commit(self.pb.CommitSnapshotRequest(name=name, key=key, labels=labels or {}), timeout=60)

    def remove(self, key: str) -> None:
        """Remove ``key``."""
        self.stub.Remove(self.pb.RemoveSnapshotRequest(key=key), timeout=60)

    def stat(self, key: str) -> Any:
        """Info of ``key``."""
        return self.stub.Stat(self.pb.StatSnapshotRequest(key=key), timeout=60).info

    def update(self, name: str, labels: dict[str, str], paths: Sequence[str] = ()) -> Any:
        """Update labels (with a field mask when ``paths``)."""
        from google.protobuf import field_mask_pb2

        req = self.pb.UpdateSnapshotRequest(info=self.pb.Info(name=name, labels=labels))
        if paths:
            req.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=list(paths)))
        return self.stub.Update(req, timeout=60).info

    def list(self, *filters: str) -> list[Any]:
        """Every info matching any of ``filters``."""
        out = []
        for resp in self.stub.List(self.pb.ListSnapshotsRequest(filters=list(filters)), timeout=60):
            out.extend(resp.info)
        return out

    def usage(self, key: str) -> Any:
        """Usage of ``key``."""
        return self.stub.Usage(self.pb.UsageRequest(key=key), timeout=60)

    def cleanup(self) -> None:
        """Cleanup."""
        self.stub.Cleanup(self.pb.CleanupRequest(), timeout=60)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()
