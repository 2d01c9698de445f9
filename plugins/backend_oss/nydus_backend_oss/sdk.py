"""Import oss2 quietly: some oss2 releases carry docstrings with invalid escapes, which Python reports
as warnings when it compiles them."""

from __future__ import annotations

import warnings
from types import ModuleType


def import_oss2() -> ModuleType:
    """Return the ``oss2`` module, importing it (once) without its compile-time warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        import oss2
        import oss2.exceptions
        import oss2.models
        import oss2.utils
    module: ModuleType = oss2  # oss2 has no types (see [tool.mypy] overrides)
    return module
