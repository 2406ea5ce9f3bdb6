"""The panes of the main screen."""

from __future__ import annotations

from typing import Any


def reveal(widget: Any) -> None:
    """Make ``widget`` visible: activate every tab (``TabPane``) it sits in, innermost last."""
    from textual.widgets import TabbedContent, TabPane

    panes = [a for a in widget.ancestors_with_self if isinstance(a, TabPane)]
    for pane in reversed(panes):
        box = next((a for a in pane.ancestors if isinstance(a, TabbedContent)), None)
        if box is not None and pane.id and box.active != pane.id:
            box.active = pane.id
