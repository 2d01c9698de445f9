"""nydusd run by a non-root user (uid 1000 via setpriv): with and without allow_other, and the
one-line errors naming what is missing.

Each case runs in a private mount namespace (``unshare -m``) where ``/dev/fuse`` and
``/etc/fuse.conf`` are bind-mounted from files the test made, so the machine's own settings are
neither needed nor changed; the FUSE mount goes away with the namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from nydus_testsupport.fuse import script
from nydus_testsupport.storage_helpers import build_image

UID = 1000
AS_USER = ["setpriv", "--reuid", str(UID), "--regid", str(UID), "--clear-groups"]
FUSE_MAJOR_MINOR = (10, 229)

# $1 = device mode, $2 = fuse.conf text; then the nydusd arguments. Prints what happened, one fact
# a line, for the test to check.
NAMESPACE_SCRIPT = r"""
set -u
W=$WORK
mode=$1; conf=$2; shift 2
rm -f "$W/fuse"; mknod -m "$mode" "$W/fuse" c 10 229
mount --bind "$W/fuse" /dev/fuse
printf '%s\n' "$conf" > "$W/fuse.conf"; mount --bind "$W/fuse.conf" /etc/fuse.conf
"$@" -M "$W/mnt" > "$W/nydusd.log" 2>&1 &
pid=$!
up=no
for _ in $(seq 300); do
  if grep -q " $W/mnt fuse" /proc/mounts; then up=yes; break; fi
  kill -0 $pid 2>/dev/null || break
  sleep 0.05
done
echo "mounted=$up"
if [ $up = yes ]; then
  grep " $W/mnt fuse" /proc/mounts | cut -d' ' -f4 | sed 's/^/options=/'
  echo "user-read=$($AS_USER cat "$W/mnt/hello.txt" 2>&1)"
  if cat "$W/mnt/hello.txt" >/dev/null 2>&1; then echo root-read=yes; else echo root-read=no; fi
  $AS_USER fusermount3 -u "$W/mnt" && echo unmounted=yes
fi
wait $pid; echo "nydusd-exit=$?"
grep -c " $W/mnt fuse" /proc/mounts | sed 's/^/left-mounted=/'
sed 's/^/log: /' "$W/nydusd.log"
"""


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to make a private mount namespace and device node"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    for tool in ("setpriv", "unshare", "mknod", "fusermount3"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    nydusd = script("nydusd")
    if subprocess.run([*AS_USER, "test", "-r", nydusd], check=False).returncode != 0:
        return f"uid {UID} cannot read {nydusd}: the checkout lies below a directory closed to other users"
    return None


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    # outside pytest's 0700 temp dirs, so that uid 1000 can reach it
    root = Path(tempfile.mkdtemp(prefix="nydus-rootless-"))
    try:
        build_image(root, {"/hello.txt": b"hello from a rootless mount\n",
                                "/dir/data": os.urandom(70_000)})
        for dirpath, dirnames, filenames in os.walk(root):
            for n in [*dirnames, *filenames]:
                os.chmod(os.path.join(dirpath, n), 0o755 if n in dirnames else 0o644)
        os.chmod(root, 0o755)
        (root / "mnt").mkdir()
        os.chown(root / "mnt", UID, UID)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(work: Path, device_mode: str, conf: str, *extra: str) -> dict[str, list[str]]:
    nydusd = [*AS_USER, script("nydusd"), "-D", str(work / "image.blobs"), "-B", str(work / "image.boot"),
              *extra]
    env = dict(os.environ, WORK=str(work), AS_USER=" ".join(AS_USER))
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", NAMESPACE_SCRIPT,
                           "ns", device_mode, conf, *nydusd],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    facts: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=") if not line.startswith("log: ") else ("log", "", line[5:])
        facts.setdefault(key, []).append(value)
    assert not any(" /tmp/nydus-rootless-" in m for m in Path("/proc/mounts").read_text().splitlines())
    return facts


def test_user_mounts_reads_and_unmounts_without_allow_other(work: Path) -> None:
    facts = _run(work, "0666", "# no user_allow_other", "--no-allow-other")
    assert facts["mounted"] == ["yes"], facts
    options = facts["options"][0].split(",")
    assert f"user_id={UID}" in options and "allow_other" not in options
    assert facts["user-read"] == ["hello from a rootless mount"]
    assert facts["root-read"] == ["no"]  # without allow_other nobody else, not even root
    assert facts["unmounted"] == ["yes"] and facts["nydusd-exit"] == ["0"]
    assert facts["left-mounted"] == ["0"]


def test_user_mounts_with_allow_other_when_fuse_conf_allows_it(work: Path) -> None:
    facts = _run(work, "0666", "user_allow_other")
    assert facts["mounted"] == ["yes"], facts
    assert "allow_other" in facts["options"][0].split(",")
    assert facts["user-read"] == ["hello from a rootless mount"]
    assert facts["root-read"] == ["yes"]
    assert facts["nydusd-exit"] == ["0"] and facts["left-mounted"] == ["0"]


def test_without_device_access_the_error_names_dev_fuse(work: Path) -> None:
    facts = _run(work, "0600", "user_allow_other", "--no-allow-other")
    assert facts["mounted"] == ["no"] and facts["nydusd-exit"] == ["2"]
    assert facts["log"] == [
        f"error: /dev/fuse: permission denied for uid {UID} (mode 0600, owner 0:0): a non-root nydusd "
        "needs read-write access to /dev/fuse (its usual mode is 0666: chmod 0666 /dev/fuse), or run "
        "nydusd as root"]


def test_allow_other_without_user_allow_other_names_the_setting(work: Path) -> None:
    facts = _run(work, "0666", "# user_allow_other")
    assert facts["mounted"] == ["no"] and facts["nydusd-exit"] == ["2"]
    assert facts["log"] == [
        f"error: allow_other needs 'user_allow_other' in /etc/fuse.conf for a non-root user (uid {UID}): "
        "add that line, or pass --no-allow-other (then only this user can use the mount)"]
