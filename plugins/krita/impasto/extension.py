"""Registration with Krita: the docker, the two filter-like actions, the poll timer and shutdown."""

from __future__ import annotations

from typing import Any

from . import kritadoc
from .controller import Controller
from .docker import DockerPanel
from .qt import (
    QDialog,
    QDialogButtonBox,
    QMessageBox,
    QProgressDialog,
    QTimer,
    QVBoxLayout,
    QWidget,
    accepted,
    exec_dialog,
)
from .widgets import StylePicker

POLL_MS = 50
_controller: Controller | None = None
_timer: QTimer | None = None


def controller() -> Controller:
    """The one controller of this Krita process, shared by every window's docker and the actions."""
    global _controller, _timer
    if _controller is None:
        _controller = Controller(kritadoc.KritaDocuments(), kritadoc.read_setting, kritadoc.write_setting)
        _timer = QTimer()
        _timer.timeout.connect(_controller.poll)  # finished jobs touch the document here, on the GUI thread
        _timer.start(POLL_MS)
        kritadoc.on_application_closing(_controller.shutdown)
        _controller.refresh()
    return _controller


class StyleDialog(QDialog):
    """"Apply Impasto style…": pick a style and settings, like a filter's dialog."""

    def __init__(self, ctrl: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Apply Impasto style")
        self.picker = StylePicker()
        self.picker.set_styles(ctrl.styles, ctrl.settings.style)
        self.picker.set_options(ctrl.settings.options)
        self.picker.set_refine_available("refine" in ctrl.operations)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picker)
        layout.addWidget(buttons)
        self.resize(420, 420)


class ProgressPopup:
    """Progress for a job started from an action while no docker is visible; closes itself."""

    def __init__(self, ctrl: Controller, parent: QWidget | None) -> None:
        self.ctrl = ctrl
        self.dialog = QProgressDialog("Impasto…", "Cancel", 0, 0, parent)
        self.dialog.setMinimumDuration(500)
        self.dialog.canceled.connect(ctrl.cancel)
        ctrl.add_view(self)

    def show_busy(self, busy: bool, text: str) -> None:
        if busy:
            self.dialog.setLabelText(text)
            return
        self.dialog.reset()
        # Detach on the next tick, not now: the job's final message (an error, say) comes right after.
        QTimer.singleShot(0, self._detach)

    def _detach(self) -> None:
        self.ctrl.remove_view(self)
        self.dialog.deleteLater()

    def show_activity(self, text: str, percent: int | None) -> None:
        self.dialog.setLabelText(text)
        if percent is None:
            self.dialog.setRange(0, 0)
        else:
            self.dialog.setRange(0, 100)
            self.dialog.setValue(percent)

    def show_message(self, text: str, error: bool = False) -> None:
        if error and text:
            QMessageBox.warning(self.dialog.parentWidget(), "Impasto", text)


def _docker_visible(ctrl: Controller) -> bool:
    return any(isinstance(v, DockerPanel) and v.isVisible() for v in ctrl.views)


def _run_from_action(start: Any) -> None:
    ctrl = controller()
    window = kritadoc.Krita.instance().activeWindow()
    parent = window.qwindow() if window is not None else None
    popup = None if _docker_visible(ctrl) else ProgressPopup(ctrl, parent)
    if not start() and popup is not None:
        popup.show_busy(False, "")


class ImpastoExtension(kritadoc.Extension):
    def __init__(self, parent: Any) -> None:
        super().__init__(parent)

    def setup(self) -> None:
        pass

    def createActions(self, window: Any) -> None:
        # Default shortcuts come from impasto.action, so users can change them in Krita's settings.
        apply = window.createAction("impasto_apply_style", "Apply Impasto style…", "tools/scripts")
        apply.triggered.connect(self.apply_with_dialog)
        again = window.createAction("impasto_apply_last", "Apply last Impasto style again", "tools/scripts")
        again.triggered.connect(lambda: _run_from_action(controller().apply_last))

    def apply_with_dialog(self) -> None:
        ctrl = controller()
        window = kritadoc.Krita.instance().activeWindow()
        dialog = StyleDialog(ctrl, window.qwindow() if window is not None else None)
        if not ctrl.styles:
            ctrl.refresh()  # the gallery fills in if the backend answers while the dialog is open
        if exec_dialog(dialog) == accepted():
            options = dialog.picker.options()
            _run_from_action(lambda: ctrl.apply(options))


class ImpastoDocker(kritadoc.DockWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Impasto")
        self.panel = DockerPanel(controller())
        self.setWidget(self.panel)

    def canvasChanged(self, canvas: Any) -> None:
        pass


def register() -> None:
    app = kritadoc.Krita.instance()
    app.addExtension(ImpastoExtension(app))
    app.addDockWidgetFactory(
        kritadoc.DockWidgetFactory("impasto_docker", kritadoc.DockWidgetFactoryBase.DockRight, ImpastoDocker)
    )
