"""nydusd's admin API (upstream paths and JSON shapes) on the daemon's unix socket.

``GET /api/v1/daemon``, ``PUT /api/v1/daemon`` (log level), ``GET /api/v1/daemon/events``,
``GET /api/v1/daemon/backend``, ``PUT /api/v1/daemon/start``, ``PUT /api/v1/daemon/exit``,
``POST|PUT|DELETE /api/v1/mount?mountpoint=/sub``, ``GET /api/v1/metrics[/files|/pattern|/backend|
/blobcache|/inflight|/blobs]`` (``?id=MOUNTPOINT`` picks an instance), ``GET|PUT /api/v1/config``
(:mod:`.config_api`). Errors answer upstream's
``{"code": ..., "message": ...}``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from nydus_core.errors import NydusError
from nydus_core.logsetup import LEVEL_NAMES, LEVELS

from .config_api import config_routes
from .failover import failover_routes
from .httpserver import Handler, HttpError, HttpServer, Request

if TYPE_CHECKING:
    from .daemon import Daemon

def build_api(daemon: Daemon) -> HttpServer:
    """Return the HTTP server with every route bound to ``daemon``."""

    def instance(req: Request) -> Any:
        try:
            return daemon.instance_for(req.query.get("id") or req.query.get("mountpoint"))
        except KeyError as exc:
            raise HttpError(404, str(exc.args[0]), "NOT_FOUND") from None

    async def get_daemon(req: Request) -> tuple[int, Any]:
        return 200, daemon.info()

    async def put_daemon(req: Request) -> tuple[int, Any]:
        body = req.json() or {}
        level = str(body.get("log_level", ""))
        if level.lower() not in LEVELS:
            raise HttpError(400, f"unknown log_level '{level}' ({', '.join(LEVEL_NAMES)})")
        logging.getLogger().setLevel(LEVELS[level.lower()])
        return 204, None

    async def get_events(req: Request) -> tuple[int, Any]:
        return 200, daemon.faults.events()

    async def get_backend(req: Request) -> tuple[int, Any]:
        return 200, instance(req).describe_json()

    async def put_start(req: Request) -> tuple[int, Any]:
        if daemon.state != "RUNNING":
            raise HttpError(400, f"daemon is {daemon.state}, not waiting to start")
        return 204, None

    async def put_exit(req: Request) -> tuple[int, Any]:
        daemon.request_exit()
        return 204, None

    def mount_args(req: Request) -> tuple[str, dict[str, Any]]:
        mp = req.query.get("mountpoint")
        if not mp:
            raise HttpError(400, "query parameter 'mountpoint' is required")
        body = req.json() or {}
        if not isinstance(body, dict):
            raise HttpError(400, "request body must be a JSON object")
        return mp, body

    def check_body(body: dict[str, Any]) -> tuple[str, Any, list[str]]:
        fs_type = body.get("fs_type", body.get("fstype", "rafs"))
        if fs_type != "rafs":
            raise HttpError(400, f"fs_type '{fs_type}' is not supported (only 'rafs')")
        source = body.get("source")
        if not isinstance(source, str) or not source:
            raise HttpError(400, "'source' (the bootstrap path) is required")
        driver = body.get("fs_driver")
        if driver not in (None, "", daemon.settings.fs_driver):
            raise HttpError(400, f"fs_driver '{driver}': this nydusd serves with "
                                 f"'{daemon.settings.fs_driver}' (start one with --fs-driver {driver})")
        files = body.get("prefetch_files") or []
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise HttpError(400, "'prefetch_files' must be a list of paths")
        return source, body.get("config"), files

    async def post_mount(req: Request) -> tuple[int, Any]:
        mp, body = mount_args(req)
        source, config, files = check_body(body)
        await _call(daemon.mount, mp, source, config, files)
        return 204, None

    async def put_mount(req: Request) -> tuple[int, Any]:
        mp, body = mount_args(req)
        source, config, files = check_body(body)
        await _call(daemon.remount, mp, source, config, files)
        return 204, None

    async def delete_mount(req: Request) -> tuple[int, Any]:
        mp = req.query.get("mountpoint")
        if not mp:
            raise HttpError(400, "query parameter 'mountpoint' is required")
        await _call(daemon.umount, mp)
        return 204, None

    async def get_metrics(req: Request) -> tuple[int, Any]:
        return 200, instance(req).metrics.global_stats()

    async def get_files(req: Request) -> tuple[int, Any]:
        inst = instance(req)
        if req.query.get("latest", "").lower() == "true":
            if not inst.metrics.latest_enabled:
                raise HttpError(400, "latest_read_files is not enabled in this instance's config")
            return 200, inst.metrics.latest_read_files()
        if not inst.metrics.files_enabled:
            raise HttpError(400, "iostats_files is not enabled in this instance's config")
        return 200, inst.metrics.files_stats()

    async def get_pattern(req: Request) -> tuple[int, Any]:
        inst = instance(req)
        if not inst.metrics.access_pattern_enabled:
            raise HttpError(400, "access_pattern is not enabled in this instance's config")
        return 200, inst.metrics.access_patterns()

    async def get_backend_metrics(req: Request) -> tuple[int, Any]:
        return 200, instance(req).backend_metrics()

    async def get_blobcache_metrics(req: Request) -> tuple[int, Any]:
        return 200, instance(req).blobcache_metrics()

    async def get_inflight(req: Request) -> tuple[int, Any]:
        return 200, daemon.ops.inflight()

    async def get_blob_metrics(req: Request) -> tuple[int, Any]:
        blob_metrics = getattr(daemon, "blob_metrics", None)
        if blob_metrics is None:
            raise HttpError(400, "per-blob-device metrics exist with --fs-driver erofs only")
        return 200, blob_metrics(pattern=req.query.get("pattern", "").lower() == "true")

    routes: dict[tuple[str, str], Handler] = {
        ("GET", "/api/v1/daemon"): get_daemon,
        ("PUT", "/api/v1/daemon"): put_daemon,
        ("GET", "/api/v1/daemon/events"): get_events,
        ("GET", "/api/v1/daemon/backend"): get_backend,
        ("PUT", "/api/v1/daemon/start"): put_start,
        ("PUT", "/api/v1/daemon/exit"): put_exit,
        ("POST", "/api/v1/mount"): post_mount,
        ("PUT", "/api/v1/mount"): put_mount,
        ("DELETE", "/api/v1/mount"): delete_mount,
        ("GET", "/api/v1/metrics"): get_metrics,
        ("GET", "/api/v1/metrics/files"): get_files,
        ("GET", "/api/v1/metrics/pattern"): get_pattern,
        ("GET", "/api/v1/metrics/backend"): get_backend_metrics,
        ("GET", "/api/v1/metrics/blobcache"): get_blobcache_metrics,
        ("GET", "/api/v1/metrics/inflight"): get_inflight,
        ("GET", "/api/v1/metrics/blobs"): get_blob_metrics,
    }
    routes.update(config_routes(instance))
    routes.update(failover_routes(daemon))
    return HttpServer(routes)


async def _call(fn: Any, *args: Any) -> None:
    """Run a mount operation, turning its failures into HTTP errors with one-line messages."""
    try:
        await fn(*args)
    except FileExistsError as exc:
        raise HttpError(409, str(exc), "ALREADY_EXISTS") from None
    except FileNotFoundError as exc:
        raise HttpError(404, str(exc), "NOT_FOUND") from None
    except PermissionError as exc:
        raise HttpError(403, str(exc)) from None
    except (ValueError, NydusError) as exc:
        raise HttpError(400, str(exc)) from None
    except OSError as exc:
        raise HttpError(500, str(exc)) from None
