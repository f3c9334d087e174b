"""The document adapter (kritadoc.py) against a fake `krita` module that behaves like Krita's API:
paint devices that extend anywhere (offsets, off-canvas), BGRA for integer depths, selections."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

import pytest
from plugin_loader import NAME, load

load()  # the package first, while `krita` is not importable, so nothing registers with Krita
formats = load("formats")


class QRect:
    def __init__(self, x: int, y: int, w: int, h: int) -> None:
        self._r = (x, y, w, h)

    def x(self) -> int:
        return self._r[0]

    def y(self) -> int:
        return self._r[1]

    def width(self) -> int:
        return self._r[2]

    def height(self) -> int:
        return self._r[3]


class Node:
    def __init__(self, doc: Document, name: str, kind: str = "paintlayer", space: tuple | None = None,
                 ) -> None:
        self.doc, self._name, self.kind = doc, name, kind
        self.space = space or (doc.model, doc.depth, doc.profile)
        self.pixels: dict[tuple[int, int], bytes] = {}  # (x, y) -> one pixel, sparse like a paint device
        self.children: list[Node] = []
        self.parent: Node | None = None
        self.writes = 0

    def name(self) -> str:
        return self._name

    def type(self) -> str:
        return self.kind

    def colorModel(self) -> str:
        return self.space[0]

    def colorDepth(self) -> str:
        return self.space[1]

    def colorProfile(self) -> str:
        return self.space[2]

    def bpp(self) -> int:
        return 4 * {"U8": 1, "U16": 2, "F16": 2, "F32": 4}[self.space[1]]

    def setPixelData(self, data: bytes, x: int, y: int, w: int, h: int) -> None:
        self.writes += 1
        n = self.bpp()
        for j in range(h):
            for i in range(w):
                k = (j * w + i) * n
                self.pixels[(x + i, y + j)] = bytes(data[k:k + n])

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:
        blank = bytes(self.bpp())
        return b"".join(self.pixels.get((x + i, y + j), blank) for j in range(h) for i in range(w))

    def bounds(self) -> QRect:
        if not self.pixels:
            return QRect(0, 0, 0, 0)
        xs = [p[0] for p in self.pixels]
        ys = [p[1] for p in self.pixels]
        return QRect(min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1)

    def parentNode(self) -> Node | None:
        return self.parent

    def childNodes(self) -> list[Node]:
        return list(self.children)

    def addChildNode(self, child: Node, above: Node | None) -> bool:
        self.doc.undo.append(("add", child))  # Krita 5: one undoable "Add Layer" step
        child.parent = self
        index = self.children.index(above) + 1 if above is not None else len(self.children)
        self.children.insert(index, child)
        return True

    def remove(self) -> bool:
        assert self.parent is not None
        self.parent.children.remove(self)
        return True


class Selection:
    def __init__(self, x: int, y: int, w: int, h: int, value: int = 255) -> None:
        self.r, self.value = (x, y, w, h), value

    def x(self) -> int:
        return self.r[0]

    def y(self) -> int:
        return self.r[1]

    def width(self) -> int:
        return self.r[2]

    def height(self) -> int:
        return self.r[3]

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:
        sx, sy, sw, sh = self.r
        return bytes(self.value if sx <= x + i < sx + sw and sy <= y + j < sy + sh else 0
                     for j in range(h) for i in range(w))


class Document:
    def __init__(self, w: int, h: int, name: str, model: str, depth: str, profile: str, res: float) -> None:
        self.w, self.h, self._name, self.res = w, h, name, res
        self.model, self.depth, self.profile = model, depth, profile
        self.root = Node(self, "root", "grouplayer")
        self._selection: Selection | None = None
        self.undo: list[Any] = []
        bg = Node(self, "Background")
        bg.setPixelData(b"\xff" * (bg.bpp() * w * h), 0, 0, w, h)
        self.root.addChildNode(bg, None)
        self.undo.clear()

    def __eq__(self, other: object) -> bool:
        return self is other

    def name(self) -> str:
        return self._name

    def width(self) -> int:
        return self.w

    def height(self) -> int:
        return self.h

    def resolution(self) -> float:
        return self.res

    def colorModel(self) -> str:
        return self.model

    def colorDepth(self) -> str:
        return self.depth

    def colorProfile(self) -> str:
        return self.profile

    def rootNode(self) -> Node:
        return self.root

    def selection(self) -> Selection | None:
        return self._selection

    def createNode(self, name: str, kind: str) -> Node:
        return Node(self, name, kind)

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:
        return self.root.children[-1].pixelData(x, y, w, h)  # the top layer stands in for the projection

    def refreshProjection(self) -> None:
        pass

    def waitForDone(self) -> None:
        pass


class App:
    def __init__(self) -> None:
        self.docs: list[Document] = []

    def createDocument(self, *args: Any) -> Document:
        doc = Document(*args)
        self.docs.append(doc)
        return doc

    def documents(self) -> list[Document]:
        return list(self.docs)

    def activeWindow(self) -> None:
        return None


@pytest.fixture
def kritadoc(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    fake = types.ModuleType("krita")
    for name in ("Krita", "Extension", "DockWidget", "DockWidgetFactory", "DockWidgetFactoryBase"):
        setattr(fake, name, type(name, (), {}))
    monkeypatch.setitem(sys.modules, "krita", fake)
    sys.modules.pop(f"{NAME}.kritadoc", None)
    module = importlib.import_module(f"{NAME}.kritadoc")
    yield module
    sys.modules.pop(f"{NAME}.kritadoc", None)


def setup_doc(depth: str = "U8", model: str = "RGBA", profile: str = "") -> tuple[App, Document, Node]:
    app = App()
    doc = app.createDocument(8, 6, "img", model, depth, profile, 72.0)
    layer = Node(doc, "Paint")
    n = layer.bpp()
    layer.setPixelData(bytes((i * 7) % 256 for i in range(4 * 3 * n)), 2, 1, 4, 3)
    doc.root.addChildNode(layer, doc.root.children[0])
    doc.undo.clear()
    return app, doc, layer


def test_read_layer_reads_its_bounds_in_krita_layout(kritadoc: Any) -> None:
    app, doc, layer = setup_doc("U16", profile="sRGB-elle-V2-srgbtrc.icc")
    snap = kritadoc.KritaDocuments(app, lambda: (doc, layer)).read_layer()
    assert snap.rect == formats.Rect(2, 1, 4, 3) and snap.pixel_format == "BGRA_U16"
    assert snap.data == layer.pixelData(2, 1, 4, 3) and snap.selection is None


def test_offset_layer_beyond_the_canvas(kritadoc: Any) -> None:
    app, doc, layer = setup_doc()
    layer.setPixelData(b"\x01\x02\x03\x04" * 4, -3, -2, 2, 2)  # off the top-left corner
    layer.setPixelData(b"\x05\x06\x07\x08", 11, 9, 1, 1)  # off the bottom-right corner
    docs = kritadoc.KritaDocuments(app, lambda: (doc, layer))
    snap = docs.read_layer()
    assert snap.rect == formats.Rect(-3, -2, 15, 12)
    result = bytes(255 - b for b in snap.data)
    new = docs.add_layer(snap, result, "Wave")
    assert new.pixelData(-3, -2, 15, 12) == result


def test_selection_bounds_and_mask(kritadoc: Any) -> None:
    app, doc, layer = setup_doc()
    doc._selection = Selection(3, 2, 10, 10, 200)
    snap = kritadoc.KritaDocuments(app, lambda: (doc, layer)).read_layer()
    assert snap.rect == formats.Rect(3, 2, 3, 2)  # the layer's bounds cut by the selection's
    assert snap.selection == bytes([200] * 6)
    doc._selection = Selection(50, 50, 2, 2)
    with pytest.raises(formats.UnsupportedDocument, match="selection"):
        kritadoc.KritaDocuments(app, lambda: (doc, layer)).read_layer()


def test_new_layer_above_source_in_one_undo_step_original_untouched(kritadoc: Any) -> None:
    app, doc, layer = setup_doc("F32", profile="sRGB-elle-V2-g10.icc")
    top = Node(doc, "Top")
    doc.root.addChildNode(top, layer)
    doc.undo.clear()
    docs = kritadoc.KritaDocuments(app, lambda: (doc, layer))
    snap = docs.read_layer()
    assert snap.pixel_format == "RGBA_F32_LINEAR"
    before, writes = dict(layer.pixels), layer.writes
    new = docs.add_layer(snap, bytes(len(snap.data)), "Udnie")
    assert [n.name() for n in doc.root.children] == ["Background", "Paint", "Udnie", "Top"]
    assert len(doc.undo) == 1 and doc.undo[0] == ("add", new)  # pixels were in before the add
    assert layer.pixels == before and layer.writes == writes
    assert docs.layer_names(snap) == ["Background", "Paint", "Udnie", "Top"]


def test_closed_document_is_not_written(kritadoc: Any) -> None:
    app, doc, layer = setup_doc()
    docs = kritadoc.KritaDocuments(app, lambda: (doc, layer))
    snap = docs.read_layer()
    app.docs.remove(doc)
    with pytest.raises(formats.UnsupportedDocument, match="closed"):
        docs.add_layer(snap, snap.data, "x")
    assert [n.name() for n in doc.root.children] == ["Background", "Paint"]


@pytest.mark.parametrize(("model", "word"), [("CMYKA", "CMYK"), ("LABA", "Lab"), ("GRAYA", "Grayscale")])
def test_other_colour_models_are_refused_clearly(kritadoc: Any, model: str, word: str) -> None:
    app, doc, layer = setup_doc(model=model)
    with pytest.raises(formats.UnsupportedDocument, match=word):
        kritadoc.KritaDocuments(app, lambda: (doc, layer)).read_layer()
    with pytest.raises(formats.UnsupportedDocument, match=word):
        kritadoc.KritaDocuments(app, lambda: (doc, layer)).read_image()


def test_wrong_targets(kritadoc: Any) -> None:
    app, doc, layer = setup_doc()
    with pytest.raises(formats.UnsupportedDocument, match="Open an image"):
        kritadoc.KritaDocuments(app, lambda: (None, None)).read_layer()
    group = Node(doc, "Group", "grouplayer")
    with pytest.raises(formats.UnsupportedDocument, match="paint layer"):
        kritadoc.KritaDocuments(app, lambda: (doc, group)).read_layer()
    empty = Node(doc, "Empty")
    with pytest.raises(formats.UnsupportedDocument, match="empty"):
        kritadoc.KritaDocuments(app, lambda: (doc, empty)).read_layer()
    odd = Node(doc, "Odd", space=("RGBA", "U16", "sRGB-elle-V2-g10.icc"))
    odd.setPixelData(bytes(8), 0, 0, 1, 1)
    with pytest.raises(formats.UnsupportedDocument, match="colour space differs"):
        kritadoc.KritaDocuments(app, lambda: (doc, odd)).read_layer()


def test_upscale_reads_the_image_and_opens_a_new_document(kritadoc: Any) -> None:
    app, doc, layer = setup_doc()
    docs = kritadoc.KritaDocuments(app, lambda: (doc, layer))
    snap = docs.read_image()
    assert snap.rect == formats.Rect(0, 0, 8, 6) and snap.pixel_format == "BGRA_U8"
    new = docs.open_image(snap, bytes(16 * 12 * 4), 16, 12)
    assert (new.width(), new.height(), new.colorDepth(), new.name()) == (16, 12, "U8", "img ×2")
    assert [n.name() for n in new.root.children] == ["Upscaled"]
    assert len(app.docs) == 2 and [n.name() for n in doc.root.children] == ["Background", "Paint"]
