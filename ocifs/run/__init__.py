"""Running ocifs: command line, options, logging, the mount's lifecycle, the container entrypoint."""
