"""Fakes of the Krita side, in one place for the tests/unit/test_krita_*.py files.

- A fake `krita` module (`install`) whose documents behave like Krita's API where the plugin relies on it:
  paint devices that extend anywhere (offsets, off-canvas), BGRA for integer depths, selections, one undo
  step per added node. kritadoc.py, the only module that imports `krita`, runs against it.
- `FakeDocuments`, a stand-in for kritadoc.KritaDocuments (the controller's way to the documents), and
  `FakeView`, a stand-in for the docker, which records what the controller shows.
"""

from __future__ import annotations

import importlib
import itertools
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest
from plugin_loader import NAME, load, load_common

DEPTH_BYTES = load_common().DEPTH_BYTES
formats = load("formats")

# -- the `krita` module --------------------------------------------------------------------------------

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


class QUuid:
    _ids = itertools.count(1)

    def __init__(self) -> None:
        self._text = f"{{{next(self._ids):08x}-0000-4000-8000-000000000000}}"

    def toString(self) -> str:  # noqa: N802 - Krita's (Qt's) name
        return self._text


class Node:
    def __init__(self, doc: Document, name: str, kind: str = "paintlayer", space: tuple | None = None,
                 ) -> None:
        self.doc, self._name, self.kind = doc, name, kind
        self._uuid = QUuid()
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
        return 4 * DEPTH_BYTES[self.space[1]]

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

    def uniqueId(self) -> QUuid:  # noqa: N802 - Krita's name
        return self._uuid

    def thumbnail(self, w: int, h: int) -> Any:
        """Like Krita's: the image's bounds scaled to w x h (nearest pixel here), 8-bit, as a QImage."""
        from plugin_loader import load

        qt = load("qt")
        data = bytearray()
        for j in range(h):
            for i in range(w):
                px = self.pixels.get((i * self.doc.w // w, j * self.doc.h // h), bytes(self.bpp()))
                data += px[:4] if self.space[1] == "U8" else bytes(4)
        return qt.image_from_bgra(bytes(data), w, h)

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
        self.annotations: dict[str, bytes] = {}
        self.file_name = ""
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

    def fileName(self) -> str:  # noqa: N802 - Krita's name
        return self.file_name

    def annotationTypes(self) -> list[str]:  # noqa: N802 - Krita's name
        return list(self.annotations)

    def annotation(self, kind: str) -> bytes:
        return self.annotations.get(kind, b"")

    def setAnnotation(self, kind: str, description: str, data: bytes) -> None:  # noqa: N802 - Krita's name
        self.annotations[kind] = bytes(data)

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


def install(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Make a fake `krita` importable and (re)import the plugin's kritadoc against it; returns kritadoc.
    Load the plugin package first (plugin_loader.load()), while `krita` is not importable, so that nothing
    registers with Krita."""
    fake = types.ModuleType("krita")
    for name in ("Krita", "Extension", "DockWidget", "DockWidgetFactory", "DockWidgetFactoryBase"):
        setattr(fake, name, type(name, (), {}))
    monkeypatch.setitem(sys.modules, "krita", fake)
    sys.modules.pop(f"{NAME}.kritadoc", None)
    return importlib.import_module(f"{NAME}.kritadoc")


def uninstall() -> None:
    sys.modules.pop(f"{NAME}.kritadoc", None)


# -- the controller's documents and views --------------------------------------------------------------

@dataclass
class FakeDocuments:
    """Stands in for kritadoc.KritaDocuments: one layer of 2x2 BGRA_U8 pixels."""

    selection: bytes | None = None
    unsupported: str = ""
    open: bool = True
    added: list[tuple[Any, bytes, str]] = field(default_factory=list)
    opened: list[tuple[Any, bytes, int, int]] = field(default_factory=list)
    names: list[str] = field(default_factory=lambda: ["Background"])
    layer_size: tuple[int, int] = (2, 2)  # what sizes() says Apply would send
    image_size: tuple[int, int] = (2, 2)
    layer: str = "node"  # the active layer; a result's name maps to its source in `sources`
    sources: dict[str, str] = field(default_factory=dict)
    reads: list[bool] = field(default_factory=list)  # from_source of each read_layer

    def _check(self) -> None:
        if self.unsupported:
            raise formats.UnsupportedDocument(self.unsupported)

    def _source(self, from_source: bool) -> str:
        return self.sources.get(self.layer, self.layer) if from_source else self.layer

    def read_layer(self, from_source=False):
        self._check()
        self.reads.append(from_source)
        data = bytes(range(16))
        node = self._source(from_source)
        return formats.LayerSnapshot("doc", node, formats.Rect(3, 4, 2, 2), "BGRA_U8", data, self.selection,
                                     self.layer, *((self.layer, node) if node != self.layer else ("", "")))

    def sizes(self, from_source=False):
        return (None if self.unsupported else self.layer_size), self.image_size

    def preview_key(self, from_source=False):
        return None if self.unsupported else (self._source(from_source), self.layer_size)

    def read_preview(self, long_side, from_source=False):
        self._check()
        return formats.PreviewSnapshot(bytes(range(16)), 2, 2, 1.0, self.preview_key(from_source))

    def layer_names(self, snap):
        return list(self.names)

    def add_layer(self, snap, data, name):
        if not self.open:
            raise formats.UnsupportedDocument("The image was closed before the result arrived.")
        self.added.append((snap, data, name))
        self.names.append(name)
        self.sources[name] = snap.node
        return name

    def layer_exists(self, doc, layer):
        return layer in self.names

    def is_open(self, doc):
        return self.open

    def read_image(self):
        return formats.ImageSnapshot("doc", formats.Rect(0, 0, 2, 2), "RGBA_F32_LINEAR", b"\0" * 64,
                                     "RGBA", "F32", "sRGB-elle-V2-g10.icc", 72.0, "img")

    def open_image(self, snap, data, w, h):
        self.opened.append((snap, data, w, h))
        return "new document"


class FakeView:
    def __init__(self) -> None:
        self.log: list[tuple] = []

    def __getattr__(self, name: str):
        return lambda *args: self.log.append((name, *args))

    def last(self, name: str) -> tuple:
        return [e for e in self.log if e[0] == name][-1]
