"""One module per subcommand; each defines ``register(subparsers)``. See :mod:`engine.cli`."""
