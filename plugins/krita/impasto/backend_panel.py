"""The docker's "Install backend" part, inside Backend settings: the Qt face of backend_setup.py.

Install makes (or updates) the private environment and then starts the backend from it; Remove stops that
backend and deletes the environment. Progress, the current step and pip's output show here while it runs;
the whole log stays in backend-setup.log beside the environment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .backend_setup import DONE, ERROR, LINE, PROGRESS, WANT, BackendSetup
from .qt import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTimer,
    QToolButton,
    QVBoxLayout,
    QWidget,
)


class BackendSetupPanel(QWidget):
    """`set_interpreter(path)` tells the docker which Python now runs the backend ("" after removal)."""

    def __init__(self, controller: Any, set_interpreter: Callable[[str], None],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.set_interpreter = set_interpreter
        self.setup = BackendSetup()
        self._action = ""
        s = controller.settings

        self.source = QLineEdit(s.install_source)
        self.source.setPlaceholderText("the package index, or a .whl / folder")
        self.source.setToolTip("Where Impasto comes from: empty for the package index; a wheel file, a source "
                               "folder, or a folder of wheels (used first, the index for the rest)")
        browse = QToolButton()
        browse.setText("…")
        browse.clicked.connect(self._browse)
        source_row = QHBoxLayout()
        source_row.addWidget(self.source, 1)
        source_row.addWidget(browse)
        self.system_python = QLineEdit(s.setup_python)
        self.system_python.setPlaceholderText(f"found on this computer (Python {WANT})")
        self.system_python.setToolTip(f"A Python {WANT} installed on this computer; it makes the backend's own "
                                      "environment (Krita's Python cannot)")
        self.install_button = QPushButton("Install backend")
        self.install_button.clicked.connect(self._install_or_cancel)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Stop the backend started from it and delete its environment")
        self.remove_button.clicked.connect(self._remove)
        self.log_toggle = QToolButton()
        self.log_toggle.setText("Log")
        self.log_toggle.setCheckable(True)
        self.log_toggle.toggled.connect(lambda on: self.log.setVisible(on))
        buttons = QHBoxLayout()
        buttons.addWidget(self.install_button, 1)
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.log_toggle)
        self.step = QLabel()
        self.step.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setMaximumHeight(160)  # the gallery below keeps its room
        self.log.setVisible(False)

        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Install from", source_row)
        form.addRow("System Python", self.system_python)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.step)
        layout.addWidget(self.progress)
        layout.addWidget(self.log)
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._poll)
        self._show_state()

    # -- actions --------------------------------------------------------------------------------------

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Impasto wheel", self.source.text(), "Wheels (*.whl)")
        if path:
            self.source.setText(path)

    def _install_or_cancel(self) -> None:
        if self.setup.running:
            self.setup.cancel()
            self.step.setText("Cancelling…")
            return
        source, python = self.source.text().strip(), self.system_python.text().strip()
        self.controller.update_settings(install_source=source, setup_python=python)
        self.setup = BackendSetup(python=python, source=source)
        self._begin("install")

    def _remove(self) -> None:
        answer = QMessageBox.question(self, "Remove the Impasto backend",
                                      f"Stop the backend and delete {self.setup.env_dir}? Installing it again "
                                      "downloads everything again.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        if self.controller.settings.interpreter == self.setup.interpreter:
            self.controller.server.stop()  # its files cannot go while it runs (Windows)
        self._begin("remove")

    def _begin(self, action: str) -> None:
        self._action = action
        self.log.clear()
        self.progress.setValue(0)
        getattr(self.setup, action)()
        self.timer.start()
        self._show_state()

    def _poll(self) -> None:
        for event in self.setup.poll():
            if event.kind == LINE:
                self.log.appendPlainText(event.text)
            elif event.kind == PROGRESS:
                self.step.setText(event.text)
                self.progress.setValue(round(event.fraction * 100))
            elif event.kind in (DONE, ERROR):
                self.log.appendPlainText(event.text)
                self._finished(event.kind == DONE, event.text)

    def _finished(self, ok: bool, text: str) -> None:
        self.timer.stop()
        self._action = ""
        interpreter = self.setup.interpreter
        if ok and self.setup.installed:
            self.set_interpreter(interpreter)
            self.controller.update_settings(interpreter=interpreter)
            self.controller.start_backend()
        elif ok and self.controller.settings.interpreter == interpreter:  # removed
            self.set_interpreter("")
            self.controller.update_settings(interpreter="")
        if not ok:
            self.log_toggle.setChecked(True)  # the error's context is in the output
        self.controller.message(text, error=not ok)
        self._show_state()

    def _show_state(self) -> None:
        busy = bool(self._action)
        self.install_button.setText("Cancel" if busy else
                                    "Update backend" if self.setup.installed else "Install backend")
        self.remove_button.setEnabled(not busy and self.setup.installed)
        self.source.setEnabled(not busy)
        self.system_python.setEnabled(not busy)
        self.progress.setVisible(busy)
        self.step.setVisible(busy)
