"""Container cold start, OCI vs Nydus, as the image grows (the seed's headline chart).

    sudo .venv/bin/python bench/coldstart.py [--sizes 0.1,0.5,2] [--rate 100mbit] [--work DIR]

Images of about 0.1, 0.5 and 2 GB: a Debian rootfs (``debootstrap --variant=minbase
--include=python3 bookworm``, cached in the work dir) plus data files the command never touches
(half random binary blocks, half base64 text). They are pushed to a local docker-registry and
converted with ``nydusify convert``; then the registry is reached through a rate-limited link: the
whole run happens in a network namespace whose ``lo`` has MTU 1500 and ``tbf rate RATE burst 256kb
latency 400ms`` (netem is not in this kernel).

For each image, side by side in one run:

* OCI   = ``skopeo copy`` (pull every layer) + ``umoci unpack`` + the command in the rootfs (chroot);
* Nydus = ``nydusify mount`` (bootstrap fetched, nydusd on the registry backend, empty blob cache)
  + the same command in the mount.

The command starts the image's Python and imports a few modules. Printed: times, bytes over the
link (``lo`` tx counter), and the targets: Nydus start within 1 s of the physical limit (bytes of
the files the command opens, from strace, / link rate) and flat (±25 %) across sizes; >= 20x faster
than OCI at 2 GB; bytes fetched <= 1.2 x the opened files' size plus the bootstrap layer. A PNG chart
of start time vs image size goes to ``bench/out/coldstart.png`` and the numbers to
``bench/out/coldstart.json``.

A second Nydus variant uses upstream's startup optimisation: the image converted with
``--prefetch-patterns`` listing the files the command opens, mounted with ``--prefetch``. The
physical limit counts the opened files whole; binaries and libraries are mapped, not read whole, so
a lazy image can come in under it.

Needs root, debootstrap (network access to deb.debian.org the first time), skopeo, umoci,
docker-registry, strace, iproute2 (ip, tc) and nydus-frontend-fuse (nydusd).

Result on the 2-core dev VM (2026-11-28, 100mbit; the command opens 150 files = 21.2 MB, limit 1.69 s):

    image GB  OCI pull+unpack+run   Nydus lazy (MB fetched)   Nydus prefetch table (MB fetched)
    0.13      16.6 s                1.77 s (9.7)   9x         1.51 s (10.8)  11x
    0.50      54.7 s                1.98 s (9.7)  28x         1.40 s (10.9)  39x
    2.02      190.1 s               1.78 s (9.7) 107x         1.35 s (11.0) 141x

All targets pass for both variants (within 1 s of the limit, flat within ±25 %, >= 20x at 2 GB,
bytes <= 1.2 x opened + bootstrap layer).

A third variant mounts with ``nydusify mount --fs-driver erofs`` (issue 12's targets: within 0.5 s
of the limit, flat within ±15 %). ``--no-oci`` skips the OCI baseline. Run 2026-12-03 with
``--no-oci`` on the quiet machine (load average < 1):

    image GB  Nydus (lazy)  Nydus (prefetch table)  Nydus erofs driver (lazy): mount  run  total
    0.13      1.93 s        1.49 s                  0.70  1.25  1.95 s
    0.50      1.91 s        1.41 s                  0.69  1.22  1.91 s
    2.02      1.83 s        1.43 s                  0.74  1.24  1.98 s

Every target passes for the three variants. The same run on 2026-12-02 with the machine at load ~6
took ~4x as long for every variant (erofs 7.1-7.8 s, fusedev 6.7-7.6 s): compare rows of one run.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nydus_core.mounts import force_unmount, is_mountpoint

OUT = Path(__file__).resolve().parent / "out"
BIN = Path(sys.executable).parent
NETNS = "nydus-coldstart"
MODULES = "json, email.parser, http.client, decimal, xml.etree.ElementTree, asyncio, sqlite3, logging"
COMMAND = ["/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1", "/usr/bin/python3",
           "-c", f"import {MODULES}; print('started')"]
DATA_FILE = 64 << 20
GB = 1e9


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, raising with its stderr on failure."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


def log(msg: str) -> None:
    """Progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- images ---------------------------------------------------------------------------------------

def base_rootfs(work: Path) -> Path:
    """The debootstrapped Debian rootfs (made once, then reused)."""
    root = work / "rootfs-base"
    if (work / "rootfs-base.complete").exists():
        return root
    tmp = work / "rootfs-base.tmp"
    log("debootstrap --variant=minbase --include=python3 bookworm (a few minutes, once)")
    if not (tmp / "usr" / "bin" / "python3").exists():
        shutil.rmtree(tmp, ignore_errors=True)
        run(["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(tmp),
             "http://deb.debian.org/debian"])
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    (work / "rootfs-base.complete").write_text("")
    return root


def opened_files(root: Path) -> tuple[int, list[str]]:
    """Bytes of the regular files the command opens in ``root`` (strace; each file once), and their
    paths in the image (symlinks resolved)."""
    trace = root.parent / "strace.log"
    run(["strace", "-f", "-qq", "-e", "trace=openat,open,execve", "-o", str(trace),
         "chroot", str(root), *COMMAND])
    paths: set[str] = set()
    for line in trace.read_text().splitlines():
        if "= -1" in line or '"' not in line:
            continue
        if "execve(" in line or "open" in line:
            paths.add(line.split('"', 2)[1])
    total, files = 0, set()
    for p in sorted(paths):
        full = _resolve_in(root, p)
        if full is not None and full.is_file():
            real = "/" + str(full.relative_to(root))
            if real not in files:
                files.add(real)
                total += full.stat().st_size
    return total, sorted(files)


def _resolve_in(root: Path, path: str, depth: int = 0) -> Path | None:
    """``path`` inside ``root`` with symlinks resolved against ``root`` (as chroot sees it)."""
    if depth > 40 or not path.startswith("/"):
        return None
    cur = root
    parts = [p for p in path.split("/") if p and p != "."]
    for i, part in enumerate(parts):
        nxt = cur.parent if part == ".." and cur != root else cur / part
        if nxt.is_symlink():
            target = os.readlink(nxt)
            base = "/" + str(cur.relative_to(root)) if cur != root else ""
            rest = "/".join(parts[i + 1:])
            joined = target if target.startswith("/") else f"{base}/{target}"
            return _resolve_in(root, joined + ("/" + rest if rest else ""), depth + 1)
        cur = nxt
    return cur


def data_tree(work: Path, nbytes: int, seed: int) -> Path:
    """``srv/data/*``: ``nbytes`` of files the command never reads (half random, half base64 text)."""
    d = work / f"data-{seed}-{nbytes >> 20}M"
    if (d / ".complete").exists():
        return d
    shutil.rmtree(d, ignore_errors=True)
    (d / "srv" / "data").mkdir(parents=True)
    rng = random.Random(seed)
    written, i = 0, 0
    while written < nbytes:
        size = min(DATA_FILE, nbytes - written)
        with open(d / "srv" / "data" / f"part-{i:04d}.dat", "wb") as fh:
            done = 0
            while done < size:
                n = min(1 << 20, size - done)
                if (done >> 20) % 2 == 0:
                    block = rng.randbytes(n)
                else:
                    block = base64.b64encode(rng.randbytes(n * 3 // 4 + 3))[:n]
                fh.write(block)
                done += n
        written += size
        i += 1
    (d / ".complete").write_text("")
    return d


def tar_gz(src: Path, dest: Path) -> Path:
    """``tar.gz`` of a tree (numeric owners, xattrs), made once."""
    if dest.exists():
        return dest
    tmp = dest.with_suffix(".tmp")
    run(["tar", "--numeric-owner", "--xattrs", "--exclude=./.complete", "-C", str(src), "-I", "gzip -1",
         "-cf", str(tmp), "."])
    tmp.rename(dest)
    return dest


def push(client: Any, repo: str, tag: str, layers: list[Path], base_config: dict[str, Any]) -> int:
    """Push an OCI image of gzip layers; return its total (compressed) size."""
    import gzip
    import hashlib

    from nydus_core.oci import image as oci
    from nydus_core.oci import mediatypes as mt

    descs, diff_ids, total = [], [], 0
    for path in layers:
        h = hashlib.sha256()
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
        diff_ids.append("sha256:" + h.hexdigest())
        digest = client.push_blob(repo, path, chunk_size=32 << 20)
        size = path.stat().st_size
        total += size
        descs.append(oci.descriptor(mt.OCI_LAYER_GZIP, digest, size))
    config = dict(base_config, rootfs={"type": "layers", "diff_ids": diff_ids},
                  history=[{"created_by": f"layer {i}"} for i in range(len(layers))])
    body = oci.dumps(config)
    cfg = client.push_blob(repo, body)
    manifest = oci.image_manifest(oci.descriptor(mt.OCI_CONFIG, cfg, len(body)), descs)
    client.put_manifest(repo, tag, oci.dumps(manifest), mt.OCI_MANIFEST)
    return total


# -- measurements ---------------------------------------------------------------------------------

def lo_tx_bytes() -> int:
    """Bytes sent on this namespace's ``lo`` (= bytes over the rate-limited link)."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            return int(rest.split()[8])
    raise RuntimeError("no lo in /proc/net/dev")


def oci_start(ref: str, work: Path) -> dict[str, float]:
    """Pull + unpack + run; times in seconds and bytes over the link."""
    layout, bundle = work / "oci-layout", work / "oci-bundle"
    shutil.rmtree(layout, ignore_errors=True)
    shutil.rmtree(bundle, ignore_errors=True)
    b0, t0 = lo_tx_bytes(), time.perf_counter()
    run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:img"])
    t1 = time.perf_counter()
    run(["umoci", "unpack", "--image", f"{layout}:img", str(bundle)])
    t2 = time.perf_counter()
    out = run(["chroot", str(bundle / "rootfs"), *COMMAND]).stdout
    t3 = time.perf_counter()
    assert out.strip() == "started", out
    res = {"pull": t1 - t0, "unpack": t2 - t1, "run": t3 - t2, "total": t3 - t0, "bytes": lo_tx_bytes() - b0}
    shutil.rmtree(layout, ignore_errors=True)
    shutil.rmtree(bundle, ignore_errors=True)
    return res


def nydus_start(ref: str, work: Path, *, prefetch: bool = False,
                fs_driver: str = "fusedev") -> dict[str, float]:
    """nydusify mount (``--prefetch``: the image's prefetch table; ``fs_driver``: nydusd's driver) + run;
    seconds, bytes over the link."""
    mnt, mwork = work / "nydus-mnt", work / "nydus-work"
    shutil.rmtree(mwork, ignore_errors=True)
    mnt.mkdir(parents=True, exist_ok=True)
    b0, t0 = lo_tx_bytes(), time.perf_counter()
    proc = subprocess.Popen([str(BIN / "nydusify"), "mount", "--target", ref, "--plain-http",
                             "--mount-path", str(mnt), "--work-dir", str(mwork), "-l", "warn",
                             "--fs-driver", fs_driver, *(["--prefetch"] if prefetch else [])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not is_mountpoint(mnt):
            if proc.poll() is not None:
                raise SystemExit(f"nydusify mount failed: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.005)
        t1 = time.perf_counter()
        out = run(["chroot", str(mnt), *COMMAND]).stdout
        t2 = time.perf_counter()
        assert out.strip() == "started", out
        sent = lo_tx_bytes() - b0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        force_unmount(mnt)
    return {"mount": t1 - t0, "run": t2 - t1, "total": t2 - t0, "bytes": sent}


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median total time (its own parts and bytes), plus every total."""
    ordered = sorted(runs, key=lambda r: r["total"])
    out = dict(ordered[len(ordered) // 2])
    out["all_totals"] = [round(r["total"], 3) for r in runs]
    return out


# -- the run --------------------------------------------------------------------------------------

def inside(args: argparse.Namespace) -> int:
    """Everything after the namespace is set up (this process runs inside it)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import bytecode_warning
    from nydus_testsupport.registry import RegistryServer

    if (warning := bytecode_warning()) is not None:
        log(warning)

    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    root = base_rootfs(work)
    opened, files = opened_files(root)
    log(f"the command opens {len(files)} files, {opened / 1e6:.1f} MB")
    base_layer = tar_gz(root, work / "layer-base.tar.gz")
    base_size = base_layer.stat().st_size
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": COMMAND}}
    registry = RegistryServer(work / "registry").start()
    results: list[dict[str, Any]] = []
    try:
        client = registry.client()
        images = []
        for i, gb in enumerate(args.sizes):
            layers = [base_layer]
            # data layers compress to about 0.88 of their size (half random, half base64)
            want = int((gb * GB - base_size) / 0.88)
            if want > 0:
                per = 512 << 20
                for j in range(0, want, per):
                    seed, n = 1000 * i + j // per, min(per, want - j)
                    layers.append(tar_gz(data_tree(work, n, seed), work / f"layer-data-{seed}-{n}.tar.gz"))
            repo, tag = f"bench/img{i}", "v1"
            size = push(client, repo, tag, layers, config)
            src = f"{registry.host}/{repo}:{tag}"
            log(f"image {i}: {size / GB:.2f} GB in {len(layers)} layers; converting")
            t = time.perf_counter()
            metrics = work / f"convert-{i}.json"
            shutil.rmtree(work / "convert", ignore_errors=True)  # timed from scratch, no cached layers
            convert = [str(BIN / "nydusify"), "convert", "--source", src, "--plain-http", "--work-dir",
                       str(work / "convert")]
            data_dir = registry.directory / "data"
            g0 = dir_bytes(data_dir)
            run([*convert, "--target", f"{src}-nydus", "--output-json", str(metrics)])
            conv_time = time.perf_counter() - t
            growth = dir_bytes(data_dir) - g0
            ref_conv: dict[str, Any] | None = None
            if args.oci_ref:
                ref_work, ref_metrics = work / "convert-ref", work / f"convert-ref-{i}.json"
                shutil.rmtree(ref_work, ignore_errors=True)
                g0, t = dir_bytes(data_dir), time.perf_counter()
                run([str(BIN / "nydusify"), "convert", "--oci-ref", "--source", src, "--plain-http",
                     "--work-dir", str(ref_work), "--target", f"{src}-nydus-ociref", "--output-json",
                     str(ref_metrics)])
                ref_conv = {"seconds": time.perf_counter() - t, "registry_growth": dir_bytes(data_dir) - g0,
                            **json.loads(ref_metrics.read_text())}
                log(f"image {i}: full conversion {conv_time:.1f} s (+{growth / 1e6:.1f} MB in the registry), "
                    f"--oci-ref {ref_conv['seconds']:.1f} s (+{ref_conv['registry_growth'] / 1e6:.1f} MB)")
            # the same image with a prefetch table listing what the command opens (upstream's
            # --prefetch-patterns workflow); its layers come from the work-dir records
            run([*convert, "--target", f"{src}-nydus-prefetch", "--prefetch-patterns"],
                input="\n".join(files) + "\n")
            conv = json.loads(metrics.read_text())
            conv["registry_growth"] = growth
            boot_layer = client.get_manifest(repo, "v1-nydus").json()["layers"][-1]["size"]
            images.append((gb, size, src, conv_time, conv, boot_layer, ref_conv))
        log(f"rate-limiting lo: tbf rate {args.rate} burst 256kb latency 400ms")
        run(["tc", "qdisc", "replace", "dev", "lo", "root", "tbf", "rate", args.rate, "burst", "256kb",
             "latency", "400ms"])
        for gb, size, src, conv_time, conv, boot_layer, ref_conv in images:
            if args.no_oci:
                o = {"pull": 0.0, "unpack": 0.0, "run": 0.0, "total": 0.0, "bytes": 0.0}
            else:
                log(f"{size / GB:.2f} GB: OCI pull + unpack + run")
                o = oci_start(src, work)
            log(f"{size / GB:.2f} GB: nydusify mount + run, lazy, with the prefetch table and with "
                f"the erofs driver{', and the --oci-ref image' if ref_conv else ''}, median of "
                f"{args.repeat} (interleaved)")
            runs: dict[str, list[dict[str, float]]] = {"nydus": [], "nydus_prefetch": [], "nydus_erofs": [],
                                                       "nydus_ociref": []}
            for _ in range(args.repeat):
                runs["nydus"].append(nydus_start(f"{src}-nydus", work))
                runs["nydus_prefetch"].append(nydus_start(f"{src}-nydus-prefetch", work, prefetch=True))
                runs["nydus_erofs"].append(nydus_start(f"{src}-nydus", work, fs_driver="erofs"))
                if ref_conv is not None:
                    runs["nydus_ociref"].append(nydus_start(f"{src}-nydus-ociref", work))
            n, p, e = (median_run(runs[k]) for k in ("nydus", "nydus_prefetch", "nydus_erofs"))
            entry = {"nominal_gb": gb, "image_bytes": size, "oci": o, "nydus": n, "nydus_prefetch": p,
                     "nydus_erofs": e, "convert_seconds": conv_time,
                     "nydus_image_bytes": conv["target_image_size"], "convert": conv,
                     "bootstrap_layer_bytes": boot_layer}
            if ref_conv is not None:
                entry["nydus_ociref"] = median_run(runs["nydus_ociref"])
                entry["convert_ociref"] = ref_conv
            results.append(entry)
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], check=False, capture_output=True)
        registry.stop()
    report(results, opened, files, args)
    return 0


def rate_bytes(rate: str) -> float:
    """``100mbit`` -> bytes per second."""
    units = {"kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8}
    for u, f in units.items():
        if rate.endswith(u):
            return float(rate[: -len(u)]) * f
    raise SystemExit(f"--rate {rate}: use kbit, mbit or gbit")


VARIANTS = (("nydus", "Nydus (lazy)"), ("nydus_prefetch", "Nydus (prefetch table)"),
            ("nydus_erofs", "Nydus erofs driver (lazy)"))
OCI_REF = ("nydus_ociref", "Nydus --oci-ref (lazy)")


def dir_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (the registry's storage: its growth is what was stored)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def report(results: list[dict[str, Any]], opened: int, files: list[str], args: argparse.Namespace) -> None:
    """Print the table and the targets, write JSON and the chart."""
    bps = rate_bytes(args.rate)
    limit = opened / bps
    print(f"\nlink {args.rate}; the command opens {len(files)} files = {opened / 1e6:.1f} MB "
          f"-> physical limit {limit:.2f} s\n")
    variants = VARIANTS + ((OCI_REF,) if all(OCI_REF[0] in r for r in results) else ())
    head = ["image GB", "OCI pull", "unpack", "run", "OCI total", "OCI MB"]
    for _, label in variants:
        head += [f"{label}: mount", "run", "total", "MB", "speed-up"]
    rows = [head]
    for r in results:
        o = r["oci"]
        row = [f"{r['image_bytes'] / GB:.2f}", f"{o['pull']:.1f}", f"{o['unpack']:.1f}", f"{o['run']:.2f}",
               f"{o['total']:.1f}", f"{o['bytes'] / 1e6:.0f}"]
        for key, _ in variants:
            n = r[key]
            row += [f"{n['mount']:.2f}", f"{n['run']:.2f}", f"{n['total']:.2f}", f"{n['bytes'] / 1e6:.1f}",
                    f"{o['total'] / n['total']:.0f}x" if o["total"] else "-"]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(c.rjust(widths[i]) for i, c in enumerate(row)))
    checks = []
    for key, label in VARIANTS:
        totals = [r[key]["total"] for r in results]
        mean = sum(totals) / len(totals)
        # the erofs driver's targets (issue 12) are tighter: 0.5 s and ±15 %
        slack, flat = (0.5, 0.15) if key == "nydus_erofs" else (1.0, 0.25)
        checks += [
            (f"{label}: start within {slack} s of the physical limit ({limit:.2f} s)",
             all(t <= limit + slack for t in totals)),
            (f"{label}: start flat across sizes (each within ±{flat:.0%} of the mean)",
             all(abs(t - mean) <= flat * mean for t in totals)),
        ]
        if not args.no_oci:
            checks.append((f"{label}: >= 20x faster than OCI at the largest image",
                           results[-1]["oci"]["total"] >= 20 * results[-1][key]["total"]))
        checks += [
            (f"{label}: bytes fetched <= 1.2 x opened files + bootstrap layer",
             all(r[key]["bytes"] <= 1.2 * opened + r["bootstrap_layer_bytes"] for r in results)),
        ]
    if variants[-1] == OCI_REF:
        print("\nconversion (fresh work dir each): time, bytes pushed, registry growth")
        for r in results:
            full, ref = r["convert"], r["convert_ociref"]
            prof = ref.get("profile", {})
            print(f"  {r['image_bytes'] / GB:.2f} GB: full {r['convert_seconds']:.1f} s, pushed "
                  f"{full.get('pushed_bytes', 0) / 1e6:.1f} MB, growth "
                  f"{full['registry_growth'] / 1e6:.1f} MB | "
                  f"--oci-ref {ref['seconds']:.1f} s (download {prof.get('download', 0):.1f}, index "
                  f"{prof.get('index', 0):.1f}, push {prof.get('push', 0):.1f}), pushed "
                  f"{ref.get('pushed_bytes', 0) / 1e6:.2f} MB, growth {ref['registry_growth'] / 1e6:.2f} MB "
                  f"({100 * ref['registry_growth'] / r['image_bytes']:.2f} % of the image)")
        for r in results:
            gb = f"{r['image_bytes'] / GB:.2f} GB"
            checks += [
                (f"--oci-ref at {gb}: cold start within 1.5x of the fully converted image's",
                 r["nydus_ociref"]["total"] <= 1.5 * r["nydus"]["total"]),
                (f"--oci-ref at {gb}: conversion faster than full conversion",
                 r["convert_ociref"]["seconds"] < r["convert_seconds"]),
                (f"--oci-ref at {gb}: registry growth <= 10 % of the source image",
                 r["convert_ociref"]["registry_growth"] <= 0.10 * r["image_bytes"]),
            ]
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    OUT.mkdir(parents=True, exist_ok=True)
    doc = {"rate": args.rate, "opened_bytes": opened, "opened_files": files, "physical_limit_s": limit,
           "results": results, "targets": {t: ok for t, ok in checks}}
    (OUT / "coldstart.json").write_text(json.dumps(doc, indent=1))
    chart(results, limit, args.rate)


def chart(results: list[dict[str, Any]], limit: float, rate: str) -> None:
    """Start time vs image size, OCI and Nydus, with the physical limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["image_bytes"] / GB for r in results]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    if any(r["oci"]["total"] for r in results):
        ax.plot(sizes, [r["oci"]["total"] for r in results], "o-", label="OCI: pull + unpack + run")
    ax.plot(sizes, [r["nydus"]["total"] for r in results], "s-", label="Nydus (lazy): nydusify mount + run")
    ax.plot(sizes, [r["nydus_prefetch"]["total"] for r in results], "^-",
            label="Nydus (prefetch table): mount --prefetch + run")
    if all(OCI_REF[0] in r for r in results):
        ax.plot(sizes, [r[OCI_REF[0]]["total"] for r in results], "d-", label="Nydus --oci-ref (zran, lazy)")
    ax.plot(sizes, [r["nydus_erofs"]["total"] for r in results], "v-",
            label="Nydus, erofs driver: mount --fs-driver erofs + run")
    ax.axhline(limit, color="grey", linestyle=":", label=f"physical limit ({limit:.2f} s)")
    for x, r in zip(sizes, results):
        ax.annotate(f"{r['nydus']['total']:.1f}s", (x, r["nydus"]["total"]), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=8)
        ax.annotate(f"{r['oci']['total']:.0f}s", (x, r["oci"]["total"]), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=8)
    ax.set_xlabel("image size (GB, compressed OCI layers)")
    ax.set_ylabel("container start time (s)")
    ax.set_title(f"Cold start over a {rate} link: python3 -c 'import ...'")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "coldstart.png")
    print(f"\nchart: {OUT / 'coldstart.png'}; numbers: {OUT / 'coldstart.json'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0.1,0.5,2", help="image sizes in GB (comma list)")
    ap.add_argument("--rate", default="100mbit", help="link rate (tbf), e.g. 100mbit")
    ap.add_argument("--repeat", type=int, default=3, help="Nydus runs per image (the median is shown)")
    ap.add_argument("--oci-ref", action="store_true",
                    help="also convert with --oci-ref (zran) and measure it beside the full conversion")
    ap.add_argument("--no-oci", action="store_true", help="skip the OCI pull + unpack baseline")
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/nydus-bench"),
                    help="work directory (rootfs, layers and registry data are kept here)")
    args = ap.parse_args()
    args.sizes = [float(s) for s in args.sizes.split(",")]
    rate_bytes(args.rate)
    if os.environ.get("NYDUS_COLDSTART_NETNS") == NETNS:
        return inside(args)
    if os.geteuid() != 0:
        raise SystemExit("coldstart.py needs root (network namespace, tc, FUSE, chroot)")
    for tool in ("debootstrap", "skopeo", "umoci", "strace", "ip", "tc", "nsenter"):
        if shutil.which(tool) is None:
            raise SystemExit(f"coldstart.py needs {tool}")
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)
    run(["ip", "netns", "add", NETNS])
    try:
        run(["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "mtu", "1500"])
        run(["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"])
        # nsenter --net enters only the network namespace: FUSE mounts and chroot stay visible
        env = dict(os.environ, NYDUS_COLDSTART_NETNS=NETNS)
        return subprocess.call(["nsenter", f"--net=/run/netns/{NETNS}", sys.executable, *sys.argv], env=env)
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)


if __name__ == "__main__":
    sys.exit(main())
