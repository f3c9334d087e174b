"""The document adapter: the only module that imports `krita`.

Reads the active layer or the visible image into snapshots and writes results back as a new layer or a
new document. Call it only on the GUI thread.

Each result layer is remembered with the layer it was made from, in a document annotation (saved in the
.kra) mapping node UUIDs, so that stylizing a result can stylize its source instead: styles then replace
each other rather than stack. Krita's Python API has no per-node metadata; annotations and UUIDs it has."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import krita
from impasto_common import UPSCALE, Rect, layer_name

from .formats import ImageSnapshot, LayerSnapshot, PreviewSnapshot, UnsupportedDocument, wire_format

# Re-exported so the docker and the extension can subclass them without importing krita themselves.
Krita = krita.Krita
Extension = krita.Extension
DockWidget = krita.DockWidget
DockWidgetFactory = krita.DockWidgetFactory
DockWidgetFactoryBase = krita.DockWidgetFactoryBase

Target = Callable[[], tuple[Any, Any]]  # () -> (document, node)
SOURCES = "impasto-sources"  # the annotation: {result layer UUID: UUID of the layer it was made from}


def _rect(qrect: Any) -> Rect:
    return Rect(qrect.x(), qrect.y(), qrect.width(), qrect.height())


def read_setting(group: str, name: str, default: str) -> str:
    return str(Krita.instance().readSetting(group, name, default))


def write_setting(group: str, name: str, value: str) -> None:
    Krita.instance().writeSetting(group, name, value)


def on_application_closing(callback: Callable[[], None]) -> None:
    Krita.instance().notifier().applicationClosing.connect(callback)


def _walk(node: Any) -> Iterator[Any]:
    for child in node.childNodes():
        yield child
        yield from _walk(child)


def uuid_of(node: Any) -> str:
    return str(node.uniqueId().toString())


def _sources(doc: Any) -> dict[str, str]:
    if SOURCES not in doc.annotationTypes():
        return {}
    try:
        found = json.loads(bytes(doc.annotation(SOURCES)).decode("utf-8"))
    except ValueError:  # damaged by hand: forget it rather than fail
        return {}
    return found if isinstance(found, dict) else {}


def _remember(doc: Any, result: Any, source: Any) -> None:
    sources = _sources(doc)
    alive = {uuid_of(n) for n in _walk(doc.rootNode())} | {uuid_of(result)}
    sources = {r: s for r, s in sources.items() if r in alive}  # forget deleted results
    sources[uuid_of(result)] = uuid_of(source)
    doc.setAnnotation(SOURCES, "Impasto: the layer each result was made from",
                      json.dumps(sources).encode("utf-8"))


def source_of(doc: Any, node: Any) -> Any:
    """The layer an Impasto result `node` was made from, when both are still in the document; else None."""
    wanted = _sources(doc).get(uuid_of(node))
    if not wanted:
        return None
    return next((n for n in _walk(doc.rootNode()) if uuid_of(n) == wanted), None)


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

    def _layer(self, from_source: bool) -> tuple[Any, Any, Any, str]:
        """(document, layer to read, layer the result goes above, result layer's name or "")."""
        doc, node = self.target()
        if doc is None:
            raise UnsupportedDocument("Open an image first.")
        if node is None or node.type() != "paintlayer":
            kind = node.type() if node is not None else "nothing"
            raise UnsupportedDocument(f"Select a paint layer to stylize (the active layer is {kind}).")
        source = source_of(doc, node) if from_source else None
        if source is not None and source.type() == "paintlayer":
            return doc, source, node, node.name()
        return doc, node, node, ""

    def _layer_rect(self, doc: Any, node: Any) -> Rect:
        rect = _rect(node.bounds())  # paint-device bounds: can lie off the canvas, offsets included
        if rect.empty:
            raise UnsupportedDocument("The active layer is empty.")
        selection = doc.selection()
        if selection is not None:
            rect = rect.intersect(Rect(selection.x(), selection.y(), selection.width(), selection.height()))
            if rect.empty:
                raise UnsupportedDocument("The selection does not cover any pixels of the active layer.")
        return rect

    def read_layer(self, from_source: bool = False) -> LayerSnapshot:
        """The active layer's pixels (or those inside the selection); with `from_source`, those of the
        layer the active one was made from when it is an Impasto result."""
        doc, node, above, result_of = self._layer(from_source)
        fmt = wire_format(node.colorModel(), node.colorDepth(), node.colorProfile())
        if (node.colorModel(), node.colorDepth(), node.colorProfile()) != (
            doc.colorModel(), doc.colorDepth(), doc.colorProfile()
        ):
            raise UnsupportedDocument(
                "This layer's colour space differs from the image's; convert the layer "
                "(Layer ▸ Convert ▸ Convert Layer Color Space…) to match the image first."
            )
        rect = self._layer_rect(doc, node)
        selection = doc.selection()
        mask = None
        if selection is not None:
            mask = bytes(selection.pixelData(rect.x, rect.y, rect.width, rect.height))
        data = bytes(node.pixelData(rect.x, rect.y, rect.width, rect.height))
        return LayerSnapshot(doc, node, rect, fmt, data, mask, above, result_of,
                             node.name() if result_of else "")

    def sizes(self, from_source: bool = False) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """(width, height) of what Apply and Upscale would send now, each None when there is nothing to
        send. Cheap: no pixels are read."""
        try:
            doc, node, _, _ = self._layer(from_source)
            rect = self._layer_rect(doc, node)
            layer: tuple[int, int] | None = (rect.width, rect.height)
        except UnsupportedDocument:
            layer = None
        try:
            image_rect = self._image_rect(self.target()[0])
            image: tuple[int, int] | None = (image_rect.width, image_rect.height)
        except UnsupportedDocument:
            image = None
        return layer, image

    def read_preview(self, long_side: int, from_source: bool = False) -> PreviewSnapshot:
        """A reduced copy of the layer Apply would stylize, its long side at most `long_side` pixels, from
        Krita's own thumbnail (fast at any size; 8-bit sRGB whatever the layer's depth)."""
        from .qt import image_to_bgra  # here, so the rest of this module loads without Qt (unit tests)

        doc, node, _, _ = self._layer(from_source)
        w, h = doc.width(), doc.height()
        shrink = min(1.0, long_side / max(w, h))
        tw, th = max(1, round(w * shrink)), max(1, round(h * shrink))
        data, tw, th = image_to_bgra(node.thumbnail(tw, th))
        return PreviewSnapshot(data, tw, th, shrink, self.preview_key(from_source))

    def preview_key(self, from_source: bool = False) -> object:
        """Changes when the preview would show another layer (or another size of it); None without one."""
        try:
            doc, node, _, _ = self._layer(from_source)
        except UnsupportedDocument:
            return None
        return (uuid_of(node), doc.width(), doc.height(), _rect(node.bounds()))

    def layer_exists(self, doc: Any, layer: Any) -> bool:
        """Whether `layer` is still in `doc` (Undo takes an added layer out of the tree)."""
        if not self.is_open(doc):
            return False
        wanted = uuid_of(layer)
        return any(uuid_of(n) == wanted for n in _walk(doc.rootNode()))

    def layer_names(self, snap: LayerSnapshot) -> list[str]:
        above: Any = snap.above or snap.node
        parent = above.parentNode() or snap.doc.rootNode()
        return [n.name() for n in parent.childNodes()]

    def add_layer(self, snap: LayerSnapshot, data: bytes, name: str) -> Any:
        """Add `data` as a new paint layer just above the snapshot's layer (or the result it was read
        for), in one undoable step: the pixels go in before the layer joins the image, so undoing "Add
        Layer" removes all of it."""
        doc = snap.doc
        if not self.is_open(doc):
            raise UnsupportedDocument("The image was closed before the result arrived.")
        layer = doc.createNode(name, "paintlayer")
        r = snap.rect
        layer.setPixelData(data, r.x, r.y, r.width, r.height)
        _remember(doc, layer, snap.node)  # before it joins the image, so one Undo is still all of it
        above: Any = snap.above or snap.node
        parent = above.parentNode() or doc.rootNode()
        parent.addChildNode(layer, above)
        doc.refreshProjection()
        return layer

    @staticmethod
    def _image_rect(doc: Any) -> Rect:
        if doc is None:
            raise UnsupportedDocument("Open an image first.")
        rect = Rect(0, 0, doc.width(), doc.height())
        selection = doc.selection()
        if selection is not None:
            rect = rect.intersect(Rect(selection.x(), selection.y(), selection.width(), selection.height()))
            if rect.empty:
                raise UnsupportedDocument("The selection lies outside the image.")
        return rect

    def read_image(self) -> ImageSnapshot:
        doc, _node = self.target()
        rect = self._image_rect(doc)
        fmt = wire_format(doc.colorModel(), doc.colorDepth(), doc.colorProfile())
        doc.waitForDone()  # the projection must be up to date before we read it
        data = bytes(doc.pixelData(rect.x, rect.y, rect.width, rect.height))
        return ImageSnapshot(doc, rect, fmt, data, doc.colorModel(), doc.colorDepth(), doc.colorProfile(),
                             float(doc.resolution()), document_title(doc))

    def open_image(self, snap: ImageSnapshot, data: bytes, width: int, height: int) -> Any:
        scale = width // max(1, snap.rect.width)
        name = layer_name(snap.name, UPSCALE, scale)
        new = self.app.createDocument(width, height, name, snap.color_model, snap.depth, snap.profile,
                                      snap.resolution)
        layer = new.createNode(name, "paintlayer")
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


def document_title(doc: Any) -> str:
    """What the artist calls the image: its file's name without the extension ("photo" for photo.jpg),
    else the document's title (a new, unsaved image), else "Untitled"."""
    path = str(doc.fileName() or "")
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem or str(doc.name() or "") or "Untitled"
