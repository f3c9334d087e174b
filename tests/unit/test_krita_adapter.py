"""The document adapter (kritadoc.py) against the fake `krita` module in fake_krita.py, which behaves like
Krita's API: paint devices that extend anywhere (offsets, off-canvas), BGRA for integer depths, selections."""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from typing import Any

import fake_krita
import pytest
from fake_krita import App, Document, Node, Selection
from plugin_loader import load

load()  # the package first, while `krita` is not importable, so nothing registers with Krita
formats = load("formats")


@pytest.fixture
def kritadoc(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    yield fake_krita.install(monkeypatch)
    fake_krita.uninstall()


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
    assert [n.name() for n in new.root.children] == ["img ×2"]
    assert len(app.docs) == 2 and [n.name() for n in doc.root.children] == ["Background", "Paint"]


def test_upscaled_document_is_named_after_the_file(kritadoc: Any) -> None:
    app, doc, layer = setup_doc()
    doc.file_name = "/home/artist/photos/photo.final.jpg"
    docs = kritadoc.KritaDocuments(app, lambda: (doc, layer))
    new = docs.open_image(docs.read_image(), bytes(16 * 12 * 4), 16, 12)
    assert new.name() == "photo.final ×2"
    doc.file_name, doc._name = "", ""  # a new image, never saved, without a title
    assert docs.read_image().name == "Untitled"


def test_a_result_remembers_its_source_and_restyling_reads_the_source(kritadoc: Any) -> None:
    app, doc, layer = setup_doc()
    active = [layer]
    docs = kritadoc.KritaDocuments(app, lambda: (doc, active[0]))
    first = docs.add_layer(docs.read_layer(True), bytes(4 * 3 * 4), "Udnie")
    active[0] = first  # Krita makes the new layer the active one
    again = docs.read_layer(from_source=True)
    assert again.node is layer and again.above is first
    assert (again.result_of, again.source_name) == ("Udnie", "Paint")
    assert again.data == layer.pixelData(2, 1, 4, 3)
    second = docs.add_layer(again, bytes(4 * 3 * 4), "Wave")
    assert [n.name() for n in doc.root.children] == ["Background", "Paint", "Udnie", "Wave"]
    active[0] = second  # a result of a result still leads to the original
    assert docs.read_layer(from_source=True).node is layer
    assert docs.read_layer(from_source=False).node is second  # the artist turned it off
    # The map lives in the document (saved in the .kra), so a reopened document still knows.
    assert kritadoc.source_of(doc, second) is layer
    assert json.loads(doc.annotation(kritadoc.SOURCES)) == {
        kritadoc.uuid_of(first): kritadoc.uuid_of(layer), kritadoc.uuid_of(second): kritadoc.uuid_of(layer)}
    layer.remove()  # the source is gone: the result itself is what there is to stylize
    assert docs.read_layer(from_source=True).node is second


def test_layer_exists_until_undo_takes_it_out(kritadoc: Any) -> None:
    app, doc, layer = setup_doc()
    docs = kritadoc.KritaDocuments(app, lambda: (doc, layer))
    new = docs.add_layer(docs.read_layer(), bytes(4 * 3 * 4), "Udnie")
    assert docs.layer_exists(doc, new)
    new.remove()  # what Undo of "Add Layer" does to the tree
    assert not docs.layer_exists(doc, new)
    app.docs.remove(doc)
    assert not docs.layer_exists(doc, layer)


def test_sizes_say_what_would_be_sent_without_reading_pixels(kritadoc: Any) -> None:
    app, doc, layer = setup_doc()
    docs = kritadoc.KritaDocuments(app, lambda: (doc, layer))
    assert docs.sizes() == ((4, 3), (8, 6))
    doc._selection = Selection(3, 2, 10, 10)
    assert docs.sizes() == ((3, 2), (5, 4))
    assert kritadoc.KritaDocuments(app, lambda: (None, None)).sizes() == (None, None)


def test_preview_reads_a_reduced_8_bit_copy(kritadoc: Any) -> None:
    app = App()
    doc = app.createDocument(40, 20, "img", "RGBA", "U8", "", 72.0)
    layer = doc.root.children[0]
    layer.setPixelData(b"\x10\x20\x30\xff" * 40 * 20, 0, 0, 40, 20)
    docs = kritadoc.KritaDocuments(app, lambda: (doc, layer))
    snap = docs.read_preview(10)
    assert (snap.width, snap.height, snap.shrink) == (10, 5, 0.25)
    assert snap.data == b"\x10\x20\x30\xff" * 50  # BGRA, as Krita's 8-bit layers and the wire have it
    assert snap.key == docs.preview_key() and layer.writes == 2  # the background fill and ours: read only
