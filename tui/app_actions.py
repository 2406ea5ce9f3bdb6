"""The app-wide keys that are not engine calls (quit, help, cancel) and the workers' summaries.

Split from :mod:`tui.app` so that ``LlmhApp`` holds only the connection, the workers and the
error routing; Textual finds these ``action_*`` methods through the class's bases, and the
key table (:mod:`tui.keymap`, pane ``app``) binds them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import App

from engine.api import types as t
from tui import messages as msg

if TYPE_CHECKING:
    from tui.screens.main import MainScreen

HEURISTIC = "heuristic.py"
GENERATED = "heuristic.generated.py"
# the Reports tabs and the engine's names of their texts (``workspace.text``)
REPORT_FILES = {"grouping": "grouping", "mapping": "mapping", "validation": "heuristic"}
REPORT_FILES["conversion"] = "conversion"


def convert_summary(m: msg.Convert, res: t.ConvertResult) -> str:
    """One line for the notification: done, or failed WITH its cause (the first failed run or
    series, the validator's verdict); the Conversion tab holds the whole report."""
    what = f"{'dry run of ' if m.dry_run else ''}sub-{m.subject}"
    if res.ok and not res.series_failed:
        return f"{what} done"
    causes = [*res.failed, *res.series_failed]
    cause = causes[0] if causes else (res.verdict or "see the Conversion report")
    more = f" (+{len(causes) - 1} more)" if len(causes) > 1 else ""
    head = "failed" if not res.ok else f"{len(res.series_failed)} series failed"
    return f"{what} {head}: {cause}{more}"


class AppActions(App[int]):
    """The review app's own keys; ``running`` is the engine call ``x`` cancels."""

    running: Any = None
    quit_after_save = False  # the quit prompt's "save": exit once the engine saved

    def notify(self, message: str, *, markup: bool = False, **kwargs: Any) -> None:  # type: ignore[override]
        """Notifications are plain text: they quote group ids, names and engine messages,
        which may hold ``[...]`` from DICOM headers (never parsed as markup)."""
        super().notify(message, markup=False, **kwargs)

    @property
    def main_screen(self) -> MainScreen:
        return self.screen_stack[0] if self.screen_stack else self.screen  # type: ignore[return-value]

    async def action_quit(self) -> None:
        """Quit; with unsaved edits in the heuristic editor, ask: save, discard or cancel."""
        from tui.screens.choice import ChoiceScreen

        if isinstance(self.screen, ChoiceScreen):
            return  # the question is on screen already
        editor = self.main_screen.editor if self.screen_stack else None
        if editor is None or not editor.dirty:
            self.exit()
            return

        def answered(answer: str | None) -> None:
            if answer == "discard":
                self.exit()
            elif answer == "save":
                self.quit_after_save = True
                if not editor.action_save():
                    self.quit_after_save = False  # a syntax error: stay, it is shown

        self.push_screen(
            ChoiceScreen(
                "Unsaved edits in heuristic.py",
                ["Save them before quitting?"],
                [
                    ("save", "s", "Save"),
                    ("discard", "d", "Discard"),
                    ("cancel", "escape", "Cancel"),
                ],
            ),
            answered,
        )

    def help_shown(self) -> bool:
        from textual.widgets import HelpPanel

        return bool(self.screen.query(HelpPanel))

    def action_toggle_help(self) -> None:
        """``?``/f1: the keys panel (every key of the focused pane and the screen)."""
        if self.help_shown():
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def action_cancel(self) -> None:
        call = self.running
        if call is not None:
            call.cancel_request()
            self.notify("cancel requested")
        else:
            self.notify("nothing is running")
