"""The one redaction rule: URL user-info and query values, Authorization values, known secrets,
secret config options -- in errors (the CLI, for every backend and the proxy), logs and configs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nydus_core.logsetup import setup_logging
from nydus_core.redact import MASK, Redactor, masked, redact, redact_url

NYDUS = Path(sys.executable).parent / "nydus"
SECRETS = ("Passw0rdX", "SKSECRET/xyz+1", "ProxyPw99", "sigSECRETvalue", "tokSECRET")


@pytest.mark.parametrize("text, want", [
    ("GET https://user:Passw0rdX@reg.io:5000/v2/x failed", f"GET https://{MASK}@reg.io:5000/v2/x failed"),
    ("endpoint http://AKID:SKSECRET/xyz+1@127.0.0.1:9000", f"endpoint http://{MASK}@127.0.0.1:9000"),
    ("host 'user:Passw0rdX@reg.io'", f"host '{MASK}@reg.io'"),
    ("user:Passw0rdX@reg.io:5000", f"{MASK}@reg.io:5000"),
    ("https://s3/b/k?X-Amz-Signature=sigSECRETvalue&X-Amz-Expires=60 403",
     f"https://s3/b/k?X-Amz-Signature={MASK}&X-Amz-Expires={MASK} 403"),
    ("Authorization: Bearer tokSECRET", f"Authorization: Bearer {MASK}"),
    ("{'authorization': 'Basic dXNlcjpwYXNz'}", f"{{'authorization': 'Basic {MASK}'}}"),
    # left alone: image references, digests, plain paths, e-mail-like names without a password
    ("localhost:5000/repo@sha256:abcd", "localhost:5000/repo@sha256:abcd"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
    ("/var/lib/nydus/cache/x@y", "/var/lib/nydus/cache/x@y"),
])
def test_text_rule(text: str, want: str) -> None:
    assert redact(text) == want


def test_url_values_configs_and_known_secrets() -> None:
    assert redact_url("user:pa/ss@host:5000") == f"{MASK}@host:5000"
    assert redact_url("https://a:b/c@host/path?token=1") == f"https://{MASK}@host/path?token={MASK}"
    assert redact_url("https://host/path") == "https://host/path"
    cfg = {"backend": {"type": "s3", "config": {"endpoint": "http://AK:SK@h:1", "access_key_secret": "s",
                                                "proxy": {"url": "http://u:ProxyPw99@p:8", "token": ""}},
                       "list": ("https://x?sig=1",)}}
    out = masked(cfg)
    assert out["backend"]["config"] == {"endpoint": f"http://{MASK}@h:1", "access_key_secret": MASK,
                                        "proxy": {"url": f"http://{MASK}@p:8", "token": ""}}
    assert out["backend"]["list"] == [f"https://x?sig={MASK}"]
    assert cfg["backend"]["config"]["access_key_secret"] == "s"  # a copy
    r = Redactor("Passw0rdX")
    r.add("tokSECRET", transient=True)
    assert r("p=Passw0rdX t=tokSECRET") == f"p={MASK} t={MASK}"


def test_log_records_are_redacted(tmp_path: Path) -> None:
    log_file = tmp_path / "n.log"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("info", str(log_file))
        logging.getLogger("nydus.test").warning("proxy %s down (%s)", "http://u:ProxyPw99@p:8",
                                                "https://s/k?X-Amz-Signature=sigSECRETvalue")
        try:
            raise OSError("cannot reach user:Passw0rdX@reg.io")
        except OSError:
            logging.getLogger("nydus.test").exception("failed")
        for h in root.handlers:
            h.flush()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    text = log_file.read_text()
    assert "p:8" in text and "reg.io" in text and "Traceback" in text
    for s in SECRETS:
        assert s not in text


def _image(tmp: Path) -> Path:
    (tmp / "src").mkdir()
    (tmp / "src" / "f").write_text("hello\n")
    proc = subprocess.run([str(NYDUS.parent / "nydus-image"), "create", "-B", str(tmp / "boot"), "-D",
                           str(tmp / "blobs"), str(tmp / "src")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return tmp / "boot"


# every URL-like value of every remote backend, and the proxy, with credentials in it; each fails
# (nothing listens on port 1, or the value is refused) and the error must not show them
BACKENDS = {
    "registry-host": {"type": "registry", "config": {"host": "user:Passw0rdX@127.0.0.1:1", "repo": "r/x",
                                                     "scheme": "http"}},
    "registry-proxy": {"type": "registry", "config": {"host": "127.0.0.1:1", "repo": "r/x", "scheme": "http",
                                                      "proxy": {"url": "http://pu:ProxyPw99@127.0.0.1:2"}}},
    "s3-endpoint": {"type": "s3", "config": {"endpoint": "http://AKID:SKSECRET/xyz+1@127.0.0.1:1",
                                             "bucket_name": "bkt", "region": "us-east-1"}},
    "s3-endpoint-bare": {"type": "s3", "config": {"endpoint": "AKID:Passw0rdX@127.0.0.1:1", "scheme": "http",
                                                  "bucket_name": "bkt", "region": "us-east-1"}},
    "s3-proxy": {"type": "s3", "config": {"endpoint": "127.0.0.1:1", "scheme": "http", "bucket_name": "bkt",
                                          "region": "us-east-1", "access_key_id": "AKID",
                                          "access_key_secret": "SKSECRET/xyz+1",
                                          "proxy": {"url": "http://pu:ProxyPw99@127.0.0.1:2"}}},
    "oss-endpoint": {"type": "oss", "config": {"endpoint": "AKID:Passw0rdX@127.0.0.1:1", "scheme": "http",
                                               "bucket_name": "bkt"}},
    "oss-proxy": {"type": "oss", "config": {"endpoint": "127.0.0.1:1", "scheme": "http", "bucket_name": "bkt",
                                            "access_key_id": "AKID", "access_key_secret": "SKSECRET/xyz+1",
                                            "proxy": {"url": "http://pu:ProxyPw99@127.0.0.1:2"}}},
}


@pytest.fixture(scope="module")
def boot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _image(tmp_path_factory.mktemp("redact"))


@pytest.mark.parametrize("case", sorted(BACKENDS))
def test_backend_errors_never_show_credentials(boot: Path, tmp_path: Path, case: str) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"device": {"backend": BACKENDS[case]}}))
    env = {k: v for k, v in os.environ.items() if k != "NYDUS_DEBUG"}
    proc = subprocess.run([str(NYDUS), "cat", "-C", str(cfg), str(boot), "/f"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode not in (0, 70), proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error: " in proc.stderr and "127.0.0.1" in proc.stderr
    for s in SECRETS:
        assert s not in proc.stderr, proc.stderr
