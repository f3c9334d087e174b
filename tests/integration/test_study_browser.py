"""`impasto study` end to end in a real headless browser: Debian's chromium + chromium-driver, driven by Selenium.

A study of three methods over two images (and a reference) is built with the CLI and served by the real
`impasto study serve` on 127.0.0.1 port 0. A scripted participant enters its id in the page, then answers every
pair with key presses only (arrows and 1/2), always choosing the brighter image, which it reads from the page's
own pixels. On the way it presses a wrong key and takes it back (Backspace), and halfway the server is stopped
and started again on a new port: the page must resume where the participant stopped. Then the JSONL log and
`impasto study report` are checked.

Skips with a reason where Chromium, chromedriver or Selenium is missing; CI sets IMPASTO_REQUIRE_EDITORS=1
(.ci/install-chromium.sh installs them) and there a missing browser fails."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from impasto.cli import main
from impasto.study.design import load
from PIL import Image

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BRIGHTNESS = {"good": 200, "fair": 130, "poor": 60}  # the scripted participant prefers brighter
ID = "bot-1"


def _missing(reason: str) -> None:
    if os.environ.get("IMPASTO_REQUIRE_EDITORS") == "1":
        pytest.fail(reason + " — IMPASTO_REQUIRE_EDITORS=1 makes this a failure", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        _missing("chromium/chromedriver not found: apt-get install chromium chromium-driver "
                 "(or .ci/install-chromium.sh)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed: pip install -e '.[test]'")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium  # type: ignore[assignment]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,900", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    # The driver is named, so Selenium Manager (which would download one) never runs.
    drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


class StudyServe:
    """The real `impasto study serve STUDY --port 0` in a child process; `.url` is the address it printed."""

    def __init__(self, study: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "backend"),
                                                                        os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen([sys.executable, "-m", "impasto", "study", "serve", str(study), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(v) for v in self.proc.stdout or []], daemon=True).start()
        deadline = time.monotonic() + 60
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if " at http://127.0.0.1:" in line:
                self.url = line.rsplit(" at ", 1)[1].strip()
                return

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def _wait(drv: Any, cond: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not drv.execute_script(f"return {cond};"):
        if time.monotonic() > deadline:
            state = drv.execute_script("return [document.body.dataset.state, document.body.dataset.answered, "
                                       "document.getElementById('status').textContent];")
            raise AssertionError(f"timed out waiting for {cond}; page state {state}")
        time.sleep(0.05)


def _answered(drv: Any) -> int:
    return int(drv.execute_script("return document.body.dataset.answered;"))


def _brightness(drv: Any) -> tuple[int, int]:
    """Red value of the pixel at (2, 2) of each shown image, read from the page (same origin: readable)."""
    return tuple(drv.execute_script("""
        return ['left', 'right'].map((id) => {
          const img = document.getElementById(id), c = document.createElement('canvas');
          c.width = img.naturalWidth; c.height = img.naturalHeight;
          const g = c.getContext('2d'); g.drawImage(img, 0, 0);
          return g.getImageData(2, 2, 1, 1).data[0];
        });"""))


def _press(drv: Any, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    before = drv.execute_script("return document.body.dataset.answered;")
    ActionChains(drv).send_keys(key).perform()
    _wait(drv, f"document.body.dataset.answered !== '{before}' && "
               "['ready', 'done'].includes(document.body.dataset.state)")


def _make_study(tmp: Path) -> Path:
    rng = np.random.default_rng(0)
    for m, level in [*BRIGHTNESS.items(), ("ref", 128)]:
        (tmp / m).mkdir()
        for name in ("harbour", "meadow"):
            img = np.full((48, 64, 3), level, np.uint8)
            img[8:40, 8:56] = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)  # something to look at
            Image.fromarray(img).save(tmp / m / f"{name}.png")
    assert main(["study", "build", "--out", str(tmp / "S"), "--methods", *(f"{m}={tmp / m}" for m in BRIGHTNESS),
                 "--reference", str(tmp / "ref"), "--seed", "7", "--title", "Brightness check"]) == 0
    return tmp / "S"


def test_a_scripted_participant_answers_a_study_in_chromium(browser: Any, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    study = _make_study(tmp_path)
    total = len(load(study).trials())
    assert total == 6  # 3 pairs x 2 images
    server = StudyServe(study)
    drv = browser
    drv.get(server.url)  # no id in the address: the page asks for one
    _wait(drv, "document.body.dataset.state === 'id'")
    drv.find_element(By.ID, "who-id").send_keys(ID + Keys.ENTER)
    _wait(drv, "document.body.dataset.state === 'ready'")
    assert f"participant={ID}" in drv.current_url
    assert drv.find_element(By.ID, "progress").text == f"0 / {total}"
    assert drv.find_element(By.ID, "reference").is_displayed()

    keys = {"left": [Keys.ARROW_LEFT, "1"], "right": [Keys.ARROW_RIGHT, "2"]}
    shown: list[tuple[int, int]] = []
    for step in range(total):
        if step == 3:  # the server goes away and comes back on another port: the page resumes
            assert server.stop() == 0
            server = StudyServe(study)
            drv.get(f"{server.url}?participant={ID}")
            _wait(drv, "document.body.dataset.state === 'ready'")
            assert _answered(drv) == 3 and drv.find_element(By.ID, "progress").text == f"3 / {total}"
        left, right = _brightness(drv)
        shown.append((left, right))
        better = "left" if left > right else "right"
        if step == 1:  # a slip: the wrong key, then Backspace takes it back
            _press(drv, keys["right" if better == "left" else "left"][0])
            assert _answered(drv) == 2
            _press(drv, Keys.BACKSPACE)
            assert _answered(drv) == 1 and _brightness(drv) == (left, right)  # the same pair, same sides
        _press(drv, keys[better][step % 2])  # arrows and digits in turn
        assert _answered(drv) == step + 1
    _wait(drv, "document.body.dataset.state === 'done'")
    assert drv.find_element(By.ID, "done").is_displayed()
    assert drv.find_element(By.ID, "progress").text == f"{total} / {total}"
    assert server.stop() == 0
    assert {v for pair in shown for v in pair} == set(BRIGHTNESS.values())
    assert any(left < right for left, right in shown) and any(left > right for left, right in shown)  # sides vary

    events = [json.loads(v) for v in (study / "answers.jsonl").read_text().splitlines()]
    answers = [e for e in events if e["type"] == "answer"]
    undos = [e for e in events if e["type"] == "undo"]
    assert len(answers) == total + 1 and len(undos) == 1 and {e["participant"] for e in events} == {ID}
    assert undos[0]["trial"] == answers[1]["trial"] == answers[2]["trial"]  # the slip, then its correction
    assert answers[1]["chosen"] != answers[2]["chosen"]
    standing = [e for i, e in enumerate(answers) if i != 1]
    assert sorted(e["trial"] for e in standing) == list(range(total))
    for e in standing:
        assert e["chosen"] == max((e["left"], e["right"]), key=BRIGHTNESS.__getitem__)
        assert e["chosen"] == e[e["choice"]] and e["ms"] >= 0

    capsys.readouterr()
    assert main(["study", "report", str(study), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["participants"] == [ID] and rep["answers"] == total
    pairs = {(p["a"], p["b"]): p for p in rep["pairs"]}
    assert set(pairs) == {("good", "fair"), ("good", "poor"), ("fair", "poor")}
    for p in pairs.values():  # the brighter (first) method won both images
        assert p["n"] == 2 and p["wins"] == 2 and p["rate"] == 1.0
        assert p["ci95"] == pytest.approx([0.342, 1.0], abs=1e-3)  # Wilson, 2 of 2
    rates = {m["method"]: m["rate"] for m in rep["methods"]}
    assert rates == {"good": 1.0, "fair": 0.5, "poor": 0.0}
    assert Path(rep["plot"]).is_file()
