"""Errors shared across the engine."""


class UserError(Exception):
    """A problem the user can fix (bad path, missing step); shown without a traceback."""
