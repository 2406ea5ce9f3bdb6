"""The reading room as an app of its own: the engine connection around
:class:`~tui.screens.reading_room.ReadingRoomScreen` (``tui OUT --reading-room IMAGES``)."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import App
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from engine.rpc.client import EngineClient, make_launcher
from tui.components.preview import probe_graphics
from tui.components.reading_keys import READING_KEYS
from tui.engine_link import TuiClient, describe_error
from tui.keymap import load_keymap
from tui.screens.reading_room import ReadingRoomScreen


class ReadingApp(App[int]):
    """The reading room as an app: ``ReadingApp(paths, engine=..., client=..., **screen)``."""

    TITLE = "llm-heuristics reading room"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]  # 80 columns: no EHR pane

    def __init__(
        self,
        paths: list[str],
        engine: str = "inprocess",
        *,
        client: EngineClient | None = None,
        roots: list[str] | None = None,
        keymap: dict[str, str] | None = None,
        **screen: Any,
    ) -> None:
        """``roots``: folders a local engine serves (``engine serve --root``): the images, the
        reports and the EHR the person named, beside the engine's default roots."""
        probe_graphics()  # before the app runs: never a terminal query once it does
        super().__init__()
        self.engine_spec = engine
        self.roots = roots
        self.client = client
        self.reading = ReadingRoomScreen(paths, **screen)
        self.user_keymap = load_keymap() if keymap is None else keymap
        self.effective_keys = {k.id: self.user_keymap.get(k.id, k.key) for k in READING_KEYS}

    def notify(self, message: str, *, markup: bool = False, **kwargs: Any) -> None:  # type: ignore[override]
        """Plain text: file names may hold ``[...]``."""
        super().notify(message, markup=False, **kwargs)

    def get_default_screen(self) -> Screen[Any]:
        return self.reading

    def on_mount(self) -> None:
        if self.user_keymap:
            self.set_keymap(self.user_keymap)
        self.sub_title = ", ".join(self.reading.paths)[:80]
        self.call_after_refresh(self.connect)

    def _on_engine_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "progress" and params.get("message"):
            self.call_from_thread(self.reading.set_status, str(params["message"]))

    @work(thread=True, name="connect", group="engine", exit_on_error=False)
    def connect(self) -> None:
        if self.client is None or not self.client.alive:
            spec: Any = self.engine_spec
            if self.roots:
                spec = make_launcher(spec, roots=self.roots)
            self.client = TuiClient(spec, on_notification=self._on_engine_event)
            self.client.start()
        self.call_from_thread(self.reading.set_status, "loading the images...")
        self.call_from_thread(self.reading.start)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.name == "connect":
            text, severity = describe_error(event.worker.error)
            self.reading.set_status(f"no engine: {text}")
            self.notify(f"engine: {text}", severity=severity, timeout=10)  # type: ignore[arg-type]

    def on_unmount(self) -> None:
        c = self.client
        if c is not None:
            try:
                c.close(
                    shutdown=not c.launcher.can_resume and c.launcher.stages[0].kind != "inprocess"
                )
            except Exception:  # noqa: BLE001 - leaving anyway
                pass
