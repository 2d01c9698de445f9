"""`nydus-image` reports bad input on one line with a non-zero exit and no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nydus_testkit.samples import random_bytes

from nydus_core.plugins import compressor_by_id

BIN = Path(sys.executable).parent / "nydus-image"


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NYDUS_DEBUG"}
    return subprocess.run([str(BIN), *args], input=stdin.decode() if stdin else None,
                          capture_output=True, text=True, env=env, timeout=120)


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def image(tmp_path: Path) -> tuple[Path, Path, Path]:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.bin").write_bytes(random_bytes(50_000, 1))
    (src / "b.txt").write_bytes(b"hello world\n" * 1000)
    boot, blobs = tmp_path / "boot", tmp_path / "blobs"
    proc = run("create", str(src), "-B", str(boot), "-D", str(blobs), "--chunk-size", "0x4000")
    assert proc.returncode == 0, proc.stderr
    return src, boot, blobs


def test_bad_chunk_size(tmp_path: Path) -> None:
    proc = run("create", str(tmp_path), "-B", str(tmp_path / "b"), "-D", str(tmp_path / "d"),
               "--chunk-size", "0x3000")
    one_line_error(proc, "chunk size", "0x3000")
    assert proc.returncode == 2
    assert not (tmp_path / "b").exists()


def test_missing_source(tmp_path: Path) -> None:
    one_line_error(run("create", str(tmp_path / "nope"), "-B", str(tmp_path / "b"), "-D", str(tmp_path)),
                   "nope")


def test_unknown_compressor_names_alternatives(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    line = one_line_error(run("create", str(tmp_path / "src"), "-B", str(tmp_path / "b"), "-D",
                              str(tmp_path), "--compressor", "zstdd"), "zstdd")
    assert "zstd" in line.replace("zstdd", "")


def test_v5_output_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    one_line_error(run("create", str(tmp_path / "src"), "-B", str(tmp_path / "b"), "-D", str(tmp_path),
                       "--fs-version", "5"), "v6")


def test_not_a_bootstrap(tmp_path: Path) -> None:
    f = tmp_path / "junk"
    f.write_bytes(b"\0" * 9000)
    proc = run("check", str(f))
    one_line_error(proc, str(f))
    assert proc.returncode == 4


def test_truncated_bootstrap(image: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _src, boot, _blobs = image
    cut = tmp_path / "cut"
    cut.write_bytes(boot.read_bytes()[:5000])
    one_line_error(run("check", str(cut)), str(cut))


def test_flipped_blob_byte_names_blob_and_chunk(image: tuple[Path, Path, Path]) -> None:
    _src, boot, blobs = image
    (blob,) = blobs.iterdir()
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    proc = run("check", str(boot), "-D", str(blobs))
    line = one_line_error(proc, blob.name, "chunk")
    assert proc.returncode == 5, line


def test_missing_blob_dir(image: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _src, boot, _blobs = image
    one_line_error(run("check", str(boot), "-D", str(tmp_path / "none")), "none")


def test_debug_shows_traceback(tmp_path: Path) -> None:
    f = tmp_path / "junk"
    f.write_bytes(b"\0" * 9000)
    proc = run("--debug", "check", str(f))
    assert proc.returncode == 4 and "Traceback" in proc.stderr


def test_check_json_inspect_and_stat(image: tuple[Path, Path, Path], tmp_path: Path) -> None:
    src, boot, blobs = image
    out = tmp_path / "check.json"
    proc = run("check", str(boot), "-D", str(blobs), "-J", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["files"] == 2 and report["fs_version"] == 6
    assert report["bytes_verified"] >= 50_000 and report["compressor"] == "zstd"

    proc = run("inspect", str(boot), "-R", "file /d/a.bin")
    info = json.loads(proc.stdout)
    assert info["size"] == 50_000
    assert sum(c["uncompressed_size"] for c in info["chunks"]) == 50_000
    assert [c["file_offset"] for c in info["chunks"]] == [0, 0x4000, 0x8000, 0xC000]
    one_line_error(run("inspect", str(boot), "-R", "file /nope"), "/nope")

    # A second image with one file in common dedups against the first.
    src2 = tmp_path / "src2"
    src2.mkdir()
    (src2 / "same.bin").write_bytes((src / "d" / "a.bin").read_bytes())
    (src2 / "new.bin").write_bytes(random_bytes(10_000, 2))
    boot2 = tmp_path / "boot2"
    proc = run("create", str(src2), "-B", str(boot2), "-D", str(blobs), "--chunk-size", "0x4000")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(run("stat", "-B", str(boot2), "-T", str(boot)).stdout)
    assert stats["target"]["shared_bytes"] == 50_000
    assert stats["target"]["new_bytes"] == 10_000


def test_prefetch_policy_fs_reads_stdin(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x").write_bytes(b"x" * 10)
    (src / "y").write_bytes(b"y")
    boot = tmp_path / "boot"
    proc = run("create", str(src), "-B", str(boot), "-D", str(tmp_path / "blobs"),
               "--prefetch-policy", "fs", stdin=b"/a/x\n/y\n")
    assert proc.returncode == 0, proc.stderr
    table = json.loads(run("inspect", str(boot), "-R", "prefetch").stdout)
    assert [e["path"] for e in table] == ["/a/x", "/y"]


def test_data_sources_blob_file_and_backend(image: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """`unpack --blob FILE` and `check --backend-type localfs` read the same verified data."""
    src, boot, blobs = image
    (blob,) = blobs.iterdir()
    out = tmp_path / "out.tar"
    proc = run("unpack", str(boot), "--blob", str(blob), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    import tarfile

    with tarfile.open(out) as tf:
        member = tf.extractfile("d/a.bin")
        assert member is not None and member.read() == (src / "d" / "a.bin").read_bytes()
    cfg = json.dumps({"dir": str(blobs)})
    proc = run("check", str(boot), "--backend-type", "localfs", "--backend-config", cfg, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["bytes_verified"] >= 50_000
    one_line_error(run("check", str(boot), "--backend-type", "nosuch", "--backend-config", cfg), "nosuch")
    one_line_error(run("check", str(boot), "--backend-config", cfg), "--backend-type")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_is_one_line(image: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A write that fails (ENOSPC, via /dev/full) ends in one line naming the output, nothing left."""
    src, boot, blobs = image
    proc = run("create", str(src), "-B", str(tmp_path / "new.boot"), "--blob", "/dev/full")
    one_line_error(proc, "/dev/full", "No space left")
    assert proc.returncode == 8 and not (tmp_path / "new.boot").exists()
    proc = run("unpack", str(boot), "-D", str(blobs), "--output", "/dev/full")
    one_line_error(proc, "/dev/full", "No space left")


def test_check_a_bootstrap_extracted_from_an_inline_meta_blob(tmp_path: Path) -> None:
    """The bootstrap inside an inline-meta blob records the placeholder id; named after its blob (as
    the converter and upstream name per-layer bootstraps) it checks like any other."""
    from nydus_core.rafs.toc import extract_bootstrap_file

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(random_bytes(70_000, 3))
    blobs = tmp_path / "blobs"
    proc = run("create", str(src), "-D", str(blobs), "--blob-inline-meta", "--features", "blob-toc")
    assert proc.returncode == 0, proc.stderr
    (blob,) = blobs.iterdir()
    for name in (blob.name, f"{blob.name}.boot", f"sha256-{blob.name}", f"sha256:{blob.name}"):
        boot = tmp_path / name
        boot.write_bytes(extract_bootstrap_file(blob, compressor_for=compressor_by_id))
        proc = run("check", str(boot), "-D", str(blobs))
        assert proc.returncode == 0, proc.stderr
    odd = tmp_path / "layer.boot"
    odd.write_bytes(extract_bootstrap_file(blob, compressor_for=compressor_by_id))
    one_line_error(run("check", str(odd), "-D", str(blobs)), "placeholder")


def test_check_verifies_blob_meta_against_the_chunk_table(tmp_path: Path) -> None:
    """nydusd takes chunk locations from the blob's blob.meta: check compares it with the bootstrap."""
    from nydus_core.rafs.image import open_image

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(random_bytes(40_000, 4))
    boot, blobs = tmp_path / "boot", tmp_path / "blobs"
    assert run("create", str(src), "-B", str(boot), "-D", str(blobs), "--compressor", "none",
               "--chunk-size", "0x4000").returncode == 0
    with open_image(boot) as image:
        (info,) = image.blobs
    (blob,) = blobs.iterdir()
    data = bytearray(blob.read_bytes())
    data[info.ci_offset + 16 + 9] ^= 0x01  # record 1: comp_info bit 8, its compressed offset
    blob.write_bytes(bytes(data))
    line = one_line_error(run("check", str(boot), "-D", str(blobs)), "blob.meta")
    assert "record 1" in line


@pytest.mark.parametrize("flip", [-8, "middle"])
def test_targz_with_a_flipped_byte_is_refused(tmp_path: Path, flip: int | str) -> None:
    import gzip
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(20):
            data = random_bytes(30_000, i)
            info = tarfile.TarInfo(f"f{i}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    gz = bytearray(gzip.compress(buf.getvalue(), mtime=0))
    gz[len(gz) // 2 if flip == "middle" else int(flip)] ^= 0x10
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(gz))
    assert subprocess.run(["gzip", "-t"], input=bytes(gz), capture_output=True).returncode != 0
    boot = tmp_path / "boot"
    proc = run("create", "-t", "targz-rafs", "-B", str(boot), "-D", str(tmp_path / "blobs"), str(bad))
    one_line_error(proc, "bad.tar.gz", "invalid gzip stream")
    assert proc.returncode not in (0, 70)
    assert not boot.exists()
