"""The protocol matrix: series count per group and subject/session ('.' = missing)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from tui.components.groups import fit_columns
from tui.viewmodel import Workspace


class MatrixScreen(ModalScreen[str | None]):
    """Enter on a row returns its group id (the app selects it)."""

    BINDINGS = [
        Binding("escape,p,q", "close", "close", id="matrix.close"),
    ]

    def __init__(self, ws: Workspace) -> None:
        super().__init__()
        self.ws = ws

    def compose(self) -> ComposeResult:
        with Vertical(id="matrix-dialog"):
            yield Label(
                "Protocol matrix: series per subject/session (. = missing)", id="matrix-title"
            )
            yield DataTable(id="matrix-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        cells, rows = self.ws.matrix()
        table.add_column("group", key="group")
        for c in cells:
            table.add_column(Text(c), key=c)  # DICOM-derived labels: plain text, never markup
        cells_rows = [
            (Text(gid), *[Text(str(n) if n else ".") for n in counts]) for gid, counts in rows
        ]
        fit_columns(table, cells_rows)
        table.add_rows(cells_rows)
        self._gids = [gid for gid, _ in rows]
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(self._gids[event.cursor_row])

    def action_close(self) -> None:
        self.dismiss(None)
