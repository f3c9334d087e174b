"""Runs under another Python (3.9 to 3.13) for test_plugin_pythons.py, seeing only the standard library,
the installed plugin folders and tests/unit/fake_krita.py: the plugins' client and pure logic as that
Python would run them inside an editor, against a real backend. Prints one JSON object.

    python -I -S plugin_python_driver.py krita|gimp SPEC.json

Krita: the installed `impasto` package (it activates _vendor/pyXY) with its controller and kritadoc, on the
fake Krita API. GIMP: what impasto.py does before it touches GIMP (the same activation), then
impasto_logic's requests and checks around the vendored client. Written for Python 3.8+ syntax."""

import importlib
import json
import sys
import types


def _hex(data):
    return bytes(data).hex()


def _pixels(width, height):
    return bytes((i * 37 + 11) % 256 for i in range(width * height * 4))


def _errors(view):
    return [e[1] for e in view.log if e[0] == "show_message" and len(e) > 2 and e[2]]


def krita(spec):
    sys.path.insert(0, spec["pykrita"])
    import impasto  # the installed plugin package: puts _vendor and _vendor/pyXY first on sys.path
    from impasto import controller

    # fake_krita.py imports pytest (for a type annotation) and plugin_loader (the source tree's plugin);
    # here the installed package stands in for both.
    loader = types.ModuleType("plugin_loader")
    loader.NAME = "impasto"
    loader.load = lambda sub="": importlib.import_module("impasto." + sub if sub else "impasto")
    loader.load_common = lambda: importlib.import_module("impasto_common")
    sys.modules["plugin_loader"] = loader
    sys.modules.setdefault("pytest", types.ModuleType("pytest"))
    sys.path.append(spec["fakes"])
    import fake_krita

    class Patch:
        def setitem(self, mapping, key, value):
            mapping[key] = value

    kritadoc = fake_krita.install(Patch())
    out = {"plugin": impasto.__file__, "python": ".".join(map(str, sys.version_info[:3]))}

    def setup(address):
        app = fake_krita.App()
        doc = app.createDocument(8, 6, "cat", "RGBA", "U8", "", 72.0)
        layer = fake_krita.Node(doc, "Paint")
        layer.setPixelData(_pixels(8, 6), 0, 0, 8, 6)
        doc.root.addChildNode(layer, doc.root.children[0])
        store = {"address": address}
        ctrl = controller.Controller(kritadoc.KritaDocuments(app, lambda: (doc, layer)),
                                     lambda g, n, d: store.get(n, d), lambda g, n, v: None)
        view = fake_krita.FakeView()
        ctrl.add_view(view)
        ctrl.connect()
        ctrl.wait(60)
        return app, doc, ctrl, view

    app, doc, ctrl, view = setup(spec["address"])
    out["connected"] = ctrl.connected
    out["errors_on_connect"] = _errors(view)
    if ctrl.connected:
        import impasto_client
        import multidict

        out["client"] = impasto_client.__file__
        out["multidict"] = multidict.__file__
        out["styles"] = [m.name for m in ctrl.styles]
        options = ctrl.settings.options.__class__(spec["style"], 1.0, False, 0)
        out["applied"] = ctrl.apply(options) and ctrl.wait(120)
        layers = doc.root.childNodes()
        out["layers"] = [n.name() for n in layers]
        out["stylized"] = _hex(layers[-1].pixelData(0, 0, 8, 6)) if len(layers) > 2 else ""
        out["upscaled"] = ctrl.upscale(2) and ctrl.wait(120)
        new = [d for d in app.documents() if d is not doc]
        out["upscaled_size"] = [new[0].width(), new[0].height()] if new else []
        out["upscaled"] = _hex(new[0].rootNode().childNodes()[0].pixelData(0, 0, 16, 12)) if new else ""
        out["errors"] = _errors(view)

    _app, down_doc, down, down_view = setup(spec["down"])
    down.apply(ctrl.settings.options.__class__(spec["style"], 1.0, False, 0))
    down.wait(60)
    out["down_connected"] = down.connected
    out["down_errors"] = _errors(down_view)
    out["down_layers"] = [n.name() for n in down_doc.root.childNodes()]
    return out


def gimp(spec):
    folder = spec["plugin"]
    vendor = folder + "/_vendor"
    for path in (folder, vendor):  # as impasto.py does, before it imports gi
        sys.path.insert(0, path)
    import impasto_vendor

    out = {"problem": impasto_vendor.activate(vendor, "gimp")}
    import impasto_logic as logic

    try:
        import impasto_client
    except ImportError as exc:  # what impasto.py's _client() turns into the plug-in's error message
        out["client_error"] = f"{type(exc).__name__}: {exc}"
        return out
    import google.protobuf

    out["client"] = impasto_client.__file__
    out["protobuf"] = google.protobuf.__file__
    client = impasto_client.ImpastoClient(spec["address"])
    job = logic.ImageJob(logic.Rect(0, 0, 8, 6), logic.formats_for_precision("u8-non-linear", True))
    fractions = []
    request = logic.upscale_request(job, _pixels(8, 6), 2, None)
    result = client.upscale(**request, progress=logic.progress_mapper(fractions.append, 0, 1, ("upscale",)))
    out["upscaled"] = _hex(logic.check_result(result, job, 2))
    out["upscale_progress"] = fractions[-1] if fractions else None
    request = logic.stylize_request(job, _pixels(8, 6), spec["style"], 1.0, False, 0)
    out["stylized"] = _hex(logic.check_result(client.stylize(**request), job))
    try:
        impasto_client.ImpastoClient(spec["down"]).list_models()
    except impasto_client.BackendError as exc:
        out["down_message"] = logic.user_message(exc)
    return out


def main():
    mode, spec_file = sys.argv[1], sys.argv[2]
    with open(spec_file) as f:
        spec = json.load(f)
    print(json.dumps((krita if mode == "krita" else gimp)(spec)))


if __name__ == "__main__":
    main()
