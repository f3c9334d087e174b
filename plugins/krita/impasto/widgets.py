"""Qt widgets shared by the docker and the "Apply Impasto style…" dialog (no Krita imports)."""

from __future__ import annotations

import math
from typing import Any

from impasto_common import BRUSH, REFINE, STRENGTH, brush_to_scale, scale_to_brush

from .qt import (
    QCheckBox,
    QFontMetrics,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QIcon,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPixmap,
    QSize,
    QSizePolicy,
    QSlider,
    QSpinBox,
    Qt,
    QVBoxLayout,
    QWidget,
    image_from_bgra,
    pyqtSignal,
)
from .settings import StyleOptions

THUMB = 72
BRUSH_STEPS = 4  # slider steps per doubling of the brush size


def _percent(fraction: float) -> int:
    """The strength and brush sliders count percent."""
    return round(fraction * 100)


def _brush_step(brush: float) -> int:
    return round(BRUSH_STEPS * math.log2(brush))


def model_icon(model: Any) -> QIcon:
    pixmap = QPixmap()
    if not model.thumbnail_png or not pixmap.loadFromData(model.thumbnail_png):
        pixmap = QPixmap(THUMB, THUMB)
        pixmap.fill(Qt.GlobalColor.gray)  # a plain tile rather than a broken image for models without a preview
    return QIcon(pixmap.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                               Qt.TransformationMode.SmoothTransformation))


def elide_lines(metrics: Any, text: str, width: int, lines: int) -> str:
    """`text` word-wrapped into at most `lines` lines of `width` pixels, the last one elided with "…"."""
    out: list[str] = []
    rest = " ".join(text.split())
    while rest and len(out) < lines - 1:
        words = rest.split(" ")
        line = words[0]
        taken = 1
        for word in words[1:]:
            if metrics.horizontalAdvance(f"{line} {word}") > width:
                break
            line, taken = f"{line} {word}", taken + 1
        if metrics.horizontalAdvance(line) > width:  # one long word: let the last line elide it
            break
        out.append(line)
        rest = " ".join(words[taken:])
    if rest:
        out.append(metrics.elidedText(rest, Qt.TextElideMode.ElideRight, width))
    return "\n".join(out)


class ElidedLabel(QLabel):
    """A label of a fixed number of lines: longer text is elided and shown whole in the tooltip, so a
    message changing length never moves the widgets around it."""

    def __init__(self, lines: int = 1, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lines = lines
        self.full_text = ""
        self.setWordWrap(False)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setFixedHeight(QFontMetrics(self.font()).lineSpacing() * lines + 4)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)

    def set_full_text(self, text: str) -> None:
        self.full_text = text
        self._elide()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = elide_lines(QFontMetrics(self.font()), self.full_text, max(20, self.width() - 4), self.lines)
        self.setText(shown)
        self.setToolTip(self.full_text if shown.replace("\n", " ") != " ".join(self.full_text.split()) else "")


class PreviewView(QLabel):
    """The live preview: the stylized reduced copy, scaled to the space it has, with a caption below.
    A click asks for a new preview (after painting on the layer, say)."""

    clicked = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image: Any = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(64, 64)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setToolTip("Live preview on a reduced copy of the layer; the document is not changed. "
                        "Click to preview again.")

    def set_image(self, image: tuple[bytes, int, int] | None, text: str) -> None:
        self.image = image_from_bgra(*image) if image is not None else None
        self.setText("" if self.image is not None else text)
        self._fit()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fit()

    def mousePressEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self.clicked.emit()

    def _fit(self) -> None:
        if self.image is None:
            self.setPixmap(QPixmap())
            return
        pixmap = QPixmap.fromImage(self.image)
        self.setPixmap(pixmap.scaled(self.size() - QSize(4, 4), Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.SmoothTransformation))


class StylePicker(QWidget):
    """Gallery of styles with thumbnails, strength, brush size, preserve colours and (when offered)
    refinement. `changed` fires on any change, for the live preview."""

    changed = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(THUMB, THUMB))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)  # the grid reflows with the docker's width
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setWordWrap(True)
        self.gallery.setGridSize(QSize(THUMB + 28, THUMB + 40))
        self.gallery.setSpacing(2)
        self.gallery.setMinimumHeight(THUMB + 48)
        self.gallery.setUniformItemSizes(True)
        self.strength = QSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(_percent(STRENGTH.low), _percent(STRENGTH.high))
        self.strength_label = QLabel()
        self.strength.valueChanged.connect(lambda v: self.strength_label.setText(f"{v}%"))
        self.strength.setValue(_percent(STRENGTH.default))
        self.strength.setToolTip("Blend the styled result with the original: 100% is the full style")
        # Brush size: the inverse of the backend's processing scale, on a doubling scale.
        self.brush = QSlider(Qt.Orientation.Horizontal)
        self.brush.setRange(_brush_step(BRUSH.low), _brush_step(BRUSH.high))
        self.brush.setPageStep(BRUSH_STEPS)
        self.brush_label = QLabel()
        self.brush.valueChanged.connect(lambda v: self.brush_label.setText(f"{_percent(self.brush_size)}%"))
        self.brush.setValue(0)
        self.brush_label.setText("100%")
        self.brush.setToolTip("Size of the style's strokes on the layer: larger paints bolder strokes, "
                              "smaller a finer texture (the layer is processed at 1/size)")
        for label in (self.strength_label, self.brush_label):
            label.setMinimumWidth(QFontMetrics(label.font()).horizontalAdvance("400%") + 4)
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
        brush_row = QHBoxLayout()
        brush_row.addWidget(self.brush)
        brush_row.addWidget(self.brush_label)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Strength", strength_row)
        form.addRow("Brush size", brush_row)
        form.addRow(self.refine_label, self.refine)
        self.options_box = QWidget()
        options_layout = QVBoxLayout(self.options_box)
        options_layout.setContentsMargins(0, 0, 0, 0)
        options_layout.addLayout(form)
        options_layout.addWidget(self.preserve)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.addWidget(self.gallery, 1)
        self._layout.addWidget(self.options_box)
        self.set_refine_available(False)
        self.gallery.currentItemChanged.connect(lambda *_: self.changed.emit())
        self.strength.valueChanged.connect(lambda *_: self.changed.emit())
        self.brush.valueChanged.connect(lambda *_: self.changed.emit())
        self.preserve.toggled.connect(lambda *_: self.changed.emit())

    def add_below_gallery(self, widget: QWidget) -> None:
        """The docker's live preview goes between the gallery and the options."""
        self._layout.insertWidget(1, widget)

    @property
    def brush_size(self) -> float:
        return float(2.0 ** (self.brush.value() / BRUSH_STEPS))

    def set_refine_available(self, available: bool) -> None:
        self.refine.setVisible(available)
        self.refine_label.setVisible(available)

    def set_styles(self, styles: list[Any], selected: str) -> None:
        self.gallery.blockSignals(True)  # one `changed` for the whole refill, not one per item
        self.gallery.clear()
        for model in styles:
            item = QListWidgetItem(model_icon(model), model.display_name or model.name)
            item.setData(Qt.ItemDataRole.UserRole, model.name)
            tip = model.description or model.display_name
            if model.attribution:
                tip += f"\n{model.attribution}"
            item.setToolTip(tip)
            self.gallery.addItem(item)
            if model.name == selected:
                self.gallery.setCurrentItem(item)
        if self.gallery.currentItem() is None and self.gallery.count():
            self.gallery.setCurrentRow(0)
        self.gallery.blockSignals(False)
        self.changed.emit()

    def set_options(self, options: StyleOptions) -> None:
        self.strength.setValue(_percent(options.strength))
        self.preserve.setChecked(options.preserve_colors)
        self.refine.setValue(options.refine)
        self.brush.setValue(_brush_step(scale_to_brush(options.scale)))

    def options(self) -> StyleOptions:
        item = self.gallery.currentItem()
        style = item.data(Qt.ItemDataRole.UserRole) if item is not None else ""
        # The controller sends 0 anyway when the backend does not offer refinement.
        strength = self.strength.value() / 100.0
        return StyleOptions(style, strength, self.preserve.isChecked(), self.refine.value(),
                            brush_to_scale(self.brush_size))
