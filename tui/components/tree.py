"""DICOM tree: subject -> session -> series, children built only when a node is expanded.

A series node's data holds its key and its group id (from the engine's series rows), so
highlighting a series selects its group without splitting keys."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from tui.keymap import bindings
from tui.viewmodel import Workspace


class DicomTree(Tree[dict[str, Any]]):
    """Lazy: 10k series cost nothing until their session is opened."""

    BORDER_TITLE = "DICOM"
    ALLOW_MAXIMIZE = True
    BINDINGS = bindings("tree")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("study", **kwargs)
        self.ws: Workspace | None = None
        self.show_root = False

    def load(self, ws: Workspace) -> None:
        self.ws = ws
        self.clear()
        for sub, sessions in ws.tree.items():
            n = sum(len(v) for v in sessions.values())
            label = Text.assemble(f"sub-{sub} ", (f"({n} series)", "dim"))  # no markup parse
            node = self.root.add(label, data={"kind": "subject", "subject": sub})
            node.allow_expand = True
        self.root.expand()

    def action_expand_node(self) -> None:
        """Right: open the node under the cursor (on an open one: down to its first child)."""
        node = self.cursor_node
        if node is None and self.root.children:  # no cursor yet: the first subject
            node = self.root.children[0]
            self.move_cursor(node)
        if node is None:
            return
        if node.allow_expand and not node.is_expanded:
            node.expand()
        elif node.children:
            self.move_cursor(node.children[0])

    def action_collapse_node(self) -> None:
        """Left: close the node under the cursor, or go up to its parent."""
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded:
            node.collapse()
        elif node.parent is not None and node.parent is not self.root:
            self.move_cursor(node.parent)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[dict[str, Any]]) -> None:
        node = event.node
        if node.children or not node.data or self.ws is None:
            return
        data = node.data
        if data["kind"] == "subject":
            sessions = self.ws.tree.get(data["subject"], {})
            if list(sessions) == [""]:
                self._add_series(node, sessions[""])
                return
            for ses, keys in sessions.items():
                files = sum(self.ws.series[k].n_files for k in keys)
                child = node.add(
                    Text.assemble(f"ses-{ses} ", (f"({len(keys)} series, {files} files)", "dim")),
                    data={"kind": "session", "subject": data["subject"], "session": ses},
                )
                child.allow_expand = True
        elif data["kind"] == "session":
            self._add_series(node, self.ws.tree[data["subject"]][data["session"]])

    def _add_series(self, node: TreeNode[dict[str, Any]], keys: list[str]) -> None:
        assert self.ws is not None
        for k in keys:
            s = self.ws.series[k]
            label = Text.assemble(
                f"{s.series_id} {s.description or s.protocol}",  # no markup parse: [ ; | are text
                (f" ({s.n_files} files)", "dim"),
                (f" {' '.join(s.flags)}" if s.flags else "", "bold red"),
            )
            data = {
                "kind": "series",
                "key": k,
                "group_id": s.group_id,
                "subject": s.subject,
                "session": s.session,
            }
            node.add_leaf(label, data=data)
