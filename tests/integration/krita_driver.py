"""Runs inside real Krita: `kritarunner -s krita_driver -f main` (see test_krita.py).

Reads a JSON spec from $IMPASTO_KRITA_SPEC, builds tiny documents, drives the *installed* plugin's
controller and document adapter exactly as the docker does (apply, then poll until the job ends), and
writes what it saw to the spec's output folder: JSON facts plus raw pixel files for the test to compare
with the backend's answer through the Python client."""

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
    return {
        "plugin": impasto.__file__,
        "impasto_client": impasto_client.__file__,
        "impasto_common": impasto_common.__file__,
        "grpclib": grpclib.__file__,
        "protobuf": google.protobuf.__file__,
        "protobuf_impl": api_implementation.Type(),
        "client_address": client.address,
        "python": sys.version.split()[0],
    }


def scenario(app, case, address, out):
    from impasto.controller import Controller
    from impasto.kritadoc import KritaDocuments
    from impasto.settings import StyleOptions
    from krita import Selection

    name = case["name"]
    w, h = case.get("size", [24, 16])
    doc = app.createDocument(w, h, name, case.get("model", "RGBA"), case["depth"], "", 72.0)
    root = doc.rootNode()
    layer = doc.createNode("Paint", "paintlayer")
    root.addChildNode(layer, None)
    lw, lh = case.get("layer_size", [w, h])
    if case.get("model", "RGBA") == "RGBA":
        layer.setPixelData(pattern(lw, lh, case["depth"]), 0, 0, lw, lh)
    if "offset" in case:
        layer.move(*case["offset"])
    if "selection" in case:
        sel = Selection()
        sel.select(*case["selection"], 255)
        doc.setSelection(sel)
    doc.waitForDone()
    bounds = layer.bounds()
    before = bytes(layer.pixelData(*rect_of(bounds)))
    store = {}
    docs = KritaDocuments(app, target=lambda: (doc, layer))
    ctrl = Controller(docs, lambda g, n, d: store.get((g, n), d),
                      lambda g, n, v: store.__setitem__((g, n), v))
    ctrl.update_settings(address=address)
    ctrl.wait(60)  # the gallery is filled before the user can press Apply
    messages = []

    class View:
        def __getattr__(self, attr):
            plain = (str, bool, float, int)
            return lambda *args: messages.append([attr] + [a if isinstance(a, plain) else None for a in args])

    ctrl.add_view(View())
    names_before = [n.name() for n in root.childNodes()]
    snap = None
    if case.get("op") == "cancel":
        # A long job (Gatys refinement), cancelled once the backend reports it is working on it.
        snap = docs.read_layer()
        started = ctrl.apply(StyleOptions(case["style"], 1.0, False, 400))
        end = time.monotonic() + 60
        while ctrl.busy and time.monotonic() < end:
            if any(m[0] == "show_progress" and m[1] == "refine" for m in messages):
                break
            time.sleep(0.02)
            ctrl.poll()
        facts_cancel = {"busy_at_cancel": ctrl.busy}
        ctrl.cancel()
    elif case.get("op", "apply") == "apply":
        try:
            snap = docs.read_layer()
        except Exception as exc:  # noqa: BLE001 - the unsupported-document message is what we check
            messages.append(["read_layer", str(exc)])
        started = ctrl.apply(StyleOptions(case["style"], 1.0, False, 0))
    else:
        opened = []
        open_image = docs.open_image
        docs.open_image = lambda *a: opened.append(open_image(*a))  # keep the new document to inspect it
        image = docs.read_image()
        write(out, f"{name}.input", image.data)
        started = ctrl.upscale(case["scale"])
    cancel_t = time.monotonic()
    finished = ctrl.wait(120)
    if case.get("op") == "cancel":
        facts_cancel["seconds_to_stop"] = round(time.monotonic() - cancel_t, 2)
    doc.waitForDone()
    children = root.childNodes()
    facts = {
        "started": started, "finished": finished, "messages": messages,
        "names_before": names_before, "names_after": [n.name() for n in children],
        "bounds": rect_of(bounds), "profile": layer.colorProfile(),
    }
    if case.get("op") == "cancel":
        facts.update(facts_cancel)
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
    if case.get("op") == "upscale":
        facts["upscaled"] = [[d.name(), d.width(), d.height(), d.colorDepth()] for d in opened]
        facts["format"] = image.pixel_format
        for d in opened:
            d.waitForDone()
            write(out, f"{name}.result", d.rootNode().childNodes()[0].pixelData(0, 0, d.width(), d.height()))
    return facts


def main(args=None):
    spec_path = os.environ["IMPASTO_KRITA_SPEC"]
    with open(spec_path) as f:
        spec = json.load(f)
    out = spec["out"]
    results = {}
    try:
        from krita import Krita

        app = Krita.instance()
        results["imports"] = imports(spec)
        for case in spec["cases"]:
            try:
                results[case["name"]] = scenario(app, case, case.get("address", spec["address"]), out)
            except Exception:  # noqa: BLE001 - report and go on with the other cases
                results[case["name"]] = {"error": traceback.format_exc()}
    except Exception:  # noqa: BLE001
        results["fatal"] = traceback.format_exc()
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
