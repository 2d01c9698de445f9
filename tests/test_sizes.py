"""`nydus_core.sizes`: the one parser of "10MiB"/"1g" byte counts and the one formatter of sizes."""

from __future__ import annotations

import pytest

from nydus_core.sizes import format_size, parse_size


@pytest.mark.parametrize(("text", "expected"), [
    ("4096", 4096), (4096, 4096), (0, 0), ("1k", 1 << 10), ("512M", 512 << 20), ("1g", 1 << 30),
    ("10GiB", 10 << 30), ("10MiB", 10 << 20), (" 7 k ", 7 << 10), ("3KB", 3 << 10), ("2t", 2 << 40),
    ("1P", 1 << 50), ("5b", 5),
])
def test_parse(text: int | str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("lots", "expected a size like 1073741824 or 1G, got 'lots'"),
    ("1.5G", "got '1.5G'"), ("-1", "got '-1'"), ("10 X", "got '10 X'"), ("", "got ''"),
    (-1, "must not be negative, got -1"), (True, "expected a size in bytes, got True"),
    (1.5, "got 1.5"),
])
def test_parse_errors_are_one_line(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=r"^[^\n]*$") as info:
        parse_size(value)
    assert message in str(info.value)


@pytest.mark.parametrize(("n", "short", "long"), [
    (0, "0B", "0 B"), (1023, "1023B", "1023 B"), (1024, "1.0K", "1.0 KiB"),
    (1536 << 10, "1.5M", "1.5 MiB"), (3 << 30, "3.0G", "3.0 GiB"), (5 << 40, "5.0T", "5.0 TiB"),
    (2048 << 40, "2048.0T", "2048.0 TiB"),
])
def test_format(n: int, short: str, long: str) -> None:
    assert format_size(n) == short
    assert format_size(n, long=True) == long
