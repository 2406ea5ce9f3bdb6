"""The engine's one typed API: every front end (CLI, RPC, TUI through RPC) calls these.

- :mod:`engine.api.types`: parameter and result dataclasses (no step code: the TUI imports it)
- :mod:`engine.api.steps`: analyze, group, map, generate, validate, convert
- :mod:`engine.api.review`: the person's decisions, the workspace view, previews, reports
"""
