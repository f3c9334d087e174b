"""The docker's Backend settings with the "Install backend" panel, in a Python with PyQt5 (Krita's, or the
system's), offscreen, for test_backend_setup.py: the real docker and controller, the real BackendSetup
(its data folder under $XDG_DATA_HOME), clicks on the real buttons. Prints one JSON object.

    QT_QPA_PLATFORM=offscreen python3 backend_panel_driver.py REPO OUT_DIR"""

import importlib.util
import json
import os
import sys
import time


def main():
    root, out = sys.argv[1], sys.argv[2]
    sys.path.insert(0, os.path.join(root, "plugins", "common"))
    spec = importlib.util.spec_from_file_location(
        "impasto_krita_plugin", os.path.join(root, "plugins", "krita", "impasto", "__init__.py"),
        submodule_search_locations=[os.path.join(root, "plugins", "krita", "impasto")])
    package = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = package
    spec.loader.exec_module(package)  # no `krita` module here: nothing registers
    from impasto_krita_plugin import backend_panel, backend_setup, docker
    from impasto_krita_plugin.controller import Controller
    from PyQt5.QtWidgets import QApplication, QMessageBox

    app = QApplication([])
    store, messages = {}, []

    class View:
        def show_message(self, text, error=False):
            messages.append([text, error])

        def __getattr__(self, name):
            return lambda *args: None

    controller = Controller(None, lambda g, n, d: store.get(n, d), lambda g, n, v: store.__setitem__(n, v))
    panel = docker.DockerPanel(controller)
    controller.add_view(View())
    setup = panel.setup_panel
    r = {"env_dir": setup.setup.env_dir, "fields_open": panel.backend_fields.isVisibleTo(panel),
         "button": setup.install_button.text(), "remove_enabled": setup.remove_button.isEnabled()}

    def wait(condition, seconds=30):
        end = time.monotonic() + seconds
        while not condition() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    # Install with a "system Python" that is none: a message saying so, the log opened, nothing made.
    setup.system_python.setText(os.path.join(out, "no-python"))
    setup.install_button.click()
    r["busy_button"] = setup.install_button.text()
    wait(lambda: not setup.timer.isActive())
    r["failed"] = messages[-1] if messages else None
    r["log_shown"] = setup.log.isVisibleTo(setup)
    r["log_text"] = setup.log.toPlainText()
    r["after_fail_button"] = setup.install_button.text()
    r["saved_setup_python"] = store.get("setup_python")
    r["env_exists"] = os.path.exists(setup.setup.env_dir)
    panel.grab().save(os.path.join(out, "panel.png"))

    # An installed environment (its Python in place) that the Start button uses: Update and Remove offered.
    python = setup.setup.interpreter
    os.makedirs(os.path.dirname(python))
    open(python, "w").close()
    controller.update_settings(interpreter=python)
    panel.interpreter.setText(python)
    setup._show_state()
    r["installed_button"] = setup.install_button.text()
    r["installed_remove_enabled"] = setup.remove_button.isEnabled()
    backend_panel.QMessageBox.question = lambda *args: QMessageBox.Yes  # the confirmation, answered
    setup.remove_button.click()
    wait(lambda: not setup.timer.isActive())
    r["removed"] = messages[-1]
    r["env_exists_after_remove"] = os.path.exists(setup.setup.env_dir)
    r["interpreter_after_remove"] = [store.get("interpreter"), panel.interpreter.text()]
    r["final_button"] = setup.install_button.text()
    r["final_remove_enabled"] = setup.remove_button.isEnabled()
    r["wants"] = backend_setup.WANT
    print(json.dumps(r))


if __name__ == "__main__":
    main()
