"""backend_setup.py: the docker's backend installer, without Krita or Qt. The whole install (a real venv, pip
and a started backend) is in tests/integration/test_backend_setup.py; here are its parts, with real child
processes where it runs any."""

from __future__ import annotations

import os
import re
import sys
import time
import tomllib
from pathlib import Path

import pytest
from plugin_loader import ROOT, load

setup_mod = load("backend_setup")
BackendSetup = setup_mod.BackendSetup


def test_backend_python_is_what_the_package_requires() -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    low = re.search(r">=\s*(\d+)\.(\d+)", requires)
    high = re.search(r"<\s*(\d+)\.(\d+)", requires)
    assert low and high
    assert setup_mod.BACKEND_PYTHON == (int(low[1]), int(low[2]))
    assert (int(high[1]), int(high[2])) == (setup_mod.BACKEND_PYTHON[0], setup_mod.BACKEND_PYTHON[1] + 1)


@pytest.mark.parametrize(
    ("platform", "env", "data", "python"),
    [
        ("linux", {}, "~/.local/share/impasto", "bin/python"),
        ("linux", {"XDG_DATA_HOME": "/x"}, "/x/impasto", "bin/python"),
        ("win32", {"LOCALAPPDATA": "/w/Local"}, "/w/Local/impasto", "Scripts/python.exe"),
        ("darwin", {}, "~/Library/Application Support/impasto", "bin/python"),
    ],
)
def test_data_folder_and_env_python_per_platform(platform: str, env: dict, data: str, python: str) -> None:
    assert setup_mod.data_dir(platform, env) == os.path.expanduser(data)
    assert setup_mod.env_python("/e", platform) == os.path.join("/e", *python.split("/"))


def test_where_impasto_comes_from(tmp_path: Path) -> None:
    assert setup_mod.pip_target("") == ["impasto"]
    assert setup_mod.pip_target("  ", offline=True) == ["--no-index", "impasto"]
    wheel = tmp_path / "impasto-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert setup_mod.pip_target(str(wheel)) == [str(wheel)]
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "pyproject.toml").write_text("")
    assert setup_mod.pip_target(str(checkout)) == [str(checkout)]
    assert setup_mod.pip_target(str(tmp_path), offline=True) == ["--no-index", "--find-links", str(tmp_path),
                                                                 "impasto"]
    with pytest.raises(ValueError, match="neither a .whl file nor a folder"):
        setup_mod.pip_target(str(tmp_path / "nothing.zip"))


PIP_OUTPUT = """\
Looking in links: /wheels
Processing /wheels/impasto-0.1.0-py3-none-any.whl
Collecting torch==2.14.1 (from impasto==0.1.0)
  Downloading torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl (887.4 MB)
Requirement already satisfied: numpy>=1.26 in ./lib/python3.11/site-packages (from impasto==0.1.0) (2.1.0)
Collecting pillow>=10 (from impasto==0.1.0)
  Using cached pillow-11.0.0-cp311-cp311-manylinux_2_28_x86_64.whl (4.4 MB)
Installing collected packages: torch, pillow, impasto
Successfully installed impasto-0.1.0 pillow-11.0.0 torch-2.14.1
"""


def test_pip_output_becomes_progress_that_only_grows() -> None:
    progress = setup_mod.PipProgress()
    seen = []
    for line in PIP_OUTPUT.splitlines():
        progress.feed(line)
        seen.append((progress.fraction, progress.label))
        if "Downloading torch" in line:
            assert progress.label == "Downloading torch (887.4 MB)"
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and 0 < fractions[2] < 0.7 and fractions[-1] == 1.0
    assert seen[-2] == (0.75, "Installing packages (torch takes a while)…")


def test_finds_a_python_of_the_backends_version(tmp_path: Path) -> None:
    pythons = {"/a/python3": (3, 13), "/b/python3.11": (3, 11), "/c/python": (3, 11)}
    assert setup_mod.find_python(list(pythons), pythons.get) == "/b/python3.11"
    assert setup_mod.find_python(["/a/python3", "/nope"], pythons.get) == ""
    # Candidates: PATH first, only files that exist, each once.
    exe = tmp_path / "python3.11"
    exe.write_text("")
    found = setup_mod.python_candidates("linux", {}, lambda name: str(exe) if name != "python" else None)
    assert found[0] == str(exe) and len(found) == len(set(found))
    # And the real thing: this test runs on the backend's Python.
    assert setup_mod.python_version(sys.executable) == setup_mod.BACKEND_PYTHON
    assert setup_mod.python_version(str(tmp_path / "missing")) is None


class ScriptedSetup(BackendSetup):
    """The real runner (threads, child processes, events, log, cancel) on a given script instead of pip."""

    def __init__(self, tmp_path: Path, script: str) -> None:
        super().__init__(str(tmp_path / "env"), str(tmp_path / "logs" / "setup.log"))
        self.script = script

    def _install(self) -> str:
        self._step([sys.executable, "-u", "-c", self.script], 0.1, 0.9, "Installing Impasto",
                   setup_mod.PipProgress())
        return "done"


def _events(setup: BackendSetup, timeout: float = 30) -> list:
    assert setup.wait(timeout)
    return setup.poll()


def test_output_lines_progress_and_log(tmp_path: Path) -> None:
    setup = ScriptedSetup(tmp_path, "print('Collecting torch'); print('Successfully installed torch-2')")
    setup.install()
    events = _events(setup)
    lines = [e.text for e in events if e.kind == setup_mod.LINE]
    assert lines[1:] == ["Collecting torch", "Successfully installed torch-2"]
    progress = [e.fraction for e in events if e.kind == setup_mod.PROGRESS]
    assert progress[0] == 0.1 and progress[-1] == pytest.approx(0.9) and progress == sorted(progress)
    assert events[-1] == setup_mod.Event(setup_mod.DONE, "done", 1.0)
    assert "Successfully installed torch-2\ndone\n" in Path(setup.log_path).read_text()


def test_a_failing_step_says_what_and_where_the_log_is(tmp_path: Path) -> None:
    setup = ScriptedSetup(tmp_path, "import sys; print('ERROR: No matching distribution found for impasto'); "
                                    "sys.exit(1)")
    setup.install()
    last = _events(setup)[-1]
    assert last.kind == setup_mod.ERROR
    assert last.text == ("Installing Impasto failed (exit code 1): ERROR: No matching distribution found for "
                         f"impasto — see {setup.log_path}")


def test_cancel_stops_the_running_step(tmp_path: Path) -> None:
    setup = ScriptedSetup(tmp_path, "import time; print('Collecting torch', flush=True); time.sleep(60)")
    setup.install()
    assert setup.running
    with pytest.raises(RuntimeError, match="still busy"):
        setup.install()
    deadline = time.monotonic() + 30
    while not any(e.kind == setup_mod.LINE and e.text == "Collecting torch" for e in setup.poll()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    setup.cancel()
    last = _events(setup)[-1]
    assert last == setup_mod.Event(setup_mod.ERROR, "Cancelled; run Install again to finish.")
    assert time.monotonic() - started < 10


def test_remove_deletes_the_environment(tmp_path: Path) -> None:
    setup = BackendSetup(str(tmp_path / "env"), str(tmp_path / "setup.log"))
    setup.remove()
    assert _events(setup)[-1].text == "The backend was not installed."
    python = Path(setup.interpreter)
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert setup.installed
    setup.remove()
    assert _events(setup)[-1].kind == setup_mod.DONE and not (tmp_path / "env").exists() and not setup.installed


def test_no_system_python_is_a_message(tmp_path: Path) -> None:
    setup = BackendSetup(str(tmp_path / "env"), str(tmp_path / "setup.log"), python=str(tmp_path / "none"))
    setup.install()
    last = _events(setup)[-1]
    assert last.kind == setup_mod.ERROR and "is not a Python 3.11 with venv" in last.text
    assert not (tmp_path / "env").exists()
