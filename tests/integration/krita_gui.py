"""Real Krita with its GUI under Xvfb: the installed plugin loads; its docker starts the backend with the
Python typed into its field; the live preview shows; a long job's bar moves with time left and Cancel
stops it; Apply adds a layer that one Undo removes (and its message with it); a result's restyle uses
its source; a 4096² image gets no ×2; Upscale names the new document after the file; a backend that dies
turns the dot red and Start brings it back; the backend stops when Krita quits. Screenshots for the docs.

    python tests/integration/krita_gui.py [--screenshot docs/img/krita-docker.png]
        [--progress docs/img/krita-docker-progress.png] [--window docs/img/krita-window.png]

A throwaway Krita profile gets the plugin (as `impasto plugin install krita` lays it out) and a small
checking plugin that scripts the session from inside Krita and writes results.json."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from editors import free_port
from impasto.cli import plugin_install

SAMPLE = Path(__file__).resolve().parents[2] / "backend" / "impasto" / "data" / "samples" / "chelsea.png"

CHECKER_DESKTOP = """[Desktop Entry]
Type=Service
ServiceTypes=Krita/PythonPlugin
X-KDE-Library=impasto_gui_check
X-Python-2-Compatible=false
Name=Impasto GUI check
"""

# Runs inside Krita. Steps are chained with QTimer so Krita's event loop keeps running between them.
CHECKER = r'''
import json, os, time
from krita import Krita, Extension
from PyQt5.QtCore import QTimer

SPEC = json.load(open(os.environ["IMPASTO_GUI_SPEC"]))
OUT = SPEC["out"]
R = {"steps": []}


def save():
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(R, f, indent=1)


def later(ms, fn):
    QTimer.singleShot(ms, fn)


def wait_for(cond, then, timeout, label, state=None):
    """Poll `cond` every 200 ms on Krita's event loop, then `then()`; on a timeout, note what `state()` says."""
    start = time.monotonic()
    end = start + timeout

    def tick():
        try:
            ok = cond()
        except Exception as exc:
            ok = False
            R.setdefault("errors", []).append(f"{label}: {exc!r}")
        if ok:
            R["steps"].append(label)
            save()
            then()
        elif time.monotonic() > end:
            R.setdefault("errors", []).append(f"timeout: {label} after {time.monotonic() - start:.1f} s")
            if state is not None:
                try:
                    R[f"state at timeout: {label}"] = state()
                except Exception as exc:  # noqa: BLE001 - a diagnosis must not hide the timeout
                    R[f"state at timeout: {label}"] = repr(exc)
            finish()
        else:
            later(200, tick)
    tick()


def top_names(doc):
    return [n.name() for n in doc.rootNode().childNodes()]


class Checker(Extension):
    def setup(self):
        Krita.instance().notifier().windowCreated.connect(lambda: later(1500, self.start))

    def createActions(self, window):
        pass

    def start(self):
        try:
            import impasto.extension as ext
        except Exception as exc:
            R["fatal"] = f"plugin did not load: {exc!r}"
            save()
            return finish()
        app = Krita.instance()
        self.ctrl = ext.controller()
        R["actions"] = {a: app.action(a) is not None for a in ("impasto_apply_style", "impasto_apply_last")}
        R["shortcuts"] = {a: app.action(a).shortcut().toString() for a in R["actions"] if app.action(a)}
        self.doc = app.openDocument(SPEC["image"])
        app.activeWindow().addView(self.doc)
        self.docker = next((d for d in app.dockers() if d.objectName() == "impasto_docker"), None)
        R["docker_found"] = self.docker is not None
        if self.docker is None:
            return finish()
        # Only Layers and Impasto, so the screenshot shows the docker at a useful size.
        for d in app.dockers():
            if d.objectName() not in ("impasto_docker", "KisLayerBox") and d.isVisible():
                d.hide()
        self.docker.show()
        self.docker.raise_()
        app.activeWindow().qwindow().resize(1280, 800)
        self.panel = self.docker.widget()
        R["settings_open_at_start"] = self.panel.backend_fields.isVisible()  # the Python field is empty
        R["before_start"] = self.ctrl.connected
        # Typed into the field, then Start, without Connect: Start must use it.
        self.panel.backend_toggle.setChecked(True)
        self.panel.interpreter.setText(SPEC["python"])
        self.panel.start_button.click()
        R["start_message"] = self.panel.message_label.full_text
        wait_for(lambda: self.ctrl.connected and self.ctrl.styles, self.connected, 150, "connected")

    def connected(self):
        R["interpreter_saved"] = Krita.instance().readSetting("impasto", "interpreter", "")
        R["settings_open_after_connect"] = self.panel.backend_fields.isVisible()
        R["message_after_connect"] = self.panel.message_label.full_text
        self.names = top_names(self.doc)
        picker = self.panel.picker
        names = [picker.gallery.item(i).data(256) for i in range(picker.gallery.count())]
        R["gallery"] = names
        picker.gallery.setCurrentRow(names.index(SPEC["style"]) if SPEC["style"] in names else 0)
        self.preview_started = time.monotonic()
        wait_for(lambda: self.panel.preview.image is not None and "Udnie" in self.panel.preview.toolTip(),
                 self.previewed, 120, "preview", self.preview_state)

    def preview_state(self):
        p, picker = self.ctrl.preview, self.panel.picker
        return {"image": self.panel.preview.image is not None, "tooltip": self.panel.preview.toolTip(),
                "text": self.panel.preview.text(), "current_row": picker.gallery.currentRow(),
                "options": repr(picker.options()), "live": self.ctrl.settings.live_preview,
                "wanted": repr(p.wanted), "running": repr(p.running), "job": p.job is not None,
                "busy": self.ctrl.busy, "connected": self.ctrl.connected,
                "message": self.panel.message_label.full_text}

    def previewed(self):
        R["preview_seconds"] = round(time.monotonic() - self.preview_started, 2)
        R["preview"] = [self.panel.preview.image.width(), self.panel.preview.image.height()]
        later(800, self.shoot_preview)

    def shoot_preview(self):
        window = Krita.instance().activeWindow().qwindow()
        window.grab().save(os.path.join(OUT, "window.png"))
        self.panel.grab().save(os.path.join(OUT, "docker.png"))
        # A long job (refinement) to see the bar move with time left; then Cancel.
        self.panel.picker.refine.setValue(SPEC["refine"])
        self.panel.apply_button.click()
        self.values = []

        def moving():
            self.values.append(self.panel.progress.value())
            return "left" in self.panel.progress_label.full_text and self.panel.progress.value() >= 15
        wait_for(moving, self.shoot_progress, 120, "progress")

    def shoot_progress(self):
        R["progress_label"] = self.panel.progress_label.full_text
        R["progress_values"] = sorted(set(v for v in self.values if v >= 0))
        self.panel.grab().save(os.path.join(OUT, "docker-progress.png"))
        self.panel.cancel_button.click()
        wait_for(lambda: not self.ctrl.busy, self.apply, 30, "cancelled")

    def apply(self):
        R["after_cancel"] = {"names": top_names(self.doc), "message": self.panel.message_label.full_text}
        self.panel.picker.refine.setValue(0)
        self.panel.apply_button.click()
        clicked, timeline = time.monotonic(), R.setdefault("apply_timeline", [])

        def applied():  # what the docker said while the layer came: [s since Apply, busy, layers, message]
            seen = [round(time.monotonic() - clicked, 2), self.ctrl.busy, len(top_names(self.doc)),
                    self.panel.message_label.full_text]
            if not timeline or timeline[-1][1:] != seen[1:]:
                timeline.append(seen)
            # the message too: Krita can run this timer inside the plugin's own adding of the layer (the layer
            # is in the tree, the job is over, and the line below it is not written yet)
            return not self.ctrl.busy and len(top_names(self.doc)) > len(self.names) \
                and self.panel.message_label.full_text != ""
        wait_for(applied, self.undo, 120, "applied")

    def undo(self):
        R["after_apply"] = top_names(self.doc)
        R["message_after_apply"] = self.panel.message_label.full_text
        Krita.instance().action("edit_undo").trigger()
        wait_for(lambda: top_names(self.doc) == self.names and self.panel.message_label.full_text == "",
                 self.redo, 20, "undone")

    def redo(self):
        R["after_undo"] = top_names(self.doc)
        R["message_after_undo"] = self.panel.message_label.full_text
        Krita.instance().action("edit_redo").trigger()
        wait_for(lambda: len(top_names(self.doc)) > len(self.names), self.dialog, 20, "redone")

    def dialog(self):
        R["after_redo"] = top_names(self.doc)
        from PyQt5.QtWidgets import QApplication

        # The result is the active layer: the dialog's Apply must stylize the layer it was made from.
        self.result = next(n for n in self.doc.rootNode().childNodes() if n.name() == "Udnie")
        self.doc.setActiveNode(self.result)

        def accept():
            box = QApplication.activeModalWidget()
            R["dialog"] = box.windowTitle() if box else None
            if box:
                box.accept()
        # "Apply Impasto style…" opens a modal dialog; accept it once it is up, as the user's OK would.
        later(1500, accept)
        Krita.instance().action("impasto_apply_style").trigger()
        n = len(R["after_redo"])
        wait_for(lambda: not self.ctrl.busy and len(top_names(self.doc)) > n, self.again, 60, "dialog")

    def again(self):
        R["after_dialog"] = top_names(self.doc)
        nodes = {n.name(): n for n in self.doc.rootNode().childNodes()}
        w, h = self.doc.width(), self.doc.height()
        R["restyled_from_source"] = bytes(nodes["Udnie 2"].pixelData(0, 0, w, h)) == bytes(
            nodes["Udnie"].pixelData(0, 0, w, h))
        self.docker.hide()  # without the docker, the action shows its own progress window
        Krita.instance().action("impasto_apply_last").trigger()
        n = len(R["after_dialog"])
        wait_for(lambda: not self.ctrl.busy and len(top_names(self.doc)) > n, self.limits, 60, "again")

    def limits(self):
        R["final"] = top_names(self.doc)
        self.docker.show()
        app = Krita.instance()
        self.big = app.createDocument(4096, 4096, "big", "RGBA", "U8", "", 72.0)
        app.activeWindow().addView(self.big)
        model = self.panel.scale.model()
        wait_for(lambda: not model.item(0).isEnabled(), self.upscale, 10, "limits")

    def upscale(self):
        model = self.panel.scale.model()
        R["limits"] = {"enabled": [model.item(i).isEnabled() for i in range(3)],
                       "tooltip": model.item(0).toolTip(), "upscale": self.panel.upscale_button.isEnabled()}
        self.big.setModified(False)
        self.big.close()
        app = Krita.instance()
        view = next(v for v in app.activeWindow().views() if v.document() == self.doc)
        app.activeWindow().showView(view)
        wait_for(lambda: model.item(0).isEnabled(), self.press_upscale, 10, "limits lifted")

    def press_upscale(self):
        self.panel.scale.setCurrentIndex(0)
        self.panel.upscale_button.click()
        app = Krita.instance()
        wait_for(lambda: not self.ctrl.busy and len(app.documents()) > 1, self.health, 120, "upscaled")

    def health(self):
        R["upscaled"] = [[d.name(), d.width(), d.height()] for d in Krita.instance().documents()
                         if d != self.doc]
        R["message_after_upscale"] = self.panel.message_label.full_text
        # The backend goes away (as if it crashed): the dot turns red and Apply off within seconds.
        self.ctrl.server.stop()
        self.t0 = time.monotonic()

        def red():
            return "#c33" in self.panel.status_dot.styleSheet() and not self.panel.apply_button.isEnabled()
        wait_for(red, self.restart, 15, "red")

    def restart(self):
        R["red_seconds"] = round(time.monotonic() - self.t0, 2)
        self.panel.start_button.click()
        self.t0 = time.monotonic()

        def green():
            return "#3a3" in self.panel.status_dot.styleSheet() and self.panel.apply_button.isEnabled()
        wait_for(green, self.recovered, 150, "green")

    def recovered(self):
        R["green_seconds_after_start"] = round(time.monotonic() - self.t0, 2)
        finish()


def finish():
    R["done"] = True
    save()

    def still_here():  # Krita should be gone by now: say what keeps it (a Python error's dialog, say), go
        from PyQt5.QtWidgets import QApplication, QLabel, QTextEdit
        shown = [w for w in QApplication.topLevelWidgets() if w.isVisible()]
        R["quit_blocked_by"] = [[w.windowTitle()] + [c.text() for c in w.findChildren(QLabel)]
                                + [c.toPlainText() for c in w.findChildren(QTextEdit)] for w in shown]
        save()
        os._exit(3)
    later(8000, still_here)
    for doc in Krita.instance().documents():
        doc.setModified(False)  # no "save changes?" dialog on quit
    later(500, lambda: Krita.instance().action("file_quit").trigger())


Krita.instance().addExtension(Checker(Krita.instance()))
'''


def port_open(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) == 0


def run(base: Path, wheels: Path | None, timeout: float = 300, style: str = "udnie", refine: int = 60) -> dict:
    """Run the session in a fresh profile under `base`; returns results.json plus what happened outside."""
    share, config, out = base / "share", base / "config", base / "out"
    pykrita = share / "krita" / "pykrita"
    plugin_install.install_krita(pykrita, wheels)
    checker = pykrita / "impasto_gui_check"
    checker.mkdir()
    (checker / "__init__.py").write_text(CHECKER)
    (pykrita / "impasto_gui_check.desktop").write_text(CHECKER_DESKTOP)
    address = f"127.0.0.1:{free_port()}"
    config.mkdir(parents=True)
    out.mkdir()
    # Plugins are enabled per name in kritarc's [python] group; the docker's settings live in [impasto].
    (config / "kritarc").write_text(
        "[python]\nenable_impasto=true\nenable_impasto_gui_check=true\n\n"
        f"[impasto]\naddress={address}\n\n"  # the Python is typed into the docker, as a user would
        "[General]\nshowSplash=false\n"
    )
    spec = base / "spec.json"
    spec.write_text(json.dumps({"out": str(out), "image": str(SAMPLE), "style": style, "refine": refine,
                                "python": sys.executable}))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base / "home"),
        "XDG_DATA_HOME": str(share),
        "XDG_CONFIG_HOME": str(config),
        "XDG_RUNTIME_DIR": str(base / "run"),
        "IMPASTO_GUI_SPEC": str(spec),
        "LANG": "C.UTF-8",
    }
    (base / "run").mkdir(mode=0o700)
    (base / "home").mkdir()
    command = ["xvfb-run", "-a", "-s", "-screen 0 1440x900x24", "krita", "--nosplash"]
    started = time.monotonic()
    # A session of its own, so that on a timeout Krita, Xvfb and the backend the plugin started all go.
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        timed_out = True
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    results["timed_out"] = timed_out
    results["krita_exit"] = proc.returncode
    results["seconds"] = round(time.monotonic() - started, 1)
    time.sleep(1.0)
    results["backend_still_running"] = port_open(address)
    try:  # then sweep the session: a backend Krita left behind (a failed run) must not outlive the test
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    results["log_tail"] = (stdout + stderr)[-2000:]
    results["out"] = str(out)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, help="copy the docker's screenshot (live preview) here")
    parser.add_argument("--progress", type=Path, help="copy the docker's screenshot mid-job here")
    parser.add_argument("--window", type=Path, help="copy the whole window's screenshot here")
    parser.add_argument("--wheels", type=Path, help="pinned wheels folder (default: download into the cache)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = run(Path(tmp), args.wheels)
        out = Path(results["out"])
        for src, dest in (("docker.png", args.screenshot), ("docker-progress.png", args.progress),
                          ("window.png", args.window)):
            if dest and (out / src).exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(out / src, dest)
        print(json.dumps({k: v for k, v in results.items() if k != "log_tail"}, indent=1))
    return 0 if results.get("done") and not results.get("errors") else 1


if __name__ == "__main__":
    sys.exit(main())
