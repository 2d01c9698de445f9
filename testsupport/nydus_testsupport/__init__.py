"""nydus-testsupport: this repository's own test infrastructure (not published).

It holds what only our tests and benchmarks need: runners for real servers (docker-registry with
its token issuer and fault proxies, moto), kernel EROFS and overlayfs mounts, nydusd and containerd
processes, virtual environments built from the workspace's wheels, the upstream fixtures' location,
tree and tar comparers, and the object-store suites. What a third-party plugin author needs is in
the published ``nydus_testkit``, which this package builds on. Shipped code never imports either.
"""

from __future__ import annotations

import sys

if "pytest" in sys.modules:  # let pytest rewrite the suites' asserts into readable failures
    sys.modules["pytest"].register_assert_rewrite(f"{__name__}.objstore_suites")
