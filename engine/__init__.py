"""llm-heuristics engine: scan -> group -> map -> generate, with no UI dependency.

Nothing in this package may import Textual; the TUI (package ``tui``) is a thin client.
"""

__version__ = "0.1.0"
