"""The Impasto docker: backend status, style gallery with live preview, Apply, Upscale, progress with
time left and Cancel, messages.

The layout holds still: everything below the gallery has a fixed height (the progress row keeps its
room while hidden, the message area has two lines and elides the rest into its tooltip), so a button
never moves under the pointer when a message or a state changes."""

from __future__ import annotations

from typing import Any

from impasto_common import FACTORS

from .backend_panel import BackendSetupPanel
from .controller import Controller
from .qt import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    Qt,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from .widgets import ElidedLabel, PreviewView, StylePicker

PREVIEW_HEIGHT = 180
NOT_CONNECTED = "The backend is not running: press Start, or open Backend settings."


class DockerPanel(QWidget):
    """The docker's contents; a View for the controller. Kept apart from the DockWidget subclass so it
    can be built (and screenshotted) without a Krita window."""

    def __init__(self, controller: Controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        s = controller.settings
        self._was_connected = False
        self._limit_problem = ""

        self.status_dot = QLabel("●")
        self.status = ElidedLabel(1)
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Run `impasto serve` with the Python set below; it stops with Krita")
        self.start_button.clicked.connect(self._start_backend)
        top = QHBoxLayout()
        top.addWidget(self.status_dot)
        top.addWidget(self.status, 1)
        top.addWidget(self.start_button)
        top_row = QWidget()
        top_row.setLayout(top)
        top.setContentsMargins(0, 0, 0, 0)
        top_row.setFixedHeight(self.start_button.sizeHint().height())  # Start coming and going moves nothing

        # -- backend settings: one block ------------------------------------------------------------
        self.address = QLineEdit(s.address)
        self.token = QLineEdit(s.token)
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
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
        # Folded at the start and again whenever a backend starts answering: the gallery deserves the
        # room. The artist opens it; nothing else does.
        self.backend_toggle = QToolButton()
        self.backend_toggle.setText("Backend settings")
        self.backend_toggle.setCheckable(True)
        self.backend_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.backend_toggle.setAutoRaise(True)
        self.backend_toggle.toggled.connect(self._fold)
        self.backend_toggle.setChecked(False)
        self._fold(False)
        # -- end of backend settings ----------------------------------------------------------------

        self.picker = StylePicker()
        self.picker.set_options(s.options)
        self.picker.changed.connect(self._options_changed)
        self.preview = PreviewView()
        self.preview.setFixedHeight(PREVIEW_HEIGHT)
        self.preview.clicked.connect(self._options_changed)
        self.picker.add_below_gallery(self.preview)
        self.live = QCheckBox("Live preview")
        self.live.setToolTip("Preview the style on a reduced copy of the layer as you change the settings")
        self.live.setChecked(s.live_preview)
        self.live.toggled.connect(self._live_toggled)
        self.from_source = QCheckBox("Restyle results from their original")
        self.from_source.setToolTip("When the active layer is an Impasto result, stylize the layer it was "
                                    "made from, so styles replace each other instead of stacking")
        self.from_source.setChecked(s.from_source)
        self.from_source.toggled.connect(lambda on: controller.update_settings(from_source=on))
        checks = QHBoxLayout()
        checks.addWidget(self.live)
        checks.addWidget(self.from_source, 1)

        self.apply_button = QPushButton("Apply")
        self.apply_button.clicked.connect(self._apply)
        self.scale = QComboBox()
        for factor in FACTORS:
            self.scale.addItem(f"×{factor}", factor)
        self.scale.setCurrentIndex(FACTORS.index(s.upscale))
        self.scale.currentIndexChanged.connect(lambda *_: self._enable())
        self.upscale_button = QPushButton("Upscale")
        self.upscale_button.clicked.connect(self._upscale)
        actions = QHBoxLayout()
        actions.addWidget(self.apply_button, 1)
        actions.addWidget(self.scale)
        actions.addWidget(self.upscale_button)

        self.progress_label = ElidedLabel(1)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setFormat("%p%")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(controller.cancel)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        self.progress_box = QWidget()
        box = QVBoxLayout(self.progress_box)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.progress_label)
        box.addLayout(progress_row)
        policy = self.progress_box.sizePolicy()
        policy.setRetainSizeWhenHidden(True)  # idle or busy, the rows around it stay where they are
        policy.setVerticalPolicy(QSizePolicy.Policy.Fixed)
        self.progress_box.setSizePolicy(policy)
        self.message_label = ElidedLabel(2)

        layout = QVBoxLayout(self)
        layout.addWidget(top_row)
        layout.addWidget(self.backend_toggle)
        layout.addWidget(self.backend_fields)
        layout.addWidget(self.picker, 1)
        layout.addLayout(checks)
        layout.addLayout(actions)
        layout.addWidget(self.progress_box)
        layout.addWidget(self.message_label)
        self.preview.setVisible(s.live_preview)
        self.show_busy(False, "")
        controller.add_view(self)
        # Krita deletes the docker's widgets with its window; the controller must stop talking to them.
        self.destroyed.connect(lambda *_: controller.remove_view(self))

    # -- user actions -------------------------------------------------------------------------------

    def _fold(self, open_: bool) -> None:
        self.backend_toggle.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)
        self.backend_fields.setVisible(open_)

    def _save_backend_fields(self) -> None:
        self.controller.update_settings(address=self.address.text().strip(), token=self.token.text().strip(),
                                        interpreter=self.interpreter.text().strip())

    def _connect(self) -> None:
        self._save_backend_fields()
        self.controller.connect()

    def _start_backend(self) -> None:
        self._save_backend_fields()  # a Python typed into the field counts without pressing Connect
        self.controller.start_backend()

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

    def _options_changed(self) -> None:
        self.controller.request_preview(self.picker.options())
        self._check_limits()
        self._enable()

    def _live_toggled(self, on: bool) -> None:
        self.controller.update_settings(live_preview=on)
        self.preview.setVisible(on)
        if on:
            self._options_changed()

    # -- View ---------------------------------------------------------------------------------------

    def show_status(self, connected: bool | None, text: str) -> None:
        colour = {True: "#3a3", False: "#c33", None: "#999"}[connected]
        self.status_dot.setStyleSheet(f"color: {colour}")
        self.status_dot.setToolTip(text)
        self.status.set_full_text(text)
        self.start_button.setVisible(not connected and not self.controller.server.running)
        if connected and not self._was_connected:
            self.backend_toggle.setChecked(False)  # set up: the gallery gets the room back
        self._was_connected = bool(connected)
        self._enable()

    def show_models(self, styles: list[Any], upscalers: list[Any], operations: tuple[str, ...]) -> None:
        self.picker.set_styles(styles, self.controller.settings.style)
        self.picker.set_refine_available("refine" in operations)

    def show_busy(self, busy: bool, text: str) -> None:
        self.progress_box.setVisible(busy)
        self.cancel_button.setEnabled(busy and text != "Cancelling…")
        if busy:
            self.progress_label.set_full_text(text)
        if busy and text != "Cancelling…":
            self.progress.setRange(0, 0)  # indeterminate until the first fraction arrives
        self._enable()

    def show_progress(self, stage: str, fraction: float, position: int) -> None:
        pass  # show_activity has it in words

    def show_activity(self, text: str, percent: int | None) -> None:
        if self.cancel_button.isEnabled():  # not after Cancel: "Cancelling…" stays until it has
            self.progress_label.set_full_text(text)
        if percent is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 100)
            self.progress.setValue(percent)

    def show_message(self, text: str, error: bool = False) -> None:
        self.message_label.setStyleSheet("color: #d33" if error else "")
        self.message_label.set_full_text(text)

    def show_limits(self) -> None:
        model = self.scale.model()
        choices = self.controller.upscale_choices()
        for i, choice in enumerate(choices):
            item = model.item(i)
            item.setEnabled(choice.enabled)
            item.setToolTip(choice.reason)
        if choices and not choices[self.scale.currentIndex()].enabled:
            usable = [i for i, c in enumerate(choices) if c.enabled]
            if usable:
                self.scale.setCurrentIndex(usable[-1])
        reasons = [c.reason for c in choices if not c.enabled]
        self.scale.setToolTip("\n".join(reasons) or "How much larger the new document is")
        self._check_limits()
        self._enable()

    def show_preview(self, image: tuple[bytes, int, int] | None, text: str) -> None:
        self.preview.set_image(image, text)
        self.preview.setToolTip(f"{text}\nA reduced copy of the layer; the document is not changed. "
                                "Click to preview again." if image is not None else text)

    # -- state --------------------------------------------------------------------------------------

    def _check_limits(self) -> None:
        """Say once (and take down when no longer true) why the layer cannot be stylized as set."""
        scale = self.picker.options().scale
        problem = self.controller.stylize_problem(scale)
        if problem and problem != self._limit_problem:
            ctrl = self.controller
            ctrl.message(problem, error=True, valid=lambda: ctrl.stylize_problem(self.picker.options().scale)
                         == problem)
        self._limit_problem = problem

    def _enable(self) -> None:
        ctrl = self.controller
        idle, connected = not ctrl.busy, ctrl.connected is True
        why_not = "" if connected else NOT_CONNECTED
        apply_why = why_not or self._limit_problem or ("" if ctrl.styles else "The backend offers no styles.")
        self.apply_button.setEnabled(idle and not apply_why)
        self.apply_button.setToolTip(apply_why or "Stylize the active layer (or the selection) into a new "
                                                  "layer above it")
        choices = ctrl.upscale_choices()
        index = self.scale.currentIndex()
        choice = choices[index] if 0 <= index < len(choices) else None
        upscale_why = why_not or (choice.reason if choice is not None and not choice.enabled else "")
        self.upscale_button.setEnabled(idle and not upscale_why)
        self.upscale_button.setToolTip(upscale_why or "Upscale the image (or the selection) into a new document")
