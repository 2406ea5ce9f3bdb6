"""The test suite (a package, so `tests.*` is ours even where a library ships a `tests`)."""
