"""Unit tests of the daemon's small parts: inode mapping, inode sets, metrics buckets."""

from __future__ import annotations

import os
import random
import stat
from types import SimpleNamespace

import pytest
from nydus_frontend_fuse.inodeset import InodeSet
from nydus_frontend_fuse.metrics import Fop, FsMetrics, block_bucket, latency_bucket
from nydus_frontend_fuse.ops import _permitted
from nydus_frontend_fuse.vfs import ROOT, SLOT_SHIFT, Vfs
from pyfuse3 import FUSEError


def _inst(root_ino: int) -> SimpleNamespace:
    return SimpleNamespace(root_ino=root_ino, slot=-1, mountpoint="", retired=False, refs=0,
                           open_handles=0)


def test_inode_mapping_round_trips() -> None:
    vfs = Vfs()
    root = _inst(36)  # a v6 root nid
    vfs.attach("/", root)
    for local in (36, 1, 2, 37, 10**9):
        fuse = vfs.to_fuse(root, local)
        assert vfs.resolve(fuse) == (root, local)
    assert vfs.to_fuse(root, 36) == ROOT and vfs.to_fuse(root, 1) == 36
    with pytest.raises(FileExistsError):
        vfs.attach("/sub", _inst(1))


def test_sub_mounts_get_their_own_slots_and_are_never_reused() -> None:
    vfs = Vfs()
    a, b = _inst(1), _inst(36)
    assert vfs.attach("/a", a) == (ROOT, b"a")
    parent, name = vfs.attach("/x/y/b", b)
    assert name == b"b" and parent != ROOT
    assert a.slot != b.slot and a.slot > 0
    fuse = vfs.to_fuse(b, 40)
    assert fuse >> SLOT_SHIFT == b.slot and vfs.resolve(fuse) == (b, 40)
    with pytest.raises(FileExistsError):
        vfs.attach("/a", _inst(1))
    with pytest.raises(FileExistsError):
        vfs.attach("/a/inside", _inst(1))
    with pytest.raises(ValueError):
        vfs.attach("relative", _inst(1))
    with pytest.raises(ValueError):
        vfs.attach("/../etc", _inst(1))
    old_slot = a.slot
    inst, entry = vfs.detach("/a")
    assert inst is a and entry == (ROOT, b"a") and a.retired
    assert vfs.reap() == [a]
    with pytest.raises(FUSEError):
        vfs.resolve(vfs.to_fuse(a, 5))
    c = _inst(1)
    vfs.attach("/a", c)
    assert c.slot > old_slot
    with pytest.raises(PermissionError):
        vfs.detach("/")
    with pytest.raises(FileNotFoundError):
        vfs.detach("/nothing")


def test_retired_instance_lives_while_referenced() -> None:
    vfs = Vfs()
    a = _inst(1)
    vfs.attach("/a", a)
    a.refs, a.open_handles = 3, 1
    vfs.detach("/a")
    assert vfs.reap() == []
    assert vfs.resolve(vfs.to_fuse(a, 7)) == (a, 7)  # open files still read
    a.refs, a.open_handles = 0, 0
    assert vfs.reap() == [a]


def test_inode_set_matches_a_set() -> None:
    rng = random.Random(3)
    s, ref = InodeSet(), set()
    for _ in range(20_000):
        x = rng.choice([rng.randrange(1000), rng.randrange(1 << 20), rng.randrange(1 << 40)])
        if rng.random() < 0.6:
            s.add(x)
            ref.add(x)
        else:
            s.discard(x)
            ref.discard(x)
    probes = list(ref) + [rng.randrange(1 << 21) for _ in range(2000)] + [-1, "x"]
    assert all((x in s) == (x in ref) for x in probes)
    assert len(s) == len(ref)


def test_metric_buckets_follow_upstream() -> None:
    assert [block_bucket(n) for n in (1, 1024, 1025, 4096, 16 << 10, 64 << 10, 128 << 10, 512 << 10,
                                      1 << 20, (1 << 20) + 1)] == [0, 1, 1, 2, 3, 4, 5, 6, 7, 7]
    assert [latency_bucket(us) for us in (0, 1000, 1001, 20_000, 50_000, 100_000, 500_000, 10**6,
                                          2 * 10**6, 3 * 10**6)] == [0, 0, 1, 1, 2, 3, 4, 5, 6, 7]
    m = FsMetrics("/x", files=True, latest_read_files=True)
    m.record(Fop.OPEN, 5, True)
    m.record(Fop.READ, 5, True, 4096)
    m.record(Fop.READ, 6, True, 100)
    m.record(Fop.READ, 9, False)
    m.record(Fop.RELEASE, 5, True)
    g = m.global_stats()
    assert g["data_read"] == 4196 and g["fop_hits"][Fop.READ] == 2 and g["fop_errors"][Fop.READ] == 1
    assert g["nr_opens"] == 0 and g["nr_max_opens"] == 1
    assert m.files_stats()["5"]["data_read"] == 4096
    assert m.latest_read_files() == [[5, 6]] and m.latest_read_files() == []


def test_permission_check() -> None:
    def ctx(uid: int, gid: int) -> SimpleNamespace:
        return SimpleNamespace(uid=uid, gid=gid, pid=os.getpid())

    f = stat.S_IFREG
    assert _permitted(f | 0o640, 0, 1000, os.R_OK, ctx(1000, 1000))
    assert not _permitted(f | 0o640, 0, 1000, os.R_OK, ctx(1000, 2000))
    assert not _permitted(f | 0o600, 0, 0, os.R_OK, ctx(1000, 1000))
    assert _permitted(f | 0o600, 1000, 0, os.R_OK, ctx(1000, 1000))
    assert _permitted(f | 0o600, 1000, 0, os.R_OK, ctx(0, 0))
    assert not _permitted(f | 0o644, 0, 0, os.X_OK, ctx(0, 0))
    assert _permitted(stat.S_IFDIR | 0o700, 5, 5, os.X_OK, ctx(0, 0))


def test_daemon_info_masks_secrets() -> None:
    from nydus_core.redact import masked

    cfg = {"device": {"backend": {"type": "registry", "config": {
        "host": "r:5000", "auth": "dXNlcjpwYXNz", "registry_token": "", "proxy": {"token": "t",
                                                                             "url": "http://u:pw@p:80"}}}},
        "list": [{"access_key_secret": "s"}]}
    out = masked(cfg)
    assert out["device"]["backend"]["config"] == {"host": "r:5000", "auth": "***", "registry_token": "",
                                                  "proxy": {"token": "***", "url": "http://***@p:80"}}
    assert out["list"] == [{"access_key_secret": "***"}]
    assert cfg["device"]["backend"]["config"]["auth"] == "dXNlcjpwYXNz"  # the original is untouched
