"""Dragonfly proxy health: the one policy all remote backends share lives in the core.

:class:`ProxyHealth` is :class:`nydus_core.remote_backend.ProxyHealth` (a background checker of
``ping_url``, or a TCP connect without one; paused after ``check_pause_elapsed`` idle), still
importable from here.
"""

from nydus_core.remote_backend import ProxyHealth

__all__ = ["ProxyHealth"]
