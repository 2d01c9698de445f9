"""`nydus_core.logsetup`: upstream's level names and ``--log-file`` for every command."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nydus_core.errors import UsageError
from nydus_core.logsetup import LEVEL_NAMES, LEVELS, level_of, setup_logging

BIN = Path(sys.executable).parent


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, with its handlers and level restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_level_table() -> None:
    assert LEVEL_NAMES == ("trace", "debug", "info", "warn", "error")
    assert set(LEVEL_NAMES) < set(LEVELS)
    assert level_of("TRACE") == level_of("debug") == logging.DEBUG
    assert level_of("warning") == level_of("Warn") == logging.WARNING
    with pytest.raises(UsageError, match=r"^unknown log level 'loud' \(trace, debug, info, warn, error\)$"):
        level_of("loud")


def test_log_file_gets_an_extension_and_the_level_filters(tmp_path: Path,
                                                          root_logger: logging.Logger) -> None:
    setup_logging("warn", str(tmp_path / "nydus"), fmt="%(levelname)s %(message)s")
    logging.getLogger("x").info("not written")
    logging.getLogger("x").warning("written")
    for h in root_logger.handlers:
        h.flush()
    assert (tmp_path / "nydus.log").read_text() == "WARNING written\n"


def test_rotation(tmp_path: Path, root_logger: logging.Logger) -> None:
    setup_logging("info", str(tmp_path / "d.log"), rotation_mb=1)
    line = "x" * 1000
    for _ in range(1100):  # > 1 MiB
        logging.getLogger("r").info(line)
    assert (tmp_path / "d.log.1").exists() and (tmp_path / "d.log").stat().st_size < 1 << 20


def test_unwritable_log_file_is_one_line(tmp_path: Path, root_logger: logging.Logger) -> None:
    with pytest.raises(UsageError, match=r"--log-file .*/no/such/dir/x.log: No such file or directory"):
        setup_logging("info", str(tmp_path / "no" / "such" / "dir" / "x.log"))


@pytest.mark.parametrize("argv", [
    ["nydus-image", "-l", "loud", "inspect", "x.boot"],
    ["nydusify", "check", "--log-level", "loud", "--target", "localhost:1/r:t"],
])
def test_commands_refuse_unknown_levels_in_one_line(argv: list[str]) -> None:
    proc = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: unknown log level 'loud' (trace, debug, info, warn, error)"


def test_daemons_offer_upstreams_levels() -> None:
    for cmd in ("nydusd", "containerd-nydus-grpc"):
        proc = subprocess.run([str(BIN / cmd), "--log-level", "loud"], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "'trace', 'debug', 'info', 'warn', 'error'" in proc.stderr
