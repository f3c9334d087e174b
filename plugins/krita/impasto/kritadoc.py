"""The document adapter: the only module that imports `krita`.

Reads the active layer or the visible image into snapshots and writes results back as a new layer or a
new document. Call it only on the GUI thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import krita
from impasto_common import Rect

from .formats import ImageSnapshot, LayerSnapshot, UnsupportedDocument, wire_format

# Re-exported so the docker and the extension can subclass them without importing krita themselves.
Krita = krita.Krita
Extension = krita.Extension
DockWidget = krita.DockWidget
DockWidgetFactory = krita.DockWidgetFactory
DockWidgetFactoryBase = krita.DockWidgetFactoryBase

Target = Callable[[], tuple[Any, Any]]  # () -> (document, node)


def _rect(qrect: Any) -> Rect:
    return Rect(qrect.x(), qrect.y(), qrect.width(), qrect.height())


def read_setting(group: str, name: str, default: str) -> str:
    return str(Krita.instance().readSetting(group, name, default))


def write_setting(group: str, name: str, value: str) -> None:
    Krita.instance().writeSetting(group, name, value)


def on_application_closing(callback: Callable[[], None]) -> None:
    Krita.instance().notifier().applicationClosing.connect(callback)


class KritaDocuments:
    """`target` picks the document and layer to work on; by default the active ones. Headless callers
    (kritarunner has no window, hence no active document) pass their own."""

    def __init__(self, app: Any = None, target: Target | None = None) -> None:
        self.app = app or Krita.instance()
        self.target = target or self._active

    def _active(self) -> tuple[Any, Any]:
        doc = self.app.activeDocument()
        return doc, (doc.activeNode() if doc is not None else None)

    def is_open(self, doc: Any) -> bool:
        return any(d == doc for d in self.app.documents())

    def read_layer(self) -> LayerSnapshot:
        doc, node = self.target()
        if doc is None:
            raise UnsupportedDocument("Open an image first.")
        if node is None or node.type() != "paintlayer":
            kind = node.type() if node is not None else "nothing"
            raise UnsupportedDocument(f"Select a paint layer to stylize (the active layer is {kind}).")
        fmt = wire_format(node.colorModel(), node.colorDepth(), node.colorProfile())
        if (node.colorModel(), node.colorDepth(), node.colorProfile()) != (
            doc.colorModel(), doc.colorDepth(), doc.colorProfile()
        ):
            raise UnsupportedDocument(
                "This layer's colour space differs from the image's; convert the layer "
                "(Layer ▸ Convert ▸ Convert Layer Color Space…) to match the image first."
            )
        rect = _rect(node.bounds())  # paint-device bounds: can lie off the canvas, offsets included
        if rect.empty:
            raise UnsupportedDocument("The active layer is empty.")
        selection = doc.selection()
        mask = None
        if selection is not None:
            rect = rect.intersect(Rect(selection.x(), selection.y(), selection.width(), selection.height()))
            if rect.empty:
                raise UnsupportedDocument("The selection does not cover any pixels of the active layer.")
            mask = bytes(selection.pixelData(rect.x, rect.y, rect.width, rect.height))
        data = bytes(node.pixelData(rect.x, rect.y, rect.width, rect.height))
        return LayerSnapshot(doc, node, rect, fmt, data, mask)

    def layer_names(self, snap: LayerSnapshot) -> list[str]:
        parent = snap.node.parentNode() or snap.doc.rootNode()
        return [n.name() for n in parent.childNodes()]

    def add_layer(self, snap: LayerSnapshot, data: bytes, name: str) -> Any:
        """Add `data` as a new paint layer just above the snapshot's layer, in one undoable step: the
        pixels go in before the layer joins the image, so undoing "Add Layer" removes all of it."""
        doc = snap.doc
        if not self.is_open(doc):
            raise UnsupportedDocument("The image was closed before the result arrived.")
        layer = doc.createNode(name, "paintlayer")
        r = snap.rect
        layer.setPixelData(data, r.x, r.y, r.width, r.height)
        parent = snap.node.parentNode() or doc.rootNode()
        parent.addChildNode(layer, snap.node)
        doc.refreshProjection()
        return layer

    def read_image(self) -> ImageSnapshot:
        doc, _node = self.target()
        if doc is None:
            raise UnsupportedDocument("Open an image first.")
        fmt = wire_format(doc.colorModel(), doc.colorDepth(), doc.colorProfile())
        rect = Rect(0, 0, doc.width(), doc.height())
        selection = doc.selection()
        if selection is not None:
            rect = rect.intersect(Rect(selection.x(), selection.y(), selection.width(), selection.height()))
            if rect.empty:
                raise UnsupportedDocument("The selection lies outside the image.")
        doc.waitForDone()  # the projection must be up to date before we read it
        data = bytes(doc.pixelData(rect.x, rect.y, rect.width, rect.height))
        return ImageSnapshot(doc, rect, fmt, data, doc.colorModel(), doc.colorDepth(), doc.colorProfile(),
                             float(doc.resolution()), doc.name() or "Untitled")

    def open_image(self, snap: ImageSnapshot, data: bytes, width: int, height: int) -> Any:
        scale = width // max(1, snap.rect.width)
        new = self.app.createDocument(width, height, f"{snap.name} ×{scale}", snap.color_model, snap.depth,
                                      snap.profile, snap.resolution)
        layer = new.createNode("Upscaled", "paintlayer")
        layer.setPixelData(data, 0, 0, width, height)
        root = new.rootNode()
        for child in root.childNodes():  # drop the white background createDocument adds
            child.remove()
        root.addChildNode(layer, None)
        new.refreshProjection()
        window = self.app.activeWindow()
        if window is not None:
            window.addView(new)
        return new
