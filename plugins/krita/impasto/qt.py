"""The plugin's one way to Qt: PyQt6 in a Qt6-based Krita (6.x), PyQt5 in Krita 5.

Krita 6 embeds PyQt6 and refuses plugins that import PyQt5, while Krita 5 has only PyQt5. Every other
module imports Qt names from here. The rest of the plugin spells enums fully scoped
(`Qt.AlignmentFlag.AlignLeft`), which PyQt6 requires and PyQt5 5.11+ accepts, so the differences left
to paper over are few: which package, `exec` vs `exec_`, and QImage <-> bytes.

Which binding: $IMPASTO_QT_API ("PyQt5" or "PyQt6") when set (tests); otherwise what Krita says it is
built on (`pykrita.qt_major_version()`, Krita 5.3 and 6); otherwise the one Krita already loaded (its
`krita` package imports its binding before any plugin); otherwise PyQt5 if it imports, else PyQt6. Krita
6 makes importing PyQt5 raise, and a PyQt6 installed beside Krita 5 must not be picked: loading a
second Qt into Krita's process crashes it."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


def _choose() -> str:
    wanted = os.environ.get("IMPASTO_QT_API", "")
    if wanted in ("PyQt5", "PyQt6"):
        return wanted
    try:
        import pykrita  # Krita's own module, there only inside Krita

        return "PyQt6" if int(pykrita.qt_major_version()) >= 6 else "PyQt5"
    except (ImportError, AttributeError, TypeError, ValueError):
        pass  # not in Krita, or a Krita before 5.3 (always Qt5)
    for name in ("PyQt6", "PyQt5"):
        if name in sys.modules:
            return name
    try:
        importlib.import_module("PyQt5.QtCore")
    except ImportError:
        return "PyQt6"
    return "PyQt5"


QT_API = _choose()
if QT_API == "PyQt6":
    from PyQt6 import QtCore, QtGui, QtWidgets
else:
    from PyQt5 import QtCore, QtGui, QtWidgets  # type: ignore[no-redef]

QT_MAJOR = int(QtCore.QT_VERSION_STR.split(".")[0])

# -- the names the plugin uses ---------------------------------------------------------------------------
Qt = QtCore.Qt
QObject = QtCore.QObject
QSize = QtCore.QSize
QTimer = QtCore.QTimer
pyqtSignal = QtCore.pyqtSignal

QColor = QtGui.QColor
QFontMetrics = QtGui.QFontMetrics
QIcon = QtGui.QIcon
QImage = QtGui.QImage
QPainter = QtGui.QPainter
QPixmap = QtGui.QPixmap

QApplication = QtWidgets.QApplication
QCheckBox = QtWidgets.QCheckBox
QComboBox = QtWidgets.QComboBox
QDialog = QtWidgets.QDialog
QDialogButtonBox = QtWidgets.QDialogButtonBox
QFileDialog = QtWidgets.QFileDialog
QFormLayout = QtWidgets.QFormLayout
QFrame = QtWidgets.QFrame
QHBoxLayout = QtWidgets.QHBoxLayout
QLabel = QtWidgets.QLabel
QLineEdit = QtWidgets.QLineEdit
QListView = QtWidgets.QListView
QListWidget = QtWidgets.QListWidget
QListWidgetItem = QtWidgets.QListWidgetItem
QMessageBox = QtWidgets.QMessageBox
QPlainTextEdit = QtWidgets.QPlainTextEdit
QProgressBar = QtWidgets.QProgressBar
QProgressDialog = QtWidgets.QProgressDialog
QPushButton = QtWidgets.QPushButton
QSizePolicy = QtWidgets.QSizePolicy
QSlider = QtWidgets.QSlider
QSpinBox = QtWidgets.QSpinBox
QToolButton = QtWidgets.QToolButton
QVBoxLayout = QtWidgets.QVBoxLayout
QWidget = QtWidgets.QWidget


def exec_dialog(dialog: Any) -> int:
    """Run a modal dialog: `exec()` in PyQt6 (and recent PyQt5), `exec_()` in old PyQt5."""
    run = getattr(dialog, "exec", None) or dialog.exec_
    return int(run())


def accepted() -> int:
    return int(QDialog.DialogCode.Accepted)


def image_to_bgra(image: Any) -> tuple[bytes, int, int]:
    """A QImage's pixels as (bytes, width, height) in BGRA_U8 order: Format_ARGB32 is 0xAARRGGBB per
    pixel, which little-endian memory holds as B, G, R, A. Its rows have no padding (4 bytes a pixel)."""
    image = image.convertToFormat(QImage.Format.Format_ARGB32)
    bits = image.constBits()
    bits.setsize(image.sizeInBytes())
    return bytes(bits), image.width(), image.height()


def image_from_bgra(data: bytes, width: int, height: int) -> Any:
    """A QImage holding a copy of BGRA_U8 `data` (the copy lets the bytes go away)."""
    return QImage(data, width, height, 4 * width, QImage.Format.Format_ARGB32).copy()
