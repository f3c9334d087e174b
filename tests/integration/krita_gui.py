"""Real Krita with its GUI under Xvfb: the installed plugin loads, its docker starts the backend with the
Start button, Apply adds a layer that one Undo removes, the backend stops when Krita quits; and a
screenshot of the docker for the docs.

    python tests/integration/krita_gui.py [--screenshot docs/img/krita-docker.png]

A throwaway Krita profile gets the plugin (as `impasto plugin install krita` lays it out) and a small
checking plugin that scripts the session from inside Krita and writes results.json."""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


def wait_for(cond, then, timeout, label):
    end = time.monotonic() + timeout

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
            R.setdefault("errors", []).append(f"timeout: {label}")
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
        if self.docker is not None:
            # Only Layers and Impasto, so the screenshot shows the docker at a useful size.
            for d in app.dockers():
                if d.objectName() not in ("impasto_docker", "KisLayerBox") and d.isVisible():
                    d.hide()
            self.docker.show()
            self.docker.raise_()
            app.activeWindow().qwindow().resize(1280, 800)
        R["before_start"] = self.ctrl.connected
        self.docker.widget().start_button.click()  # the Start button, as a user would press it
        wait_for(lambda: self.ctrl.connected and self.ctrl.styles, self.apply, 150, "connected")

    def apply(self):
        self.names = top_names(self.doc)
        picker = self.docker.widget().picker
        names = [picker.gallery.item(i).data(256) for i in range(picker.gallery.count())]
        R["gallery"] = names
        picker.gallery.setCurrentRow(names.index(SPEC["style"]) if SPEC["style"] in names else 0)
        self.docker.widget().apply_button.click()
        wait_for(lambda: not self.ctrl.busy and len(top_names(self.doc)) > len(self.names), self.undo, 120,
                 "applied")

    def undo(self):
        R["after_apply"] = top_names(self.doc)
        later(1500, self.shoot)

    def shoot(self):
        window = Krita.instance().activeWindow().qwindow()
        window.grab().save(os.path.join(OUT, "window.png"))
        self.docker.widget().grab().save(os.path.join(OUT, "docker.png"))
        Krita.instance().action("edit_undo").trigger()
        wait_for(lambda: top_names(self.doc) == self.names, self.redo, 20, "undone")

    def redo(self):
        R["after_undo"] = top_names(self.doc)
        Krita.instance().action("edit_redo").trigger()
        wait_for(lambda: len(top_names(self.doc)) > len(self.names), self.dialog, 20, "redone")

    def dialog(self):
        R["after_redo"] = top_names(self.doc)
        from PyQt5.QtWidgets import QApplication

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
        self.docker.hide()  # without the docker, the action shows its own progress window
        Krita.instance().action("impasto_apply_last").trigger()
        n = len(R["after_dialog"])
        wait_for(lambda: not self.ctrl.busy and len(top_names(self.doc)) > n, finish, 60, "again")


def finish():
    doc = Krita.instance().activeDocument()
    R["final"] = top_names(doc) if doc else []
    R["done"] = True
    save()
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


def run(base: Path, wheels: Path | None, timeout: float = 300, style: str = "udnie") -> dict:
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
        f"[impasto]\naddress={address}\ninterpreter={sys.executable}\n\n"
        "[General]\nshowSplash=false\n"
    )
    spec = base / "spec.json"
    spec.write_text(json.dumps({"out": str(out), "image": str(SAMPLE), "style": style}))
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
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    results["krita_exit"] = proc.returncode
    results["seconds"] = round(time.monotonic() - started, 1)
    time.sleep(1.0)
    results["backend_still_running"] = port_open(address)
    results["log_tail"] = (proc.stdout + proc.stderr)[-2000:]
    results["out"] = str(out)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, help="copy the docker's screenshot here")
    parser.add_argument("--window", type=Path, help="copy the whole window's screenshot here")
    parser.add_argument("--wheels", type=Path, help="pinned wheels folder (default: download into the cache)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = run(Path(tmp), args.wheels)
        out = Path(results["out"])
        for src, dest in (("docker.png", args.screenshot), ("window.png", args.window)):
            if dest and (out / src).exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(out / src, dest)
        print(json.dumps({k: v for k, v in results.items() if k != "log_tail"}, indent=1))
    return 0 if results.get("done") and not results.get("errors") else 1


if __name__ == "__main__":
    sys.exit(main())
