"""The Impasto docker: backend status, style gallery, Apply, Upscale, progress with Cancel, messages."""

from __future__ import annotations

from typing import Any

from impasto_common import FACTORS, LOADING, QUEUED
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .backend_panel import BackendSetupPanel
from .controller import Controller
from .widgets import StylePicker

STAGES = {QUEUED: "Waiting in the queue", LOADING: "Loading the model", "stylize": "Stylizing",
          "upscale": "Upscaling", "refine": "Refining", "receive": "Receiving", "send": "Sending"}


class DockerPanel(QWidget):
    """The docker's contents; a View for the controller. Kept apart from the DockWidget subclass so it
    can be built (and screenshotted) without a Krita window."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        s = controller.settings

        self.status_dot = QLabel("●")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Run `impasto serve` with the Python set below; it stops with Krita")
        self.start_button.clicked.connect(controller.start_backend)
        top = QHBoxLayout()
        top.addWidget(self.status_dot)
        top.addWidget(self.status, 1)
        top.addWidget(self.start_button)

        self.address = QLineEdit(s.address)
        self.token = QLineEdit(s.token)
        self.token.setEchoMode(QLineEdit.Password)
        self.token.setPlaceholderText("only for a remote backend")
        self.interpreter = QLineEdit(s.interpreter)
        self.interpreter.setPlaceholderText("python with impasto installed")
        browse = QToolButton()
        browse.setText("…")
        browse.clicked.connect(self._browse)
        interp_row = QHBoxLayout()
        interp_row.addWidget(self.interpreter, 1)
        interp_row.addWidget(browse)
        connect = QPushButton("Connect")
        connect.clicked.connect(self._connect)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Address", self.address)
        form.addRow("Token", self.token)
        form.addRow("Python", interp_row)
        form.addRow("", connect)
        # A private environment with Impasto, made from here: no terminal needed (backend_panel.py).
        self.setup_panel = BackendSetupPanel(controller, self.interpreter.setText)
        form.addRow(self.setup_panel)
        self.backend_fields = QWidget()
        self.backend_fields.setLayout(form)
        # Folded away once the backend is set up: the gallery deserves the room.
        self.backend_toggle = QToolButton()
        self.backend_toggle.setText("Backend settings")
        self.backend_toggle.setCheckable(True)
        self.backend_toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.backend_toggle.setAutoRaise(True)
        self.backend_toggle.toggled.connect(self._fold)
        self.backend_toggle.setChecked(not s.interpreter)
        self._fold(self.backend_toggle.isChecked())

        self.picker = StylePicker()
        self.picker.set_options(s.options)
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("Stylize the active layer (or the selection) into a new layer above it")
        self.apply_button.clicked.connect(self._apply)
        self.scale = QComboBox()
        for factor in FACTORS:
            self.scale.addItem(f"×{factor}", factor)
        self.scale.setCurrentIndex(FACTORS.index(s.upscale))
        self.upscale_button = QPushButton("Upscale")
        self.upscale_button.setToolTip("Upscale the image (or the selection) into a new document")
        self.upscale_button.clicked.connect(self._upscale)
        actions = QHBoxLayout()
        actions.addWidget(self.apply_button, 1)
        actions.addWidget(self.scale)
        actions.addWidget(self.upscale_button)

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setFormat("%p%")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(controller.cancel)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        self.progress_label = QLabel()
        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.backend_toggle)
        layout.addWidget(self.backend_fields)
        layout.addWidget(self.picker, 1)
        layout.addLayout(actions)
        layout.addWidget(self.progress_label)
        layout.addLayout(progress_row)
        layout.addWidget(self.message_label)
        self.show_busy(False, "")
        controller.add_view(self)

    # -- user actions -------------------------------------------------------------------------------

    def _fold(self, open_: bool) -> None:
        self.backend_toggle.setArrowType(Qt.DownArrow if open_ else Qt.RightArrow)
        self.backend_fields.setVisible(open_)

    def _save_backend_fields(self) -> None:
        self.controller.update_settings(address=self.address.text().strip(), token=self.token.text().strip(),
                                        interpreter=self.interpreter.text().strip())

    def _connect(self) -> None:
        self._save_backend_fields()
        self.controller.connect()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Python with Impasto installed", self.interpreter.text())
        if path:
            self.interpreter.setText(path)
            self._save_backend_fields()

    def _apply(self) -> None:
        self._save_backend_fields()
        self.controller.apply(self.picker.options())

    def _upscale(self) -> None:
        self._save_backend_fields()
        self.controller.upscale(int(self.scale.currentData()))

    # -- View ---------------------------------------------------------------------------------------

    def show_status(self, connected: bool | None, text: str) -> None:
        colour = {True: "#3a3", False: "#c33", None: "#999"}[connected]
        self.status_dot.setStyleSheet(f"color: {colour}")
        self.status.setText(text)
        self.start_button.setVisible(not connected and not self.controller.server.running)
        self._enable()

    def show_models(self, styles: list[Any], upscalers: list[Any], operations: tuple[str, ...]) -> None:
        self.picker.set_styles(styles, self.controller.settings.style)
        self.picker.set_refine_available("refine" in operations)

    def show_busy(self, busy: bool, text: str) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        self.cancel_button.setEnabled(busy and text != "Cancelling…")
        self.progress_label.setVisible(busy)
        self.progress_label.setText(text)
        if busy and text != "Cancelling…":
            self.progress.setRange(0, 0)  # indeterminate until the first progress event
        self._enable()

    def show_progress(self, stage: str, fraction: float, position: int) -> None:
        label = STAGES.get(stage, stage.capitalize())
        if stage == QUEUED and position:
            label += f" ({position} ahead)"
        self.progress_label.setText(label + "…")
        self.progress.setRange(0, 100)
        self.progress.setValue(round(fraction * 100))

    def show_message(self, text: str, error: bool = False) -> None:
        self.message_label.setStyleSheet("color: #d33" if error else "")
        self.message_label.setText(text)

    def _enable(self) -> None:
        # Left enabled while disconnected: pressing them then says why nothing happened.
        idle = not self.controller.busy
        self.apply_button.setEnabled(idle)
        self.upscale_button.setEnabled(idle)
