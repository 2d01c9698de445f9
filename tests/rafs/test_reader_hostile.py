"""Hostile and truncated bootstraps: every one gives a one-line FormatError naming the file, quickly.

Offsets are located in the upstream fixtures with ``struct`` per rafs-format.md (§4, §5), then single
fields are overwritten with out-of-range values.
"""

from __future__ import annotations

import struct
import time

import pytest
from nydus_testsupport.fixtures import require_upstream
from nydus_testsupport.image_walk import exercise_image
from nydus_testsupport.timeouts import time_limit

from nydus_core.errors import BuildError, FormatError, NydusError, UnsupportedFeatureError
from nydus_core.rafs.image import open_image
from nydus_core.rafs.reader import open_bootstrap_bytes
from nydus_core.tools.check import self_check

NAME = "hostile.boot"


def patch(data: bytes, off: int, fmt: str, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into("<" + fmt, b, off, value)
    return bytes(b)


def rejected(data: bytes, match: str | None = None, exc: type[NydusError] = FormatError) -> str:
    """Assert that opening and exercising ``data`` raises ``exc`` within a second; return the message."""
    start = time.monotonic()
    with pytest.raises(exc, match=match) as info, time_limit(5):
        exercise_image(open_bootstrap_bytes(data, NAME))
    assert time.monotonic() - start < 1.0
    message = str(info.value)
    assert message.startswith(f"{NAME}: ") and "\n" not in message
    return message


@pytest.fixture(scope="module")
def v5() -> bytes:
    return (require_upstream() / "rafs-v5" / "sha256-nocompress-repeatable").read_bytes()


@pytest.fixture(scope="module")
def v6() -> bytes:
    return (require_upstream() / "rafs-v6" / "rafs-v6-2.2.boot").read_bytes()


# -- v5 ---------------------------------------------------------------------------------------

def v5_record(data: bytes, index: int) -> int:
    """File offset of the inode record at 1-based inode index ``index``."""
    it_off = struct.unpack_from("<Q", data, 32)[0]
    return struct.unpack_from("<I", data, it_off + 4 * (index - 1))[0] << 3


def v5_index_of(data: bytes, name: bytes) -> int:
    entries = struct.unpack_from("<I", data, 56)[0]
    for k in range(1, entries + 1):
        off = v5_record(data, k)
        size = struct.unpack_from("<H", data, off + 100)[0]
        if data[off + 128:off + 128 + size] == name:
            return k
    raise AssertionError(name)


def test_v5_fixture_is_accepted(v5):
    assert exercise_image(open_bootstrap_bytes(v5, NAME)) == 54


@pytest.mark.parametrize(("off", "fmt", "value", "match"), [
    (0, "I", 0, "bad magic"),
    (8, "I", 4096, "superblock size"),
    (12, "I", 3, "invalid chunk size"),
    (16, "Q", 0x9 | 1 << 40, "unknown superblock flags"),
    (24, "Q", 1 << 40, "inodes"),
    (32, "Q", 1 << 62, "inode table.*outside the file"),
    (32, "Q", 8196, "misaligned"),
    (56, "I", 0xFFFFFFFF, "inode table.*outside the file"),
    (60, "I", 0xFFFFFFFF, "prefetch table.*outside the file"),
    (64, "I", 0xFFFFFFF8, "blob table.*outside the file"),
    (68, "I", 2, "extended blob table has 2 entries for 1 blobs"),
    (68, "I", 0xFFFFFFFF, "extended blob table.*outside the file"),
    (72, "Q", 1 << 63, "extended blob table.*outside the file"),
    (60, "I", 1, "overlap"),  # prefetch table on top of the blob table
])
def test_v5_bad_superblock(v5, off, fmt, value, match):
    rejected(patch(v5, off, fmt, value), match)


def test_v5_unsupported_features(v5):
    rejected(patch(v5, 16, "Q", 0x9 | 0x200), "tarfs", UnsupportedFeatureError)
    rejected(patch(v5, 16, "Q", 0x9 | 0x0200_0000), "encryption", UnsupportedFeatureError)
    ext_off = struct.unpack_from("<Q", v5, 72)[0]
    rejected(patch(v5, ext_off + 4, "I", 0x80), "batch", UnsupportedFeatureError)
    rejected(patch(v5, ext_off + 4, "I", 0x8), "zran", UnsupportedFeatureError)


def test_v5_bad_inode_table(v5):
    it_off = struct.unpack_from("<Q", v5, 32)[0]
    rejected(patch(v5, it_off, "I", 0), "inode table entry 1 is invalid")
    rejected(patch(v5, it_off + 8, "I", 0x1FFFFFFF), "outside the file")
    rejected(patch(v5, it_off + 8, "I", 5), "inode table entry 3 is invalid")


@pytest.mark.parametrize(("name", "field", "fmt", "value", "match"), [
    (b"/", 60, "I", 0o100755, "inode 1 is not the root directory"),
    (b"hardlink-test", 40, "Q", 0, "inode number 0 out of range"),
    (b"hardlink-test", 40, "Q", 1 << 40, "out of range"),
    (b"hardlink-test", 96, "I", 0xFFFFFFFF, "children .* out of range"),
    (b"hardlink-test", 92, "I", 1, "children .* out of range"),
    (b"hardlink-test", 100, "H", 0, "name size 0"),
    (b"hardlink-test", 100, "H", 0xFFFF, "name size 65535"),
    (b"hardlink-test", 88, "I", 0, "link count is 0"),
    (b"hardlink-test", 32, "Q", 0, "no parent"),
    (b"hardlink-test", 60, "I", 0o170755, "invalid file mode"),
    (b"layer.tar", 96, "I", 0xFFFFFFFF, "chunks for a file"),
    (b"layer.tar", 64, "Q", 1 << 62, "chunks for a file"),
    (b"layer.tar", 64, "Q", 1 << 20, "chunks for a file"),
    (b"layer.tar", 80, "Q", 0x4, "xattr table of inode .* outside the file"),
    (b"root-2", 102, "H", 0, "symlink without target"),
    (b"root-2", 102, "H", 0xFFFF, "outside the file"),
])
def test_v5_bad_inode_record(v5, name, field, fmt, value, match):
    off = v5_record(v5, v5_index_of(v5, name))
    rejected(patch(v5, off + field, fmt, value), match)


@pytest.mark.parametrize(("field", "fmt", "value", "match"), [
    (32, "I", 9, "blob index 9 out of range"),
    (36, "I", 0x80, "unknown chunk flags"),
    (40, "I", 0xFFFFFFFF, "compressed size"),
    (44, "I", 0, "covers"),
    (48, "Q", 1 << 63, "compressed range .* outside blob"),
    (56, "Q", 1 << 63, "uncompressed range .* outside blob"),
    (64, "Q", 4096, "covers"),
    (72, "I", 1000, "chunk index 1000 out of range"),
])
def test_v5_bad_chunk_record(v5, field, fmt, value, match):
    off = v5_record(v5, v5_index_of(v5, b"layer.tar"))
    first_chunk = off + 128 + 16  # "layer.tar" is 9 bytes, padded to 16; no symlink, no xattrs
    assert struct.unpack_from("<Q", v5, first_chunk + 64)[0] == 0  # file_offset of chunk 0
    rejected(patch(v5, first_chunk + field, fmt, value), match)


def test_v5_directory_cycle_and_bad_names(v5):
    # The child "foo" of /hardlink-test claims to be inode 1 (the root): a directory cycle.
    off = v5_record(v5, v5_index_of(v5, b"foo"))
    rejected(patch(v5, off + 40, "Q", 1), "directory cycle")
    bad = bytearray(v5)
    bad[off + 128:off + 131] = b"../"[:3]
    rejected(bytes(bad), "invalid file name")


# -- v6 ---------------------------------------------------------------------------------------

def v6_layout(data: bytes) -> dict[str, int]:
    """Locate the root inode, its inline dirents and lib.rs' inode in the v6 fixture."""
    root_nid = struct.unpack_from("<H", data, 1024 + 14)[0]
    meta = struct.unpack_from("<I", data, 1024 + 40)[0] * 4096
    root = meta + root_nid * 32
    assert struct.unpack_from("<H", data, root)[0] == 0x5  # extended inode, FLAT_INLINE
    dirents = root + 64
    nameoff = struct.unpack_from("<H", data, dirents + 2 * 12 + 8)[0]
    assert data[dirents + nameoff:dirents + nameoff + 6] == b"lib.rs"
    lib_nid = struct.unpack_from("<Q", data, dirents + 2 * 12)[0]
    lib = meta + lib_nid * 32
    assert struct.unpack_from("<H", data, lib)[0] == 0x9  # extended inode, CHUNK_BASED
    return {"root": root, "dirents": dirents, "lib_dirent": dirents + 24, "lib": lib,
            "blob": struct.unpack_from("<Q", data, 1152 + 8)[0],
            "chunk_table": struct.unpack_from("<Q", data, 1152 + 24)[0]}


def test_v6_fixture_is_accepted(v6):
    assert exercise_image(open_bootstrap_bytes(v6, NAME)) == 3


@pytest.mark.parametrize(("off", "fmt", "value", "match"), [
    (1024, "I", 0, "bad magic"),
    (1028, "I", 1, "checksum"),
    (1032, "I", 0, "compat"),
    (1036, "B", 9, "block size bits"),
    (1037, "B", 1, "extra slots"),
    (1038, "H", 0xFFFF, "nid 65535 lies outside the file"),
    (1040, "Q", 0, "0 inodes"),
    (1064, "I", 0xFFFFFFFF, "meta block address"),
    (1068, "I", 1, "shared xattrs"),
    (1104, "I", 0xD, "incompat"),
    (1110, "H", 0xFFFF, "device table.*outside the file"),
    (1110, "H", 2, "2 devices"),
    (1112, "H", 12, "slot offset"),
    (1152, "Q", 0x194 | 0x2, "exactly one compressor"),
    (1152, "Q", 0x194 & ~0x4, "exactly one digest"),
    (1152, "Q", 0x194 | 1 << 40, "unknown superblock flags"),
    (1160, "Q", 1 << 62, "blob table.*outside the file"),
    (1160, "Q", 4097, "misaligned"),
    (1168, "I", 0xFFFFFF00, "blob table.*outside the file"),
    (1172, "I", 12345, "invalid chunk size"),
    (1176, "Q", 4096, "overlap"),
    (1184, "Q", 80 << 40, "chunk table.*outside the file"),
    (1184, "Q", 81, "misaligned"),
    (1200, "I", 0xFFFFFFFC, "prefetch table.*outside the file"),
    (1408 + 64, "I", 0, "0 blocks"),
    (1408, "B", 0, "printable"),
])
def test_v6_bad_superblocks_and_devices(v6, off, fmt, value, match):
    rejected(patch(v6, off, fmt, value), match)


def test_v6_bad_blob_entry(v6):
    blob = v6_layout(v6)["blob"]
    features = struct.unpack_from("<I", v6, blob + 84)[0]
    rejected(patch(v6, blob + 64, "I", 3), "records blob index 3")
    rejected(patch(v6, blob + 68, "I", 0x200000), "chunk size")
    rejected(patch(v6, blob + 72, "I", 1 << 25), "exceeds 2")
    rejected(patch(v6, blob + 76, "I", 9), "unknown compression")
    rejected(patch(v6, blob + 80, "I", 9), "unknown digest")
    rejected(patch(v6, blob + 84, "I", features & ~1), "ALIGNED")
    rejected(patch(v6, blob + 84, "I", features | 0x8000), "unknown blob features")
    rejected(patch(v6, blob + 120, "Q", 1 << 40), "compressed size")
    rejected(patch(v6, blob + 128, "Q", 48), "chunk-info size")
    rejected(patch(v6, blob + 88, "Q", 1 << 41), "out of range")
    rejected(patch(v6, blob, "B", 0), "invalid blob id")
    rejected(patch(v6, blob + 84, "I", features | 0x8), "ZRAN without CHUNK_INFO_V2")
    for bit, word in ((0x80, "batch"), (0x100, "encryption"), (0x40, "tarfs")):
        rejected(patch(v6, blob + 84, "I", features | bit), word, UnsupportedFeatureError)
    rejected(patch(v6, blob + 216, "I", 1), "encryption", UnsupportedFeatureError)
    rejected(patch(v6, 1152, "Q", 0x194 | 0x200), "tarfs", UnsupportedFeatureError)


@pytest.mark.parametrize(("where", "field", "fmt", "value", "match"), [
    ("root", 0, "H", 0xFF, "unknown i_format"),
    ("root", 0, "H", 0xB, "layout 5"),
    ("root", 4, "H", 0o170755, "invalid file mode"),
    ("root", 4, "H", 0o100644, "not a directory"),
    ("root", 44, "I", 0, "link count is 0"),
    ("root", 8, "Q", 1 << 60, "directory data .* outside the file"),
    ("root", 8, "Q", 4090, "crosses a block boundary"),
    ("root", 2, "H", 0xFFFF, "xattrs of inode nid .* outside the file"),
    ("dirents", 8, "H", 7, "invalid first name offset 7"),
    ("dirents", 8, "H", 4096, "invalid first name offset 4096"),
    ("lib_dirent", 0, "Q", 1 << 40, "lies outside the file"),
    ("lib_dirent", 0, "Q", 128, "directory cycle"),
    ("lib_dirent", 8, "H", 0xFFFF, "invalid name range"),
    ("lib", 8, "Q", 1 << 60, "chunk index array .* outside the file"),
    ("lib", 8, "Q", 1 << 20, "does not fit the file size"),
    ("lib", 16, "I", 0, "block map"),
    ("lib", 64, "I", 0, "names no blob device"),
    ("lib", 64, "I", 0x0001FFFF, "not in the chunk table"),
    ("lib", 68, "I", 7, "not in the chunk table"),
    ("chunk_table", 32, "I", 5, "blob index 5 out of range"),
    ("chunk_table", 40, "I", 0, "compressed size 0"),
])
def test_v6_bad_inodes_dirents_chunks(v6, where, field, fmt, value, match):
    off = v6_layout(v6)[where]
    rejected(patch(v6, off + field, fmt, value), match)


def test_v6_compressed_layout_is_unsupported(v6):
    root = v6_layout(v6)["root"]
    rejected(patch(v6, root, "H", 0x3), "compression", UnsupportedFeatureError)


# -- both -------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["v5", "v6"])
def test_truncated_at_many_lengths(request, which):
    data = request.getfixturevalue(which)
    lengths = sorted({*range(0, len(data), 61), *range(len(data) - 64, len(data)), 8192, 8193, 4096})
    for n in lengths:
        rejected(data[:n])


def test_bad_files_name_the_path(tmp_path):
    cases = {"empty": b"", "garbage": b"hello world" * 1000, "zeros": bytes(16384)}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(FormatError, match=f"^{tmp_path / name}: not a RAFS bootstrap"):
            open_image(tmp_path / name)
    with pytest.raises(FormatError, match="not found"):
        open_image(tmp_path / "missing")
    with pytest.raises(FormatError, match="directory"):
        open_image(tmp_path)


def test_errors_on_a_file_name_the_file(v6, tmp_path):
    path = tmp_path / "bad.boot"
    path.write_bytes(patch(v6, 1172, "I", 12345))
    with pytest.raises(FormatError, match=f"^{path}: invalid chunk size"):
        open_image(path)
    path.write_bytes(patch(v6, v6_layout(v6)["blob"] + 84, "I", 0x70000021 | 0x8))
    with pytest.raises(FormatError, match=f"^{path}: blob table entry 0: .*ZRAN without CHUNK_INFO_V2"):
        open_image(path)


@pytest.mark.parametrize(("where", "field", "fmt", "value", "match"), [
    ("lib", 8, "Q", 1 << 20, "does not fit the file size"),
    ("lib", 64, "I", 0, "names no blob device"),
    ("lib", 68, "I", 7, "not in the chunk table"),
    ("chunk_table", 40, "I", 0, "compressed size 0"),
    ("chunk_table", 36, "I", 0x4, "encryption"),
    ("chunk_table", 44, "I", 9, "does not fit the file size"),
])
def test_v6_check_walk_finds_what_chunks_finds(v6, where, field, fmt, value, match):
    """The check walk's chunk_bytes() (no records decoded) raises what chunks() raises."""
    data = patch(v6, v6_layout(v6)[where] + field, fmt, value)
    with pytest.raises(NydusError, match=match), open_bootstrap_bytes(data, NAME) as image:
        for _path, ino, attrs in image.walk_attrs():
            if attrs.is_reg:
                image.chunk_bytes(ino)
    with pytest.raises(BuildError, match=match):
        self_check(data, NAME)


def test_v6_chunk_bytes_is_the_chunks_sum(v6):
    with open_bootstrap_bytes(v6, NAME) as image:
        files = [ino for _path, ino, attrs in image.walk_attrs() if attrs.is_reg]
        assert files
        for ino in files:
            assert image.chunk_bytes(ino) == sum(c.uncompressed_size for c in image.chunks(ino)) > 0
