"""nydusd's flags, the core's ServeOptions and the frontend interface agree: what a host writes with
`ServeOptions.nydusd_args()` nydusd parses back to the same options, and `FuseFrontend.serve` refuses
a bad request before anything is mounted."""

from __future__ import annotations

from pathlib import Path

import pytest
from nydus_frontend_fuse.cli import build_settings, nydusd
from nydus_frontend_fuse.daemon import FuseTuning

from nydus_core.errors import UsageError
from nydus_core.interfaces import ServeOptions
from nydus_core.plugins import registry


def _parse(args: list[str]) -> tuple[ServeOptions, FuseTuning]:
    ctx = nydusd.make_context("nydusd", list(args))
    return build_settings(dict(ctx.params))


def test_nydusd_args_round_trip(tmp_path: Path) -> None:
    options = ServeOptions(mountpoint=str(tmp_path / "mnt"), bootstrap=str(tmp_path / "img.boot"),
                           virtual_mountpoint="/sub", apisock=str(tmp_path / "api.sock"), threads=9,
                           daemon_id="d1")
    parsed, tuning = _parse([*options.nydusd_args(), "--readahead-kb", "256"])
    assert parsed == options
    assert tuning.readahead_kb == 256
    assert _parse(ServeOptions(mountpoint="/m").nydusd_args())[0] == ServeOptions(mountpoint="/m")


def test_the_frontend_refuses_an_unknown_fs_driver_before_mounting(tmp_path: Path) -> None:
    frontend = registry("frontend").get("fuse")()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with pytest.raises(UsageError, match="fs_driver 'bogus'"):
        frontend.serve(ServeOptions(mountpoint=str(mnt), fs_driver="bogus"))
    assert not any(mnt.iterdir())
