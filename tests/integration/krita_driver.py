"""Runs inside real Krita: `kritarunner -s krita_driver -f main` (see test_krita.py).

Reads a JSON spec from $IMPASTO_KRITA_SPEC, builds tiny documents, drives the *installed* plugin's
controller and document adapter exactly as the docker does (apply, then poll until the job ends), and
writes what it saw to the spec's output folder: JSON facts plus raw pixel files for the test to compare
with the backend's answer through the Python client."""

import gc
import importlib
import json
import os
import struct
import sys
import time
import traceback


def pattern(width, height, depth):
    """Deterministic pixels with varied alpha, as bytes in Krita's layout for `depth`."""
    values = []
    for y in range(height):
        for x in range(width):
            c = ((x * 37 + y * 11) % 256, (x * 5 + y * 29) % 256, (x * y * 3) % 256, 128 + (x + y) % 128)
            values.append(c)
    if depth == "U8":
        return bytes(v for c in values for v in c)
    if depth == "U16":
        return b"".join(struct.pack("<4H", *(v * 257 for v in c)) for c in values)
    fmt = "<4f" if depth == "F32" else "<4e"
    return b"".join(struct.pack(fmt, *(v / 255.0 for v in c)) for c in values)


MARK = {"save": None}  # main() sets it: mark(step) records how far a case got, in case Krita dies


def mark(step):
    if MARK["save"] is not None:
        MARK["save"](step)


OPEN = []  # documents kept open to the end of the run


def close_open():
    """Closed before the run returns: a wrapper Python still holds at Krita's exit crashes it."""
    while OPEN:
        OPEN.pop().close()
    gc.collect()


def real_sized_document(app, out):
    """An open 1024x768 painted document, kept for the whole run, as a user has one.

    When fewer than 100 tiles are in memory, Krita 5.1/5.2 purge their tile memory pools
    (KisTileData::releaseInternalPools, from a freed paint device's deferred event) and can do so while
    saveAs or openDocument, which handle events as they wait, have a worker thread copying tiles: the
    copy reads freed memory (seen in gdb: SIGSEGV in duplicateTileData under saveAs on 5.1.5, about 1
    run in 10; a glibc heap abort in openDocument on 5.2.9). Only tiny images get there (a tile is
    64x64). With this image open (192 tiles in its layer alone) Krita never takes that path, and the
    driver's 24x16 documents save as a user's would."""
    doc, _ = new_document(app, {"name": "ballast", "depth": "U8", "size": [1024, 768]}, out)
    return doc


def write(out, name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes(data))


def rect_of(r):
    return [r.x(), r.y(), r.width(), r.height()]


def imports(spec):
    """Which copy of each dependency the installed plugin picked up."""
    # The plugin package (from the pykrita folder on PYTHONPATH) first: it puts _vendor on sys.path.
    impasto = importlib.import_module("impasto")
    import google.protobuf
    import grpclib
    import impasto_client
    import impasto_common
    from google.protobuf.internal import api_implementation

    client = impasto_client.ImpastoClient("127.0.0.1:1")
    qt = importlib.import_module("impasto.qt")
    from krita import Krita

    return {
        "krita": Krita.instance().version(),
        "qt": f"{qt.QT_API} {qt.QtCore.PYQT_VERSION_STR} on Qt {qt.QtCore.QT_VERSION_STR}",
        "plugin": impasto.__file__,
        "impasto_client": impasto_client.__file__,
        "impasto_common": impasto_common.__file__,
        "grpclib": grpclib.__file__,
        "protobuf": google.protobuf.__file__,
        "protobuf_impl": api_implementation.Type(),
        "client_address": client.address,
        "python": sys.version.split()[0],
    }


class Recorder:
    """A View that writes down what the controller shows (plain values only; a preview as its size)."""

    def __init__(self, messages):
        self.messages = messages

    def show_preview(self, image, text):
        self.messages.append(["show_preview", list(image[1:]) if image else None, text])
        self.preview = image

    def __getattr__(self, attr):
        plain = (str, bool, float, int)
        return lambda *args: self.messages.append([attr] + [a if isinstance(a, plain) else None for a in args])


def new_document(app, case, out):
    """A document with one "Paint" layer holding the test pattern (or, for "limits", only the white
    background Krita adds); saved as photo.kra when the case says so."""
    w, h = case.get("size", [24, 16])
    doc = app.createDocument(w, h, case["name"], case.get("model", "RGBA"), case["depth"], "", 72.0)
    root = doc.rootNode()
    if case.get("op") == "limits":
        return doc, root.childNodes()[0]
    layer = doc.createNode("Paint", "paintlayer")
    root.addChildNode(layer, None)
    lw, lh = case.get("layer_size", [w, h])
    if case.get("model", "RGBA") == "RGBA":
        layer.setPixelData(pattern(lw, lh, case["depth"]), 0, 0, lw, lh)
    if "offset" in case:
        layer.move(*case["offset"])
    if "selection" in case:
        from krita import Selection

        sel = Selection()
        sel.select(*case["selection"], 255)
        doc.setSelection(sel)
    if case.get("save_as"):
        doc.saveAs(os.path.join(out, case["save_as"]))
    doc.waitForDone()
    return doc, layer


def scenario(app, case, address, out):
    """One case: a fresh document, the installed plugin's controller and adapter, what happened."""
    from impasto.controller import Controller
    from impasto.kritadoc import KritaDocuments
    from impasto.settings import StyleOptions

    name = case["name"]
    doc, layer = new_document(app, case, out)
    root = doc.rootNode()
    bounds = layer.bounds()
    before = bytes(layer.pixelData(*rect_of(bounds)))
    store = {}
    active = [layer]  # what Krita's active layer would be: the result, after an Apply
    docs = KritaDocuments(app, target=lambda: (doc, active[0]))
    ctrl = Controller(docs, lambda g, n, d: store.get((g, n), d),
                      lambda g, n, v: store.__setitem__((g, n), v))
    ctrl.update_settings(address=address)
    ctrl.wait(60)  # the gallery is filled before the user can press Apply
    messages = []
    view = Recorder(messages)
    ctrl.add_view(view)
    names_before = [n.name() for n in root.childNodes()]
    snap = None
    facts = {}
    op = case.get("op", "apply")
    if op == "cancel":
        # A long job (Gatys refinement), cancelled once the backend reports it is working on it.
        snap = docs.read_layer()
        started = ctrl.apply(StyleOptions(case["style"], 1.0, False, 400))
        end = time.monotonic() + 60
        while ctrl.busy and time.monotonic() < end:
            if any(m[0] == "show_progress" and m[1] == "refine" for m in messages):
                break
            time.sleep(0.02)
            ctrl.poll()
        facts["busy_at_cancel"] = ctrl.busy
        ctrl.cancel()
    elif op == "apply":
        try:
            snap = docs.read_layer()
        except Exception as exc:  # noqa: BLE001 - the unsupported-document message is what we check
            messages.append(["read_layer", str(exc)])
        applied_at = time.monotonic()  # from Apply to the new layer (benchmarks/krita_apply.py reads it)
        started = ctrl.apply(StyleOptions(case["style"], 1.0, False, 0, case.get("scale", 1.0)))
    elif op == "restyle":
        started = restyle(ctrl, docs, doc, layer, active, case, out, facts)
        snap = docs.read_layer()
    elif op == "preview":
        started = preview(ctrl, docs, view, case, out, facts)
    elif op == "limits":
        started = limits(ctrl, case, facts, messages)
    else:
        opened = []
        open_image = docs.open_image
        docs.open_image = lambda *a: opened.append(open_image(*a))  # keep the new document to inspect it
        image = docs.read_image()
        write(out, f"{name}.input", image.data)
        started = ctrl.upscale(case["scale"])
    cancel_t = time.monotonic()
    finished = ctrl.wait(case.get("timeout", 120))
    if op == "apply":
        facts["seconds"] = round(time.monotonic() - applied_at, 3)
    # No worker thread may outlive the case, and no Krita object may be left in a reference cycle: the
    # garbage collector would free it later on whatever thread it runs on, and Krita crashes.
    ctrl.shutdown()
    if op == "cancel":
        facts["seconds_to_stop"] = round(time.monotonic() - cancel_t, 2)
    doc.waitForDone()
    children = root.childNodes()
    facts.update({
        "started": started, "finished": finished, "messages": messages,
        "names_before": names_before, "names_after": [n.name() for n in children],
        "bounds": rect_of(bounds), "profile": layer.colorProfile(),
    })
    write(out, f"{name}.before", before)
    write(out, f"{name}.after", layer.pixelData(*rect_of(bounds)))
    if snap is not None:
        r = snap.rect
        facts.update(rect=[r.x, r.y, r.width, r.height], format=snap.pixel_format)
        write(out, f"{name}.input", snap.data)
        new = [n for n in children if n.name() not in names_before]
        if new:
            facts["new_index"] = [n.name() for n in children].index(new[0].name())
            facts["new_bounds"] = rect_of(new[0].bounds())
            write(out, f"{name}.result", new[0].pixelData(*facts["rect"]))
    if op == "upscale":
        del docs.open_image  # the wrapper above and `docs` refer to each other
        facts["upscaled"] = [[d.name(), d.width(), d.height(), d.colorDepth()] for d in opened]
        facts["format"] = image.pixel_format
        for d in opened:
            d.waitForDone()
            write(out, f"{name}.result", d.rootNode().childNodes()[0].pixelData(0, 0, d.width(), d.height()))
    return facts


def restyle(ctrl, docs, doc, layer, active, case, out, facts):
    """Apply, make the result the active layer (as Krita does), Apply another style: the second result
    must be made from "Paint", not from the first result. Then: the map survives saving and reopening,
    and "Added layer" goes away once the layer does (what Undo does to the tree)."""
    from impasto.settings import StyleOptions

    mark("first apply")
    ok = ctrl.apply(StyleOptions(case["style"]))
    ctrl.wait(120)
    mark("second apply")
    first = [n for n in doc.rootNode().childNodes() if n.name() not in ("Background", "Paint")][0]
    active[0] = first
    ok = ctrl.apply(StyleOptions(case["style2"])) and ok
    ctrl.wait(120)
    doc.waitForDone()
    nodes = doc.rootNode().childNodes()
    second = nodes[-1]
    facts["restyled"] = {"order": [n.name() for n in nodes], "message": ctrl_message(ctrl)}
    rect = rect_of(layer.bounds())
    write(out, f"{case['name']}.first", first.pixelData(*rect))
    write(out, f"{case['name']}.second", second.pixelData(*rect))
    path = os.path.join(out, "restyle.kra")
    mark("save")
    doc.setBatchmode(True)  # no dialogs; and everything the image still has queued done first
    doc.waitForDone()
    facts["restyled"]["saved"] = [path, second.name()] if doc.saveAs(path) else None
    # Reopened in a fresh Krita (`reopen` below, run by the test after this one), as a user reopens a file
    # another day; Krita 5.2.9 opening the file in this process beside the saved document once aborted
    # (glibc heap assertion inside openDocument).
    mark("note")
    time.sleep(0.6)  # the controller looks at the document twice a second: the layer is there
    ctrl.poll()
    facts["restyled"]["message_before_undo"] = ctrl_message(ctrl)
    mark("remove")
    second.remove()
    time.sleep(0.6)  # the controller looks at the document twice a second
    ctrl.poll()
    facts["restyled"]["message_after_undo"] = ctrl_message(ctrl)
    active[0] = layer
    return ok


def ctrl_message(ctrl):
    shown = [m for m in ctrl.views[-1].messages if m[0] == "show_message"]
    return shown[-1][1] if shown else None


def preview(ctrl, docs, view, case, out, facts):
    """The live preview: a reduced copy through the real backend, shown in the view, document untouched."""
    from impasto.settings import StyleOptions

    snap = docs.read_preview(448)
    write(out, f"{case['name']}.thumb", snap.data)
    facts["thumb"] = [snap.width, snap.height, snap.shrink]
    t = time.monotonic()
    ctrl.request_preview(StyleOptions(case["style"], 0.8))
    end = t + 60
    while "preview" not in vars(view) and time.monotonic() < end:
        time.sleep(0.02)
        ctrl.poll()
    facts["preview_seconds"] = round(time.monotonic() - t, 2)
    image = vars(view).get("preview")
    if image is not None:
        write(out, f"{case['name']}.preview", image[0])
    return image is not None


def limits(ctrl, case, facts, messages):
    """A 4096x4096 image against the backend's 64 MP: x2 (8192x8192) is offered disabled, with why,
    and pressing Upscale anyway sends nothing."""
    ctrl.poll()
    time.sleep(0.6)
    ctrl.poll()
    facts["sizes"] = [list(s) if s else None for s in ctrl.sizes]
    facts["choices"] = [[c.factor, c.enabled, c.reason] for c in ctrl.upscale_choices()]
    facts["problem_at_half_brush"] = ctrl.stylize_problem(2.0)
    refused = not ctrl.upscale(2)
    facts["refused"] = refused
    return refused


def reopen(args=None):
    """The second Krita run: open each saved .kra of spec["reopen"] ([path, layer name]) and write which layer
    the named layer was made from (the plugin's map, read back from the file) to reopen.json."""
    with open(os.environ["IMPASTO_KRITA_SPEC"]) as f:
        spec = json.load(f)
    found = {}
    try:
        from impasto import kritadoc
        from krita import Krita

        app = Krita.instance()
        app.setBatchmode(True)  # a script: no dialogs while the file loads
        OPEN.append(real_sized_document(app, spec["out"]))
        for path, name in spec["reopen"]:
            doc = app.openDocument(path)
            node = [n for n in doc.rootNode().childNodes() if n.name() == name][0]
            source = kritadoc.source_of(doc, node)
            found[path] = source.name() if source is not None else None
            doc.close()
    except Exception:  # noqa: BLE001
        found["fatal"] = traceback.format_exc()
    close_open()
    with open(os.path.join(spec["out"], "reopen.json"), "w") as f:
        json.dump(found, f)


def main(args=None):
    spec_path = os.environ["IMPASTO_KRITA_SPEC"]
    with open(spec_path) as f:
        spec = json.load(f)
    out = spec["out"]
    results = {}

    def save():  # after every case: a crash in one still leaves what came before it
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f, indent=1)

    def step(name):
        results["running"] = f"{results['running'].split(':')[0]}: {name}"
        save()

    MARK["save"] = step

    try:
        from krita import Krita

        app = Krita.instance()
        OPEN.append(real_sized_document(app, out))
        results["imports"] = imports(spec)
        for case in spec["cases"]:
            results["running"] = case["name"]
            save()
            try:
                results[case["name"]] = scenario(app, case, case.get("address", spec["address"]), out)
            except Exception:  # noqa: BLE001 - report and go on with the other cases
                results[case["name"]] = {"error": traceback.format_exc()}
            gc.collect()  # whatever a case left in cycles goes now, on Krita's GUI thread
        del results["running"]
    except Exception:  # noqa: BLE001
        results["fatal"] = traceback.format_exc()
    close_open()
    save()
