"""Real GIMP 3 with its GUI under Xvfb, driven like an artist with xdotool: the two dialogs as the backend
fills them (style thumbnails, brush size, the factors its pixel limit leaves), a stylize run with its
progress in the status bar, and a second run cancelled from the status bar. Writes the docs' screenshots.

    python tests/integration/gimp_gui.py [--out docs/img]        (as root, like test_gimp.py)

Needs the GIMP 3 chroot of .ci/install-gimp.sh with xdotool inside it (`chroot ROOT apt-get install
xdotool`), and Xvfb on the host; the host's X socket folder is bound into the chroot for the run. Screen
positions (the status bar's progress bar and Cancel) are those of GIMP 3.0.4's default single-window
layout on the 1280x860 screen used here. Prints what it saw as JSON; exit status 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from editors import free_port

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
ROOT = Path(os.environ.get("IMPASTO_GIMP_ROOT", "/var/cache/impasto/gimp-root"))
SAMPLE = REPO / "backend" / "impasto" / "data" / "samples" / "chelsea.png"
SYSTEM_PLUGINS = "/usr/lib/x86_64-linux-gnu/gimp/3.0/plug-ins"
SCREEN = (1280, 860)
BAR_ROW, BAR_X = 667, (470, 920)  # the status bar's progress bar: trough 40, filled 100 (grey levels)
CANCEL = (990, 661)  # the status bar's Cancel button while a plug-in's progress runs
# The image GIMP opens: chelsea scaled to 1600x1064, large enough that a job takes a while on CPU.
SETUP = """
import gi
gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio
image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path({image!r}))
image.scale(1600, 1064)
Gimp.Display.new(image)
Gimp.displays_flush()
"""


# -- screenshots: Xvfb -fbdir keeps the screen as an XWD file -----------------------------------------

def read_screen(fbdir: Path) -> np.ndarray:
    data = (fbdir / "Xvfb_screen0").read_bytes()
    header = struct.unpack(">25I", data[:100])
    size, width, height, line, colours = header[0], header[4], header[5], header[12], header[19]
    pixels = np.frombuffer(data, np.uint8, count=line * height, offset=size + colours * 12)
    return pixels.reshape(height, line)[:, :width * 4].reshape(height, width, 4)[..., [2, 1, 0]]


def write_png(path: Path, rgb: np.ndarray) -> None:
    h, w, _ = rgb.shape
    raw = b"".join(b"\0" + np.ascontiguousarray(rgb[y]).tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def bar_fill(screen: np.ndarray) -> float | None:
    """How full the status bar's progress bar is; None when none shows."""
    row = screen[BAR_ROW, BAR_X[0]:BAR_X[1]].astype(int).mean(axis=1)
    filled, trough = int((abs(row - 100) < 8).sum()), int((abs(row - 40) < 8).sum())
    return filled / (filled + trough) if filled + trough > 100 else None


# -- the session --------------------------------------------------------------------------------------

class Session:
    def __init__(self, base: Path) -> None:
        self.base, self.inside = base, "/" + str(base.relative_to(ROOT))
        self.fbdir = base / "fb"
        self.procs: list[subprocess.Popen] = []
        self.display = f":{next(n for n in range(57, 99) if not Path(f'/tmp/.X11-unix/X{n}').exists())}"
        self.mounted = False

    def start(self) -> None:
        self.fbdir.mkdir()
        w, h = SCREEN
        self._spawn(["Xvfb", self.display, "-screen", "0", f"{w}x{h}x24", "-fbdir", str(self.fbdir),
                     "-nolisten", "tcp"], "xvfb.log")
        time.sleep(2)
        sockets = ROOT / "tmp" / ".X11-unix"
        sockets.mkdir(exist_ok=True)
        subprocess.run(["mount", "--bind", "/tmp/.X11-unix", str(sockets)], check=True)
        self.mounted = True
        # The backend: small tiles and budget so a 1600x1064 layer runs in tiles and reports progress; a
        # 20 MP limit so x4 and x8 of it are refused; -v so it logs each job's time.
        self.address = f"127.0.0.1:{free_port()}"
        env = {**os.environ, "PYTHONPATH": str(REPO / "backend"), "OMP_NUM_THREADS": "2"}
        env.pop("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", None)
        self._spawn([sys.executable, "-m", "impasto", "-v", "serve", "--address", self.address, "--device", "cpu",
                     "--max-pixels", "20000000", "--memory-budget", "0.25", "--tile-size", "256"],
                    "serve.log", env=env)
        subprocess.run([sys.executable, "-m", "impasto", "plugin", "install", "gimp", "--dest",
                        str(self.base / "plug-ins")], check=True, capture_output=True, env=env)
        config = self.base / "home" / ".config" / "GIMP" / "3.0"
        config.mkdir(parents=True)
        (config / "gimprc").write_text("(show-welcome-dialog no)\n(show-tips no)\n(check-updates no)\n")
        shutil.copy(SAMPLE, self.base / "chelsea.png")
        (self.base / "setup.py").write_text(SETUP.format(image=f"{self.inside}/chelsea.png"))
        deadline = time.monotonic() + 90
        while "serving on" not in (self.base / "serve.log").read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("impasto serve did not start")
            time.sleep(0.5)
        env = {"PATH": "/usr/bin:/bin", "HOME": f"{self.inside}/home", "LANG": "C.UTF-8", "DISPLAY": self.display,
               "GIMP_TESTING_PLUGINDIRS": f"{SYSTEM_PLUGINS}:{self.inside}/plug-ins",
               "IMPASTO_ADDRESS": self.address}
        self._spawn(["chroot", str(ROOT), "env", "-i", *(f"{k}={v}" for k, v in env.items()), "gimp-3.0", "-n",
                     "--batch-interpreter", "python-fu-eval", "-b",
                     f"exec(open({self.inside + '/setup.py'!r}).read())"], "gimp.log")
        self.wait_window("– GIMP", 120)
        time.sleep(3)

    def _spawn(self, command: list[str], log: str, env: dict | None = None) -> None:
        with (self.base / log).open("w") as out:
            self.procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                               start_new_session=True))

    def xdotool(self, *args: str) -> str:
        run = subprocess.run(["chroot", str(ROOT), "env", f"DISPLAY={self.display}", "xdotool", *args],
                             capture_output=True, text=True, timeout=60)
        return run.stdout.strip()

    def wait_window(self, name: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.xdotool("search", "--onlyvisible", "--name", name).split()
            if found:
                return found[0]
            time.sleep(0.5)
        raise RuntimeError(f"no window {name!r} within {timeout} s")

    def geometry(self, window: str) -> tuple[int, int, int, int]:
        shell = dict(line.split("=") for line in self.xdotool("getwindowgeometry", "--shell", window).split())
        return int(shell["X"]), int(shell["Y"]), int(shell["WIDTH"]), int(shell["HEIGHT"])

    def action(self, text: str) -> None:
        """Run a menu entry through GIMP's action search ("/"), as a keyboard user would."""
        self.xdotool("mousemove", "600", "300")
        self.xdotool("key", "slash")
        search = self.wait_window("Search Actions")
        time.sleep(1)
        self.xdotool("windowfocus", "--sync", search)
        self.xdotool("type", "--delay", "60", text)
        time.sleep(1.5)
        self.xdotool("key", "Return")

    def screen(self) -> np.ndarray:
        return read_screen(self.fbdir)

    def crop(self, window: str) -> np.ndarray:
        x, y, w, h = self.geometry(window)
        return self.screen()[y:y + h, x:x + w]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, 9)
        if self.mounted:
            sockets = ROOT / "tmp" / ".X11-unix"
            if subprocess.run(["umount", str(sockets)], check=False).returncode == 0:
                sockets.rmdir()


def run(session: Session, out: Path | None) -> dict:
    """The artist's steps in a started session; what was seen, with "ok" when every check held."""
    seen: dict = {}
    shots: dict[str, np.ndarray] = {}
    layers_panel = (slice(540, 620), slice(1040, 1270))

    # Upscale: x4 and x8 of 1600x1064 pass the 20 MP limit, so only x2 is offered, with the reasons.
    session.action("Upscale with Impasto")
    dialog = session.wait_window("^Upscale with Impasto$")
    time.sleep(2)
    shots["gimp-upscale-dialog.png"] = session.crop(dialog)
    session.xdotool("key", "Escape")
    time.sleep(2)

    # Stylize: the gallery, then OK (Alt+O) and the progress in the status bar until it is gone.
    before = session.screen()[layers_panel].copy()
    session.action("Impasto Style")
    dialog = session.wait_window("^Impasto Style$")
    time.sleep(2)
    shots["gimp-stylize-dialog.png"] = session.crop(dialog)
    session.xdotool("windowfocus", "--sync", dialog)
    session.xdotool("key", "alt+o")
    frames, started = [], time.monotonic()
    while time.monotonic() - started < 240:
        screen = session.screen()
        frames.append((bar_fill(screen), screen))
        if len(frames) > 10 and any(f is not None for f, _ in frames) and all(f is None for f, _ in frames[-6:]):
            break
        time.sleep(0.5)
    fills = [f for f, _ in frames if f is not None]
    seen["progress_fills"] = [round(f, 2) for f in fills]
    seen["progress_moved"] = len({round(f, 2) for f in fills}) >= 3 and fills == sorted(fills)
    if fills:
        fill, screen = min((fr for fr in frames if fr[0] is not None), key=lambda fr: abs(fr[0] - 0.5))
        shots["gimp-progress.png"] = screen[540:680, 190:1270]
    time.sleep(2)
    after = session.screen()[layers_panel]
    seen["layer_added"] = not np.array_equal(before, after)
    shots["gimp-stylize-window.png"] = session.screen()[0:680, 0:1270]

    # Again, cancelled from the status bar mid-job: the plug-in ends, the backend drops the job, and the
    # layers stay as they were.
    before = session.screen()[layers_panel].copy()
    session.action("Impasto Style")
    dialog = session.wait_window("^Impasto Style$")
    time.sleep(2)
    session.xdotool("windowfocus", "--sync", dialog)
    session.xdotool("key", "alt+o")
    started = time.monotonic()
    while time.monotonic() - started < 120 and (bar_fill(session.screen()) or 0) < 0.2:
        time.sleep(0.3)
    seen["cancel_at"] = bar_fill(session.screen())
    shots["gimp-cancel-before.png"] = session.screen()[540:680, 190:1270]
    session.xdotool("mousemove", str(CANCEL[0]), str(CANCEL[1]))
    time.sleep(0.5)
    session.xdotool("click", "1")
    time.sleep(5)
    shots["gimp-cancel-after.png"] = session.screen()[540:680, 190:1270]
    seen["cancel_left_layers"] = np.array_equal(before, session.screen()[layers_panel])
    # The backend stops a cancelled job at its next check; it logs each job's time (-v).
    times = [float(t) for t in re.findall(r"stylize finished in ([\d.]+) s", (session.base / "serve.log").read_text())]
    seen["job_seconds"] = times
    seen["backend_dropped_job"] = len(times) == 2 and times[1] < 0.6 * times[0]
    seen["ok"] = bool(seen["progress_moved"] and seen["layer_added"] and seen["cancel_at"]
                      and seen["cancel_left_layers"] and seen["backend_dropped_job"])
    if out:
        out.mkdir(parents=True, exist_ok=True)
        for name, image in shots.items():
            if name in ("gimp-upscale-dialog.png", "gimp-stylize-dialog.png", "gimp-progress.png"):
                write_png(out / name, image)
        seen["written"] = sorted(shots)
    keep = session.base.parent / "impasto-gui-last"
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir()
    for name, image in shots.items():  # every shot, to look at (ROOT/tmp/impasto-gui-last)
        write_png(keep / name, image)
    shutil.copy(session.base / "serve.log", keep / "serve.log")
    return seen


def why_not() -> str | None:
    """Why the GUI session cannot run here, or None."""
    if not (ROOT / "usr/bin/gimp-3.0").exists():
        return f"no GIMP 3 chroot at {ROOT} (.ci/install-gimp.sh)"
    if not (ROOT / "usr/bin/xdotool").exists():
        return f"no xdotool in the GIMP chroot (chroot {ROOT} apt-get install xdotool)"
    if not shutil.which("Xvfb"):
        return "no Xvfb on this machine"
    if os.geteuid() != 0:
        return "the chroot and its X socket mount need root"
    return None


def session(out: Path | None = None) -> dict:
    """One GUI session from start to end (see the module's docstring); what it saw."""
    base = Path(tempfile.mkdtemp(prefix="impasto-gui-", dir=ROOT / "tmp"))
    gui = Session(base)
    try:
        gui.start()
        seen = run(gui, out)
    finally:
        gui.stop()
        log = (base / "gimp.log").read_text(errors="replace")[-1500:] if (base / "gimp.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
    seen["gimp_log_tail"] = log
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the docs' screenshots (gimp-*.png) here")
    args = parser.parse_args()
    reason = why_not()
    if reason:
        print(f"gimp_gui: cannot run: {reason}", file=sys.stderr)
        return 2
    seen = session(args.out)
    print(json.dumps(seen, indent=1))
    return 0 if seen["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
