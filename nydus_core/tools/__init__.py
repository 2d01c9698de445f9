"""What ``nydus-image check|inspect|stat|unpack`` do, as library functions (the CLI is a thin layer)."""
