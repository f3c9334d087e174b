"""The Krita docker and dialog under PyQt6, as Krita 6 would load them, with the fake Krita API
(tests/unit/fake_krita.py) and a real backend: run under Xvfb by test_krita_qt6.py.

    IMPASTO_QT_API=PyQt6 xvfb-run -a python tests/integration/krita_qt6_driver.py OUT_DIR

Builds the docker, waits for the gallery, the live preview and a full Apply through the backend, checks
what each widget shows on the way (progress, messages, limits, the layout holding still), kills the
backend and starts it again to time the status dot, and writes OUT_DIR/results.json (+ a screenshot)."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import types
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "unit")]

from editors import free_port  # noqa: E402
from impasto_serve_proc import ServeProcess  # noqa: E402
from plugin_loader import NAME, load  # noqa: E402

R: dict[str, Any] = {"steps": []}


def fake_krita() -> Any:
    """The fake `krita` module (as fake_krita.install does for pytest), then the adapter against it."""
    import importlib

    fake = types.ModuleType("krita")
    for name in ("Krita", "Extension", "DockWidget", "DockWidgetFactory", "DockWidgetFactoryBase"):
        setattr(fake, name, type(name, (), {}))
    sys.modules["krita"] = fake
    return importlib.import_module(f"{NAME}.kritadoc")


def main(out: Path) -> None:
    load()  # the plugin package, before `krita` exists: nothing registers
    qt = load("qt")
    R["qt"] = f"{qt.QT_API} {qt.QtCore.PYQT_VERSION_STR} on Qt {qt.QtCore.QT_VERSION_STR}"
    kritadoc = fake_krita()
    import fake_krita as fk  # after the plugin: it sizes pixels with impasto_common

    controller_mod, docker_mod, ext_mod = load("controller"), load("docker"), None
    app = qt.QApplication(sys.argv[:1])
    kapp = fk.App()
    doc = kapp.createDocument(64, 48, "photo", "RGBA", "U8", "", 72.0)
    paint = fk.Node(doc, "Paint")
    paint.setPixelData(bytes((i * 7) % 251 for i in range(64 * 48 * 4)), 0, 0, 64, 48)
    doc.root.addChildNode(paint, doc.root.children[0])
    # 4096 x 4096 by its bounds (two pixels), for the limits: a sparse fake paint device costs nothing.
    big = kapp.createDocument(4096, 4096, "big", "RGBA", "U8", "", 72.0)
    target = [doc, paint]
    docs = kritadoc.KritaDocuments(kapp, target=lambda: (target[0], target[1]))

    address = f"127.0.0.1:{free_port()}"
    t = time.monotonic()
    server = ServeProcess("--address", address)
    R["backend_start_seconds"] = round(time.monotonic() - t, 1)
    store = {("impasto", "address"): address}
    ctrl = controller_mod.Controller(docs, lambda g, n, d: store.get((g, n), d),
                                     lambda g, n, v: store.__setitem__((g, n), v))
    panel = docker_mod.DockerPanel(ctrl)
    panel.resize(340, 820)
    panel.show()
    timer = qt.QTimer()
    timer.timeout.connect(ctrl.poll)
    timer.start(50)
    ctrl.refresh()

    def run_until(cond: Any, timeout: float, label: str) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            app.processEvents()
            if cond():
                R["steps"].append(label)
                return round(time.monotonic() - start, 2)
            time.sleep(0.02)
        raise AssertionError(f"timeout: {label}")

    def dot() -> str:
        return "green" if "#3a3" in panel.status_dot.styleSheet() else (
            "red" if "#c33" in panel.status_dot.styleSheet() else "grey")

    try:
        run_until(lambda: ctrl.connected and panel.picker.gallery.count(), 60, "connected")
        R["connected"] = {"dot": dot(), "apply": panel.apply_button.isEnabled(),
                          "settings_open": panel.backend_fields.isVisible(),
                          "gallery": panel.picker.gallery.count(), "brush": panel.picker.brush_label.text(),
                          "status": panel.status.full_text}
        R["preview_seconds"] = run_until(lambda: panel.preview.image is not None, 60, "preview")
        R["preview"] = [panel.preview.image.width(), panel.preview.image.height(),
                        panel.preview.pixmap() is not None and not panel.preview.pixmap().isNull()]
        panel.grab().save(str(out / "docker-qt6.png"))

        # Apply, watching the progress row; nothing below the gallery may move meanwhile.
        geometry = panel.apply_button.geometry()
        names = [n.name() for n in doc.root.children]
        panel.apply_button.click()
        R["busy"] = {"progress_visible": panel.progress_box.isVisible(),
                     "cancel": panel.cancel_button.isEnabled(), "apply": panel.apply_button.isEnabled(),
                     "label": panel.progress_label.full_text}
        run_until(lambda: not ctrl.busy, 120, "applied")
        app.processEvents()
        R["applied"] = {"names": [n.name() for n in doc.root.children], "before": names,
                        "message": panel.message_label.full_text,
                        "progress_visible": panel.progress_box.isVisible(),
                        "apply_moved": panel.apply_button.geometry() != geometry}
        result = doc.root.children[names.index("Paint") + 1]

        # A long message is elided into two lines and its tooltip; still nothing moves.
        height = panel.message_label.height()
        ctrl.message("A long message " * 40, error=True)
        app.processEvents()
        R["long_message"] = {"height_same": panel.message_label.height() == height,
                             "lines": panel.message_label.text().count("\n") + 1,
                             "tooltip_whole": panel.message_label.toolTip() == "A long message " * 40,
                             "apply_moved": panel.apply_button.geometry() != geometry}
        ctrl.message(R["applied"]["message"], valid=lambda: docs.layer_exists(doc, result))
        end = time.monotonic() + 0.7  # the docker looks twice a second: it has seen the layer there
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)
        result.remove()  # what Undo does
        R["undo_message_seconds"] = run_until(lambda: panel.message_label.full_text == "", 3, "undo cleared")

        # Restyle from the result: the layer it was made from is what gets stylized.
        doc.root.addChildNode(result, paint)  # redo
        target[1] = result
        panel.picker.gallery.setCurrentRow(1)
        panel.apply_button.click()
        run_until(lambda: not ctrl.busy, 120, "restyled")
        R["restyled"] = {"names": [n.name() for n in doc.root.children],
                         "message": panel.message_label.full_text}

        # Limits: a 4096 x 4096 image offers no x2 (8192 x 8192 is over the backend's 64 MP).
        big_layer = big.root.children[0]
        big_layer.pixels = {(0, 0): b"\0\0\0\xff", (4095, 4095): b"\0\0\0\xff"}
        target[:] = [big, big_layer]
        run_until(lambda: not panel.scale.model().item(0).isEnabled(), 5, "limits")
        R["limits"] = {"enabled": [panel.scale.model().item(i).isEnabled() for i in range(3)],
                       "tooltip": panel.scale.model().item(0).toolTip(),
                       "upscale": panel.upscale_button.isEnabled(),
                       "upscale_tip": panel.upscale_button.toolTip()}
        target[:] = [doc, paint]

        # The dialog and the popup build and run under this Qt too.
        ext_mod = load("extension")
        dialog = ext_mod.StyleDialog(ctrl)
        qt.QTimer.singleShot(300, dialog.accept)
        R["dialog"] = {"accepted": qt.exec_dialog(dialog) == qt.accepted(),
                       "styles": dialog.picker.gallery.count(), "title": dialog.windowTitle()}
        popup = ext_mod.ProgressPopup(ctrl, panel)
        popup.show_activity("Stylizing… 50%", 50)
        R["popup"] = popup.dialog.value()
        popup.show_busy(False, "")

        # The backend goes away: red within seconds, Apply off; back: green by itself.
        server.stop()
        R["red_seconds"] = run_until(lambda: dot() == "red" and not panel.apply_button.isEnabled(), 10, "red")
        t = time.monotonic()
        server = ServeProcess("--address", address)
        R["green_seconds_after_start"] = run_until(
            lambda: dot() == "green" and panel.apply_button.isEnabled(), 15, "green")
        R["backend_restart_seconds"] = round(time.monotonic() - t, 1)
        R["done"] = True
    except Exception:  # noqa: BLE001 - reported to the test
        R["error"] = traceback.format_exc()
    finally:
        ctrl.shutdown()
        server.stop()
        (out / "results.json").write_text(json.dumps(R, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("IMPASTO_QT_API", "PyQt6")
    main(Path(sys.argv[1]))
