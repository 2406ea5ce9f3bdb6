"""Sequence groups: one DataTable row per group, sortable by column, filtered by an Input.

The pane owns the review keys (accept, edit, skip, unskip, re-map, filter, sort): each acts on
the group under the cursor and posts a request (:mod:`tui.messages`) that the app runs."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Input

from engine.api.types import GroupView
from tui import messages as msg
from tui.keymap import bindings
from tui.viewmodel import Workspace, group_name

COLUMNS = (
    ("group", "group"),
    ("name", "proposed BIDS name"),
    ("source", "src"),
    ("conf", "conf"),
    ("n", "n"),
    ("flags", "flags"),
)


IMAGE_COLUMN = ("image", "image says")  # shown once a second opinion exists (classify)


def image_says(g: GroupView) -> str:
    """The image classifier's class of the group ("" without a second opinion)."""
    return str(getattr(g, "image_says", "") or "")


def image_probs(g: GroupView) -> dict[str, float]:
    return dict(getattr(g, "image_probs", None) or {})


def name_label(name: str, with_datatype: bool) -> str:
    """``anat/acq-x_T1w`` -> ``T1w`` (``anat/T1w`` with the datatype); "" for a skip."""
    datatype, sep, rest = name.strip().partition("/")
    if not sep or not rest:
        return ""
    suffix = rest.split("_")[-1]
    return f"{datatype}/{suffix}" if with_datatype else suffix


def image_disagrees(g: GroupView) -> bool:
    """The image's class differs from the BIDS name shown (at the class's granularity)."""
    says = image_says(g)
    if not says or g.mapping.is_skip:
        return False
    said = name_label(group_name(g), "/" in says)
    return bool(said) and said != says


def opinion_lines(g: GroupView) -> list[str]:
    """The rationale pane's lines of the image classifier's second opinion."""
    says = image_says(g)
    if not says:
        return []
    probs = sorted(image_probs(g).items(), key=lambda x: -x[1])
    head = (
        f"image says {says}, name says {name_label(group_name(g), '/' in says)}"
        if image_disagrees(g)
        else f"image says {says} (agrees with the name)"
        if not g.mapping.is_skip
        else f"image says {says}"
    )
    lines = [("FLAG: " if image_disagrees(g) else "") + head]
    if probs:
        lines.append("  image class probabilities: " + ", ".join(f"{c} {p:.2f}" for c, p in probs))
    return lines


def has_opinions(groups: list[GroupView]) -> bool:
    return any(image_says(g) for g in groups)


def short_flag(flag: str) -> str:
    """A grouping flag as one short word for the table (the rationale pane shows it in full):
    ``drift:repetition_time`` -> ``drift``, ``missing:S01,S02`` -> ``missing``, ``DERIVED`` ->
    ``derived``, ``part=mag`` -> ``mag``."""
    word = flag.split(":", 1)[0].split("=", 1)[-1] if "=" in flag else flag.split(":", 1)[0]
    return word.lower()


def short_flags(flags: list[str]) -> str:
    return " ".join(dict.fromkeys(short_flag(f) for f in flags))


GROUP_CAP = 28  # the table's widest group id; the rationale pane shows it in full
NAME_CAP = 96  # the name takes the room there is, up to this
FLAGS_CAP = 24  # flags are short words; on a narrow pane they give up cells first
GROUP_MIN = 12  # on a narrow pane the group id and the name are clipped further, down to
NAME_MIN = 20  # these, so that the short key columns (src, conf, n) stay in view
FLAGS_MIN = 11  # the first flag word stays whole ("image≠name…")
Caps = tuple[int, int, int]  # group id, name, flags
FULL: Caps = (GROUP_CAP, NAME_CAP, FLAGS_CAP)


def clip(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[: cap - 1] + "…"


def fit_caps(
    groups: list[GroupView], avail: int, padding: int = 1, scrollbar: int = 0, image: bool = False
) -> Caps:
    """The widths to clip group ids, names and flags to so that all columns fit ``avail``.

    The BIDS name is what a reviewer reads: it gets the room (up to ``NAME_CAP``). When the
    pane is too narrow, the flags give up cells first (down to ``FLAGS_MIN``), then the wider of
    the group id and the name (over its minimum), never below ``GROUP_MIN``/``NAME_MIN``.
    ``avail <= 0`` (not laid out yet) keeps the full caps."""
    if avail <= 0 or not groups:
        return FULL
    gw = max([len(COLUMNS[0][1]), *(min(len(g.group_id), GROUP_CAP) for g in groups)])
    nw = max([len(COLUMNS[1][1]), *(min(len(group_name(g)), NAME_CAP) for g in groups)])
    fw = max([len("flags"), *(min(len(_flags_cell(g)), FLAGS_CAP) for g in groups)])
    columns = columns_for(image)
    rest = [_cells(g, image=image)[2:] for g in groups]
    fixed = sum(
        max([len(label), *(_width(r[i]) for r in rest)])
        for i, (key, label) in enumerate(columns[2:])
        if key != "flags"
    )
    budget = avail - scrollbar - 2 * padding * len(columns) - fixed
    gmin, nmin, fmin = min(gw, GROUP_MIN), min(nw, NAME_MIN), min(fw, FLAGS_MIN)
    while gw + nw + fw > budget:
        if fw > fmin:
            fw -= 1
        elif nw > nmin and nw - nmin >= gw - gmin:
            nw -= 1
        elif gw > gmin:
            gw -= 1
        else:
            break
    return gw, nw, fw


def columns_for(image: bool) -> tuple[tuple[str, str], ...]:
    return (*COLUMNS, IMAGE_COLUMN) if image else COLUMNS


def _flags_cell(g: GroupView) -> str:
    """Short flag words; the classifier's disagreement first, so clipping never hides it."""
    words = short_flags(g.group.flags)
    return f"image≠name {words}".strip() if image_disagrees(g) else words


def _cells(
    g: GroupView,
    caps: Caps = FULL,
    image: bool = False,
    marked: bool = False,
) -> tuple[Any, ...]:
    m = g.mapping
    style = "green" if m.source == "user" else ("yellow" if g.unsure else "")
    name = Text(clip(group_name(g), caps[1]), style="dim" if m.is_skip else style)
    # every cell a Text: DataTable parses a str cell as markup (``[b1000]`` would vanish)
    cells: tuple[Any, ...] = (
        Text(clip(g.group_id, caps[0]), style="bold reverse" if marked else ""),
        name,
        Text(m.source),
        Text(f"{m.confidence:.2f}"),
        len(g.group.series_keys),
        Text(clip(_flags_cell(g), caps[2])),
    )
    if image:
        says = image_says(g)
        cells += (Text(says, style="bold red") if image_disagrees(g) else Text(says),)
    return cells


def proposal_of(g: GroupView) -> str:
    """The rules/LLM proposal's name (a person's edit does not move a row out of its block)."""
    return g.proposal.display


def _sort_value(g: GroupView, col: str) -> Any:
    return {
        "group": g.group_id,
        "n": len(g.group.series_keys),
        "name": group_name(g),
        "source": g.mapping.source,
        "conf": g.mapping.confidence,
        "flags": _flags_cell(g),
        "image": (not image_disagrees(g), image_says(g)),
    }[col]


def _width(cell: Any) -> int:
    return cell.cell_len if isinstance(cell, Text) else len(str(cell))


def fit_columns(table: DataTable[Any], rows: list[tuple[Any, ...]], cap: int = 60) -> bool:
    """Give every column a fixed width that fits its label and ``rows`` (capped).

    Textual measures auto-width columns on the table's Idle event but does not drop the rows it
    rendered before that (their cache key has no widths), so an early paint can leave a row drawn
    with the header's widths for good. Fixed widths render right from the first paint, cost a
    ``len`` per cell, and keep the screen the same however busy the machine is. Returns whether
    any width changed.
    """
    changed = False
    for i, col in enumerate(table.ordered_columns):
        w = max([col.label.cell_len, *(_width(r[i]) for r in rows if i < len(r))])
        w = min(w, cap)
        if col.auto_width or col.width != w:
            col.auto_width, col.width, changed = False, w, True
    return changed


class GroupsPane(Vertical):
    BORDER_TITLE = "Sequence groups"
    ALLOW_MAXIMIZE = True
    BINDINGS = bindings("groups")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ws: Workspace | None = None
        self.sort_col = "group"
        self.sort_reverse = False
        self.caps: Caps = FULL  # what the rows' group ids, names and flags are clipped to
        self.image = False  # the "image says" column is shown (a second opinion exists)
        self.marked: set[str] = set()  # groups selected for a bulk accept/skip
        self.by_proposal = False  # rows with the same proposed name together (across vendors)

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter groups (/)", id="group-filter")
        table: DataTable[Any] = DataTable(
            id="groups-table", cursor_type="row", zebra_stripes=True, cell_padding=1
        )
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#groups-table", DataTable)

    def load(self, ws: Workspace, keep: str | None = None) -> None:
        self.ws = ws
        self.refill(keep)

    def visible_rows(self) -> list[GroupView]:
        if self.ws is None:
            return []
        needle = self.query_one("#group-filter", Input).value.strip().lower()
        rows = list(self.ws.groups.values())
        if needle:
            rows = [
                g
                for g in rows
                if needle in g.group_id.lower()
                or needle in group_name(g).lower()
                or needle in g.mapping.source
                or needle in " ".join(g.group.flags).lower()
                or needle in _flags_cell(g)
                or needle == image_says(g).lower()
                or needle == "unsure"
                and g.unsure
            ]
        rows.sort(key=lambda g: _sort_value(g, self.sort_col), reverse=self.sort_reverse)
        if self.by_proposal:  # stable: within a proposal, the chosen order
            rows.sort(key=proposal_of)
        return rows

    def refill(self, keep: str | None = None) -> None:
        """Rebuild the rows in one batch (``add_rows``), keeping the cursor on ``keep``."""
        table = self.table
        keep = keep or self.selected()
        rows = self.visible_rows()
        image = self.ws is not None and has_opinions(list(self.ws.groups.values()))
        if image != self.image:
            self.image = image
            table.clear(columns=True)
            for key, label in columns_for(image):
                table.add_column(label, key=key)
        self.caps = self._caps(rows)
        cells = [_cells(g, self.caps, self.image, g.group_id in self.marked) for g in rows]
        fit_columns(table, cells, cap=NAME_CAP)
        table.clear()  # after the widths: clear() also drops the render caches
        table.add_rows(cells)
        # row keys: DataTable assigns its own; remember the order for lookups
        self._order = [g.group_id for g in rows]
        if keep in self._order:
            table.move_cursor(row=self._order.index(keep), animate=False)
        table.call_after_refresh(table.scroll_to, x=0, animate=False)

    def update_group(self, gid: str) -> None:
        """Redraw one row in place (after a decision)."""
        if self.ws is None or gid not in getattr(self, "_order", []):
            return
        g = self.ws.groups[gid]
        if has_opinions([g]) and not self.image:
            self.refill()  # the first second opinion: the column appears
            return
        cells = _cells(g, self.caps, self.image, gid in self.marked)
        widths = [c.width for c in self.table.ordered_columns]
        if any(_width(v) > w for v, w in zip(cells, widths, strict=True)):
            self.refill()  # a wider name: new widths, and a clean render
            return
        row = self._order.index(gid)
        row_key = self.table.coordinate_to_cell_key((row, 0)).row_key
        for (col, _), value in zip(columns_for(self.image), cells, strict=True):
            self.table.update_cell(row_key, col, value)

    def _caps(self, rows: list[GroupView]) -> Caps:
        table = self.table
        height = table.size.height
        # a vertical scrollbar (rows + header taller than the table) takes its cells
        bar = table.styles.scrollbar_size_vertical if height and len(rows) + 1 > height else 0
        return fit_caps(rows, table.size.width, table.cell_padding, bar, self.image)

    def on_resize(self) -> None:
        """A new width (terminal, ``[``/``]``, f11): re-clip when the caps change."""
        self.call_after_refresh(self._refit)

    def _refit(self) -> None:
        if self.ws is not None and self._caps(self.visible_rows()) != self.caps:
            self.refill()

    def selected(self) -> str | None:
        order = getattr(self, "_order", [])
        row = self.table.cursor_row
        return order[row] if 0 <= row < len(order) else None

    def select(self, gid: str) -> None:
        order = getattr(self, "_order", [])
        if gid in order:
            self.table.move_cursor(row=order.index(gid), animate=False)

    def sort_by(self, col: str | None = None) -> None:
        cols = [c for c, _ in columns_for(self.image)]
        if col is None:
            col = cols[(cols.index(self.sort_col) + 1) % len(cols)]
            self.sort_reverse = False
        elif col == self.sort_col:
            self.sort_reverse = not self.sort_reverse
        self.sort_col = col
        self.refill()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "group-filter":
            self.refill()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "group-filter":
            self.table.focus()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        self.sort_by(str(event.column_key.value))

    # --- the review keys -------------------------------------------------------------------
    def current(self) -> GroupView | None:
        gid = self.selected()
        return self.ws.groups.get(gid) if self.ws is not None and gid else None

    def _cursor_down(self) -> None:
        t = self.table
        if t.cursor_row < t.row_count - 1:
            t.move_cursor(row=t.cursor_row + 1, animate=False)

    def action_accept(self) -> None:
        """Accept what is on screen: the name shown (or the skip shown), then the next row."""
        g = self.current()
        if g is None:
            return
        m = g.mapping
        if m.is_skip:
            self.post_message(msg.Decide(g.group_id, "skip", skip_reason=m.skip_reason))
        else:
            self.post_message(msg.Decide(g.group_id, "accept", name=group_name(g)))
        self._cursor_down()

    def action_skip(self) -> None:
        g = self.current()
        if g is not None:
            self.post_message(msg.Decide(g.group_id, "skip"))

    def action_unskip(self) -> None:
        g = self.current()
        if g is None:
            return
        if g.decision is not None and g.decision.action == "skip":
            self.post_message(msg.Decide(g.group_id, "unskip"))
        elif g.mapping.is_skip:
            self.notify("skipped by the rules: give it a name instead (edit)")
            self.action_edit_name()
        else:
            self.notify(f"{g.group_id} is not skipped")

    def action_edit_name(self) -> None:
        from tui.screens.edit_name import EditNameScreen

        g = self.current()
        if g is None:
            return
        gid = g.group_id

        def done(name: str | None) -> None:
            if name:
                self.post_message(msg.Decide(gid, "edit", name=name))

        self.app.push_screen(EditNameScreen(gid, "" if g.mapping.is_skip else group_name(g)), done)

    def action_remap(self) -> None:
        g = self.current()
        if g is not None:
            self.post_message(msg.Remap([g.group_id]))

    def action_remap_unsure(self) -> None:
        unsure = [g.group_id for g in (self.ws.groups.values() if self.ws else ()) if g.unsure]
        if unsure:
            self.post_message(msg.Remap(unsure))
        else:
            self.notify("no unsure group to re-map")

    # --- bulk review: mark groups, then accept or skip them all in one step ---------------
    def set_marked(self, gids: set[str]) -> None:
        changed = self.marked ^ gids
        self.marked = set(gids)
        for gid in changed:
            self.update_group(gid)
        n = len(self.marked)
        self.border_subtitle = f"{n} marked: A accept, S skip (one undo)" if n else ""

    def action_mark(self) -> None:
        g = self.current()
        if g is not None:
            self.set_marked(self.marked ^ {g.group_id})
            self._cursor_down()

    def action_mark_shown(self) -> None:
        """Mark every group the filter shows (all of them marked already: unmark them)."""
        shown = {g.group_id for g in self.visible_rows()}
        self.set_marked(self.marked - shown if shown <= self.marked else self.marked | shown)

    def action_mark_unsure(self) -> None:
        unsure = {g.group_id for g in (self.ws.groups.values() if self.ws else ()) if g.unsure}
        if not unsure:
            self.notify("no unsure group")
        self.set_marked(self.marked | unsure)

    def action_mark_same(self) -> None:
        """Mark every group with the same proposal (the name shown, or a skip) as this one."""
        g = self.current()
        if g is None or self.ws is None:
            return
        same = {x.group_id for x in self.ws.groups.values() if group_name(x) == group_name(g)}
        self.set_marked(self.marked | same)
        self.notify(f"{len(same)} group(s) proposed {group_name(g)}", timeout=3)

    def action_bulk(self, action: str) -> None:
        """Accept (what is shown) or skip every marked group: one journal entry, one undo."""
        if self.ws is None or not self.marked:
            self.notify("no marked group: m marks one, M the shown ones, U the unsure ones")
            return
        out = []
        for gid in sorted(self.marked):
            g = self.ws.groups.get(gid)
            if g is None:
                continue
            if action == "skip":
                out.append(msg.Decide(gid, "skip"))
            elif g.mapping.is_skip:
                out.append(msg.Decide(gid, "skip", skip_reason=g.mapping.skip_reason))
            else:
                out.append(msg.Decide(gid, "accept", name=group_name(g)))
        verb = "accepted" if action == "accept" else "skipped"
        self.post_message(msg.DecideMany(out, f"{len(out)} groups {verb} (one undo)"))
        self.set_marked(set())

    def action_by_proposal(self) -> None:
        """Toggle grouping the rows by proposal: the same acquisition spelled differently by
        each vendor or site (``t1_mprage_sag``, ``Sag T1 BRAVO``, ``T1W_3D_TFE``) proposed as
        one BIDS name lands in one block, to be reviewed together (``=`` marks the block)."""
        self.by_proposal = not self.by_proposal
        self.refill()
        if self.by_proposal and self.ws is not None:
            n = len({proposal_of(g) for g in self.ws.groups.values()})
            self.border_title = f"Sequence groups by proposal ({n} proposals)"
            self.notify(f"grouped by proposal: {n} proposals (b again: off)", timeout=3)
        else:
            self.border_title = self.BORDER_TITLE

    def action_focus_filter(self) -> None:
        self.query_one("#group-filter", Input).focus()

    def action_sort(self) -> None:
        self.sort_by()
        self.notify(f"sorted by {self.sort_col}", timeout=2)
