"""DICOM tree: subject -> session -> series, children built only when a node is expanded."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from tui.viewmodel import Workspace


class DicomTree(Tree[dict[str, Any]]):
    """Lazy: 10k series cost nothing until their session is opened."""

    BORDER_TITLE = "DICOM"
    ALLOW_MAXIMIZE = True

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
                files = sum(int(self.ws.series[k].get("series_files") or 0) for k in keys)
                child = node.add(
                    f"ses-{ses} [dim]({len(keys)} series, {files} files)[/]",
                    data={"kind": "session", "subject": data["subject"], "session": ses},
                )
                child.allow_expand = True
        elif data["kind"] == "session":
            self._add_series(node, self.ws.tree[data["subject"]][data["session"]])

    def _add_series(self, node: TreeNode[dict[str, Any]], keys: list[str]) -> None:
        assert self.ws is not None
        for k in keys:
            s = self.ws.series[k]
            flags = self.ws.series_flags(k)
            mark = f" [b red]{' '.join(flags)}[/]" if flags else ""
            desc = s.get("series_description") or s.get("protocol_name") or ""
            label = (
                f"{s.get('series_id', '')} {desc} [dim]({s.get('series_files', 0)} files)[/]{mark}"
            )
            node.add_leaf(label, data={"kind": "series", "key": k})
