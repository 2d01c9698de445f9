"""Drive a private containerd's CRI plugin over CRI gRPC, as kubelet does.

- :func:`cri_stubs`: Python stubs of ``runtime.v1`` generated at run time (grpcio-tools) from
  ``../shared/fixtures/cri/api.proto`` (never copied into the repository); None when it is absent.
- :class:`CriContainerd`: :class:`~.containerd.ContainerdProcess` with the CRI plugin on,
  ``snapshotter = "nydus"`` and snapshot annotations passed on, ``restrict_oom_score_adj`` (root here
  lacks CAP_SYS_RESOURCE), plain-HTTP registry mirrors, an empty CNI config (pods use the host network).
- :class:`CriClient`: the RuntimeService and ImageService clients on containerd's socket.
- :func:`push_pause_image`: a pause image made offline from this host's ``sleep`` (``sleep infinity``).
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from .containerd import ContainerdProcess, host_rootfs, push_oci_image
from .fixtures import repo_root

_PROTO_NAME = "k8s_cri_runtime_v1.proto"
_stubs: tuple[ModuleType, ModuleType] | None = None


def cri_proto() -> Path | None:
    """``../shared/fixtures/cri/api.proto`` beside the repository, or None."""
    p = repo_root().parent / "shared" / "fixtures" / "cri" / "api.proto"
    return p if p.is_file() else None


def cri_stubs() -> tuple[ModuleType, ModuleType] | None:
    """``(messages, services)`` generated from the CRI proto into a temp dir (once per process)."""
    global _stubs
    if _stubs is not None:
        return _stubs
    proto = cri_proto()
    if proto is None:
        return None
    from grpc_tools import protoc  # dev dependency

    out = Path(tempfile.mkdtemp(prefix="cri-stubs-"))
    shutil.copyfile(proto, out / _PROTO_NAME)
    include = str(Path(protoc.__file__).parent / "_proto")
    rc = protoc.main(["protoc", f"-I{out}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}",
                      str(out / _PROTO_NAME)])
    if rc != 0:
        raise RuntimeError(f"protoc failed on {proto} ({rc})")
    sys.path.insert(0, str(out))
    try:
        stem = _PROTO_NAME.removesuffix(".proto")
        _stubs = (importlib.import_module(f"{stem}_pb2"), importlib.import_module(f"{stem}_pb2_grpc"))
    finally:
        sys.path.remove(str(out))
        shutil.rmtree(out, ignore_errors=True)  # the modules are loaded; leave nothing in /tmp
    return _stubs


class CriContainerd(ContainerdProcess):
    """containerd with the CRI plugin using the ``nydus`` snapshotter (kubelet's view of a node)."""

    def __init__(self, workdir: Path, snapshotter_address: Path, *, sandbox_image: str,
                 plain_http: Sequence[str] = ()) -> None:
        super().__init__(workdir, snapshotter_address)
        self.sandbox_image = sandbox_image
        self.plain_http = list(plain_http)

    def _config(self) -> str:
        w = self.workdir
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        lines = [
            f"  {cri}",
            f'    sandbox_image = "{self.sandbox_image}"',
            "    restrict_oom_score_adj = true",
            '    stream_server_address = "127.0.0.1"',
            '    stream_server_port = "0"',
            '    [plugins."io.containerd.grpc.v1.cri".containerd]',
            '      snapshotter = "nydus"',
            "      disable_snapshot_annotations = false",
            '    [plugins."io.containerd.grpc.v1.cri".cni]',
            f'      bin_dir = "{w / "cni" / "bin"}"',
            f'      conf_dir = "{w / "cni" / "conf"}"',
        ]
        for host in self.plain_http:
            lines += [f'    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{host}"]',
                      f'      endpoint = ["http://{host}"]']
        base = super()._config()
        off = f"  {cri}\n    disable = true"
        assert off in base
        return base.replace(off, "\n".join(lines))

    def start(self, timeout: float = 30.0) -> CriContainerd:
        """Start containerd (CNI dirs created empty: pods use the host network)."""
        for d in ("bin", "conf"):
            (self.workdir / "cni" / d).mkdir(parents=True, exist_ok=True)
        super().start(timeout)
        return self


class CriClient:
    """RuntimeService and ImageService over containerd's socket; ``pb`` holds the messages."""

    def __init__(self, address: Path | str) -> None:
        import grpc

        stubs = cri_stubs()
        if stubs is None:
            raise RuntimeError("the CRI proto fixture is missing")
        self.pb, svc = stubs
        self.channel = grpc.insecure_channel(f"unix://{address}")
        self.runtime: Any = svc.RuntimeServiceStub(self.channel)
        self.images: Any = svc.ImageServiceStub(self.channel)

    def wait_exited(self, container_id: str, timeout: float = 30.0) -> Any:
        """The container's status once it has exited (RuntimeError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            req = self.pb.ContainerStatusRequest(container_id=container_id)
            st = self.runtime.ContainerStatus(req).status
            if st.state == self.pb.CONTAINER_EXITED:
                return st
            if time.monotonic() > deadline:
                raise RuntimeError(f"container {container_id} still {st.state} after {timeout}s")
            time.sleep(0.1)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


def push_pause_image(client: Any, host: str, workdir: Path, repo: str = "cri/pause", tag: str = "1") -> str:
    """Push a pause image built from this host's ``sleep`` (``sleep infinity`` never returns); its ref."""
    root = host_rootfs(workdir / "pause-root", binaries=("sleep",))
    return push_oci_image(client, host, repo, tag, [root], cmd=("/bin/sleep", "infinity")).ref


def parse_cri_log(text: str) -> list[tuple[str, str]]:
    """``(stream, line)`` of a CRI log file (``<time> <stream> <F|P> <line>``), partial lines joined."""
    out: list[tuple[str, str]] = []
    partial = ""
    for raw in text.splitlines():
        _time, stream, tag, msg = [*raw.split(" ", 3), "", "", ""][:4]
        partial += msg
        if tag == "F":
            out.append((stream, partial))
            partial = ""
    return out
