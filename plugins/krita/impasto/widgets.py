"""Qt widgets shared by the docker and the "Apply Impasto style…" dialog (no Krita imports)."""

from __future__ import annotations

from typing import Any

from impasto_common import REFINE, STRENGTH
from PyQt5.QtCore import QSize, Qt
from PyQt5.QtGui import QIcon, QPixmap
from PyQt5.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .settings import StyleOptions

THUMB = 72


def _percent(fraction: float) -> int:
    """The strength slider counts percent."""
    return round(fraction * 100)


def model_icon(model: Any) -> QIcon:
    pixmap = QPixmap()
    if not model.thumbnail_png or not pixmap.loadFromData(model.thumbnail_png):
        pixmap = QPixmap(THUMB, THUMB)
        pixmap.fill(Qt.gray)  # a plain tile rather than a broken image for models without a preview
    return QIcon(pixmap.scaled(THUMB, THUMB, Qt.KeepAspectRatio, Qt.SmoothTransformation))


class StylePicker(QWidget):
    """Gallery of styles with thumbnails, strength, preserve colours and (when offered) refinement."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListView.IconMode)
        self.gallery.setIconSize(QSize(THUMB, THUMB))
        self.gallery.setResizeMode(QListView.Adjust)
        self.gallery.setMovement(QListView.Static)
        self.gallery.setWordWrap(True)
        self.gallery.setGridSize(QSize(THUMB + 28, THUMB + 40))
        self.gallery.setSpacing(2)
        self.gallery.setMinimumHeight(THUMB + 48)
        self.strength = QSlider(Qt.Horizontal)
        self.strength.setRange(_percent(STRENGTH.low), _percent(STRENGTH.high))
        self.strength_label = QLabel()
        self.strength.valueChanged.connect(lambda v: self.strength_label.setText(f"{v}%"))
        self.strength.setValue(_percent(STRENGTH.default))
        self.preserve = QCheckBox("Preserve colours")
        self.preserve.setToolTip("Transfer the style's brushwork but keep the layer's own colours")
        self.refine = QSpinBox()
        self.refine.setRange(int(REFINE.low), int(REFINE.high))
        self.refine.setSingleStep(10)
        self.refine.setSpecialValueText("off")
        self.refine.setToolTip("Gatys optimisation steps after the fast pass: sharper, much slower")
        self.refine_label = QLabel("Refinement")

        strength_row = QHBoxLayout()
        strength_row.addWidget(self.strength)
        strength_row.addWidget(self.strength_label)
        form = QFormLayout()
        form.addRow("Strength", strength_row)
        form.addRow(self.refine_label, self.refine)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.gallery, 1)
        layout.addLayout(form)
        layout.addWidget(self.preserve)
        self.set_refine_available(False)

    def set_refine_available(self, available: bool) -> None:
        self.refine.setVisible(available)
        self.refine_label.setVisible(available)

    def set_styles(self, styles: list[Any], selected: str) -> None:
        self.gallery.clear()
        for model in styles:
            item = QListWidgetItem(model_icon(model), model.display_name or model.name)
            item.setData(Qt.UserRole, model.name)
            tip = model.description or model.display_name
            if model.attribution:
                tip += f"\n{model.attribution}"
            item.setToolTip(tip)
            self.gallery.addItem(item)
            if model.name == selected:
                self.gallery.setCurrentItem(item)
        if self.gallery.currentItem() is None and self.gallery.count():
            self.gallery.setCurrentRow(0)

    def set_options(self, options: StyleOptions) -> None:
        self.strength.setValue(_percent(options.strength))
        self.preserve.setChecked(options.preserve_colors)
        self.refine.setValue(options.refine)

    def options(self) -> StyleOptions:
        item = self.gallery.currentItem()
        style = item.data(Qt.UserRole) if item is not None else ""
        # The controller sends 0 anyway when the backend does not offer refinement.
        strength = self.strength.value() / 100.0
        return StyleOptions(style, strength, self.preserve.isChecked(), self.refine.value())
