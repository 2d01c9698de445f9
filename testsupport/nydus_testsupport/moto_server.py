"""Run moto's server (``python -m nydus_testsupport.moto_server -H HOST -p PORT``) for the object-store
tests, with requests that are not SigV4-signed always routed to moto's S3.

moto guesses the service of a signed request from the SigV4 credential scope in ``Authorization``
(``Credential=id/date/region/service/aws4_request``). oss2 signs ``Authorization: OSS id:signature``;
when the base64 signature happens to hold exactly four ``/`` moto reads a made-up service from it and
answers 500 (about one request in a thousand). Requests without a SigV4 scope go to S3, moto's own
default for them.
"""

from __future__ import annotations

from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import main

_infer = DomainDispatcherApplication.infer_service_region_host


def _infer_sigv4_only(self: DomainDispatcherApplication, environ: dict[str, Any], path: str) -> str | None:
    auth = environ.get("HTTP_AUTHORIZATION") or ""
    if auth and not auth.startswith("AWS4-"):
        return None  # moto then takes its default service, s3
    return _infer(self, environ, path)


DomainDispatcherApplication.infer_service_region_host = (  # type: ignore[method-assign]  # patching moto
    _infer_sigv4_only
)

if __name__ == "__main__":
    main()
