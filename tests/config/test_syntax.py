"""Reading config text and files: JSON/TOML detection, syntax errors with line and column, limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nydus_core.config import MAX_CONFIG_SIZE, load_config, parse_config
from nydus_core.errors import ConfigError

LOCALFS_V1 = {"device": {"backend": {"type": "localfs", "config": {"dir": "/blobs"}}}}
LOCALFS_V2_TOML = 'version = 2\n[backend]\ntype = "localfs"\n[backend.localfs]\ndir = "/blobs"\n'


def position(text: str, marker: str) -> tuple[int, int]:
    """Line and column (1-based) where ``marker`` starts in ``text``."""
    index = text.index(marker)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def test_json_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    text = '{\n  "device": {\n    "id": "x",\n    "backend": ,\n  }\n}\n'
    path = tmp_path / "nydusd.json"
    path.write_text(text)
    line, column = position(text, ",\n  }")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    assert str(info.value).startswith(f"{path}: invalid JSON at line {line}, column {column}: ")
    assert "\n" not in str(info.value)


def test_toml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    text = 'version = 2\n[backend]\ntype = "localfs"\nbad = [1, 2\n'
    path = tmp_path / "nydusd.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid TOML at line ")
    line = int(message.split("at line ")[1].split(",")[0])
    assert line in (4, 5)  # the unclosed array on line 4 is noticed at the end of it or of the document
    assert "\n" not in message


def test_toml_error_at_end_of_document_still_has_a_position() -> None:
    text = 'version = 2\nid = '
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="cfg.toml")
    lines = text.split("\n")
    assert f"at line {len(lines)}, column {len(lines[-1]) + 1}" in str(info.value)


def test_toml_duplicate_table_reports_its_line() -> None:
    text = 'version = 2\n[rafs]\nmode = "direct"\n[rafs]\nmode = "cached"\n'
    line, _ = position(text, '[rafs]\nmode = "cached"')
    with pytest.raises(ConfigError, match=f"at line {line}, "):
        parse_config(text, source="dup.toml")


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: expected a JSON object at the top level, got an array"
    # '[' starts TOML when sniffing, so a JSON array in a file not named .json is a TOML error.
    with pytest.raises(ConfigError, match="invalid TOML"):
        parse_config("[1, 2]\n", source="a.conf")


def test_extension_decides_syntax(tmp_path: Path) -> None:
    toml_named_json = tmp_path / "config.json"
    toml_named_json.write_text(LOCALFS_V2_TOML)
    with pytest.raises(ConfigError, match="invalid JSON at line 1, column 1"):
        load_config(toml_named_json)

    sniffed_toml = tmp_path / "config.conf"
    sniffed_toml.write_text(LOCALFS_V2_TOML)
    sniffed_json = tmp_path / "config"
    sniffed_json.write_text(json.dumps(LOCALFS_V1))
    assert load_config(sniffed_toml) == load_config(sniffed_json)
    assert load_config(sniffed_toml).version == 2
    assert load_config(sniffed_json).version == 1


def test_bytes_text_and_bom() -> None:
    text = json.dumps(LOCALFS_V1)
    assert parse_config(("\ufeff" + text).encode()) == parse_config(LOCALFS_V1)
    with pytest.raises(ConfigError, match=r"^x: not UTF-8 text \(bad byte at offset 1\)$"):
        parse_config(b"{\xff}", source="x")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"{missing}: cannot read config file: No such file or directory"
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: cannot read config file: Is a directory"


def test_file_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    body = json.dumps(LOCALFS_V1)
    path.write_text(body[:-1] + " " * (MAX_CONFIG_SIZE - len(body) + 1) + "}")
    assert path.stat().st_size == MAX_CONFIG_SIZE + 1
    with pytest.raises(ConfigError, match=f"larger than {MAX_CONFIG_SIZE} bytes"):
        load_config(path)
    path.write_text(body[:-1] + " " * (MAX_CONFIG_SIZE - len(body)) + "}")
    assert path.stat().st_size == MAX_CONFIG_SIZE
    assert load_config(path).backend is not None


@pytest.mark.parametrize(
    ("version", "shown"),
    [(3, "3"), ("2", '"2"'), (2.0, "2.0"), (True, "true"), (0, "0")],
)
def test_unsupported_versions(version: object, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"version": version}, source="v.json")
    assert info.value.key == "version"
    assert str(info.value).startswith(f"v.json: version: unsupported config version {shown} ")


def test_version_detection() -> None:
    assert parse_config({}).version == 1
    assert parse_config({"version": 1}).version == 1
    assert parse_config({"version": 1}).warnings == ()
    assert parse_config({"version": 2}).version == 2
    assert parse_config("version = 2\n").version == 2
    assert parse_config('{"version": 2}').version == 2


def test_parse_config_rejects_other_objects() -> None:
    with pytest.raises(TypeError):
        parse_config(42)


def test_v2_sections_without_version_are_refused() -> None:
    text = '[backend]\ntype = "localfs"\n[backend.localfs]\ndir = "/b"\n[rafs]\nmode = "direct"\n'
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="n.toml")
    assert str(info.value) == (
        "n.toml: version: missing: the config has v2 sections ('backend', 'rafs') but no 'version = 2'; "
        "add it, or use the v1 layout ('device', 'fs_prefetch', ...)"
    )
    assert parse_config("version = 2\n" + text).backend is not None


def test_v1_device_with_version_2_is_refused() -> None:
    data = {"version": 2, "device": {"backend": {"type": "localfs", "config": {"dir": "/b"}}}}
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="n.json")
    assert info.value.key == "device"
    assert "this is a v1 section, but the config says version = 2" in str(info.value)
    del data["version"]
    assert parse_config(data).backend is not None
