"""What ``nydus-image check|inspect|stat|unpack`` do, as library functions (the CLI is a thin layer)."""

__all__: list[str] = []  # the public names are in the submodules (docs/core-api.md)
