"""The ``--prefetch-files`` list format: one path per line."""

from __future__ import annotations

from pathlib import Path

import pytest
from nydus_prefetch_files import read_list

from nydus_core.errors import UsageError


def test_reads_paths_skipping_blanks_and_comments(tmp_path: Path) -> None:
    f = tmp_path / "list"
    f.write_text("/usr/bin/python3\n\n  /etc/passwd  \n# a comment\n/lib\n")
    assert read_list(f) == ["/usr/bin/python3", "/etc/passwd", "/lib"]


def test_missing_list_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="nope"):
        read_list(tmp_path / "nope")
