"""The docker's and the actions' logic against fake documents and views (fake_krita.py) and a fake backend
client."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fake_krita import FakeDocuments, FakeView
from plugin_loader import common_on_path, load

common_on_path()
from impasto_client import BackendError, BackendNotRunning, ImageResult, ModelEntry, OperationCancelled  # noqa: E402
from impasto_client import ServerInfo as Info  # noqa: E402

controller_mod = load("controller")
settings_mod = load("settings")


def model(name: str, kind: str = "style") -> ModelEntry:
    return ModelEntry(name, kind, name.title(), "", 1, "johnson", "MIT", "", b"", True)


class FakeClient:
    def __init__(self, up: bool = True, ops: tuple[str, ...] = ("stylize", "upscale"), fail: Any = None,
                 gate: threading.Event | None = None, max_pixels: int = 10**8) -> None:
        self.up, self.ops, self.fail, self.gate, self.max_pixels = up, ops, fail, gate, max_pixels
        self.calls: list[tuple[str, tuple, dict]] = []
        self.infos = 0

    def _check(self) -> None:
        if not self.up:
            raise BackendNotRunning("127.0.0.1:50051", "connection refused")

    def server_info(self) -> Info:
        self.infos += 1
        self._check()
        return Info("0.1.0", "cpu", 0, 0, 0, 4, self.max_pixels, self.ops)

    def list_models(self, kind: str = "") -> list[ModelEntry]:
        self._check()
        sr = ModelEntry("srgan-x2", "sr", "SRGAN", "", 2, "srgan", "MIT", "", b"", True)
        sr4 = ModelEntry("srgan-x4", "sr", "SRGAN", "", 4, "srgan", "MIT", "", b"", True)
        return [model("udnie"), model("wave"), sr, sr4]

    def stylize(self, data, w, h, fmt, style, **kw) -> ImageResult:
        self.calls.append(("stylize", (data, w, h, fmt, style), kw))
        self._check()
        if kw.get("progress"):
            kw["progress"]("stylize", 0.5, 0)
        if self.gate is not None:
            while not kw["cancel"].is_set():
                kw["cancel"].wait(0.01)
            raise OperationCancelled()
        if self.fail:
            raise self.fail
        return ImageResult(bytes(255 - b for b in data), w, h, fmt)

    def upscale(self, data, w, h, fmt, scale, **kw) -> ImageResult:
        self.calls.append(("upscale", (data, w, h, fmt, scale), kw))
        self._check()
        return ImageResult(data * scale * scale, w * scale, h * scale, fmt)


def make(client: FakeClient | None = None, docs: FakeDocuments | None = None, store: dict | None = None):
    client = client or FakeClient()
    docs = docs or FakeDocuments()
    store = {} if store is None else store
    ctrl = controller_mod.Controller(
        docs, lambda g, n, d: store.get((g, n), d), lambda g, n, v: store.__setitem__((g, n), v),
        client_factory=lambda address, token: client,
    )
    view = FakeView()
    ctrl.add_view(view)
    return ctrl, client, docs, view


def test_refresh_fills_gallery_and_status() -> None:
    ctrl, _, _, view = make(FakeClient(ops=("stylize", "upscale", "refine")))
    ctrl.refresh()
    assert ctrl.wait(5)
    assert ctrl.connected is True and view.last("show_status")[1] is True
    _, styles, upscalers, ops = view.last("show_models")
    assert [m.name for m in styles] == ["udnie", "wave"] and [m.name for m in upscalers] == ["srgan-x2", "srgan-x4"]
    assert "refine" in ops and ctrl.settings.style == "udnie"


def test_backend_not_running_shows_status_and_apply_changes_nothing() -> None:
    ctrl, client, docs, view = make(FakeClient(up=False))
    ctrl.refresh()
    ctrl.wait(5)
    assert ctrl.connected is False and "not running" in view.last("show_status")[2]
    assert ctrl.apply(settings_mod.StyleOptions("udnie"))
    ctrl.wait(5)
    assert docs.added == []
    text, error = view.last("show_message")[1:]
    assert error and "not running" in text and "Start" in text


def test_apply_sends_layer_pixels_in_their_format_and_adds_the_result() -> None:
    ctrl, client, docs, view = make()
    ctrl.refresh()
    ctrl.wait(5)
    assert ctrl.apply(settings_mod.StyleOptions("wave", 0.5, True, 30))
    ctrl.wait(5)
    (name, (data, w, h, fmt, style), kw) = client.calls[0]
    assert (data, w, h, fmt, style) == (bytes(range(16)), 2, 2, "BGRA_U8", "wave")
    assert kw["strength"] == 0.5 and kw["preserve_colors"] is True
    assert kw["refine"] == 0  # the backend does not offer "refine"
    snap, added, layer = docs.added[0]
    assert added == bytes(255 - b for b in range(16)) and layer == "Wave"
    assert ("show_progress", "stylize", 0.5, 0) in view.log
    assert ctrl.settings.last_style == "wave"


def test_refine_is_sent_when_offered_and_apply_last_repeats() -> None:
    store: dict = {}
    ctrl, client, docs, _ = make(FakeClient(ops=("stylize", "refine")), store=store)
    ctrl.refresh()
    ctrl.wait(5)
    ctrl.apply(settings_mod.StyleOptions("wave", 1.0, False, 30))
    ctrl.wait(5)
    assert client.calls[0][2]["refine"] == 30
    # A new session (Krita restarted) repeats the last style from the saved settings.
    ctrl2, client2, docs2, _ = make(FakeClient(ops=("stylize", "refine")), store=store)
    ctrl2.refresh()
    ctrl2.wait(5)
    assert ctrl2.apply_last()
    ctrl2.wait(5)
    assert client2.calls[0][1][4] == "wave" and docs2.added[0][2] == "Wave"


def test_apply_last_without_history_says_so() -> None:
    ctrl, client, docs, view = make()
    assert not ctrl.apply_last()
    assert "No Impasto style" in view.last("show_message")[1]


def test_selection_masks_the_result_alpha() -> None:
    docs = FakeDocuments(selection=bytes([255, 0, 255, 0]))
    ctrl, client, docs, _ = make(docs=docs)
    ctrl.apply(settings_mod.StyleOptions("udnie"))
    ctrl.wait(5)
    data = docs.added[0][1]
    assert data[3] == 255 - 3 and data[7] == 0 and data[11] == 255 - 11 and data[15] == 0


def test_cancel_leaves_document_unchanged() -> None:
    ctrl, client, docs, view = make(FakeClient(gate=threading.Event()))
    ctrl.apply(settings_mod.StyleOptions("udnie"))
    assert ctrl.busy and not ctrl.apply(settings_mod.StyleOptions("udnie"))  # one job at a time
    ctrl.cancel()
    assert ctrl.wait(5)
    assert docs.added == [] and not ctrl.busy
    assert "Cancelled" in view.last("show_message")[1]
    assert view.last("show_busy")[1] is False


@pytest.mark.parametrize(
    ("error", "words"),
    [(BackendError("NOT_FOUND", "no style called 'x'"), "no style called 'x'"),
     (BackendError("UNAUTHENTICATED", "missing token"), "token"),
     (ValueError("boom"), "Unexpected error")],
)
def test_failures_are_shown_and_change_nothing(error: Exception, words: str) -> None:
    ctrl, client, docs, view = make(FakeClient(fail=error))
    ctrl.apply(settings_mod.StyleOptions("udnie"))
    ctrl.wait(5)
    assert docs.added == []
    text, is_error = view.last("show_message")[1:]
    assert is_error and words in text


def test_unsupported_document_and_closed_document() -> None:
    ctrl, client, docs, view = make(docs=FakeDocuments(unsupported="this layer is CMYK"))
    assert not ctrl.apply(settings_mod.StyleOptions("udnie"))
    assert client.calls == [] and "CMYK" in view.last("show_message")[1]
    ctrl, client, docs, view = make(docs=FakeDocuments(open=False))
    ctrl.apply(settings_mod.StyleOptions("udnie"))
    ctrl.wait(5)
    assert docs.added == [] and "closed" in view.last("show_message")[1]


def test_no_style_picked() -> None:
    ctrl, client, docs, view = make()
    assert not ctrl.apply(settings_mod.StyleOptions(""))
    assert "Pick a style" in view.last("show_message")[1]


def test_upscale_opens_a_new_document() -> None:
    ctrl, client, docs, view = make()
    assert ctrl.upscale(4)
    ctrl.wait(5)
    snap, data, w, h = docs.opened[0]
    assert (w, h) == (8, 8) and len(data) == 8 * 8 * 16 and client.calls[0][1][3:] == ("RGBA_F32_LINEAR", 4)
    assert not ctrl.upscale(3)


def test_start_backend_without_interpreter_explains() -> None:
    ctrl, client, docs, view = make()
    ctrl.start_backend()
    assert "Python" in view.last("show_message")[1]


def test_changing_address_reconnects() -> None:
    ctrl, client, docs, view = make(FakeClient(up=False))
    ctrl.refresh()
    ctrl.wait(5)
    client.up = True
    ctrl.update_settings(address="127.0.0.1:6001")
    ctrl.wait(5)
    assert ctrl.connected is True and "127.0.0.1:6001" in view.last("show_status")[2]


def test_disconnected_docker_looks_again_now_and_then() -> None:
    now = [0.0]
    client = FakeClient(up=False)
    ctrl = controller_mod.Controller(FakeDocuments(), lambda g, n, d: d, lambda g, n, v: None,
                                     client_factory=lambda a, t: client, clock=lambda: now[0])
    ctrl.refresh()
    ctrl.wait(5)
    assert ctrl.connected is False
    client.up = True  # started by hand, outside Krita
    ctrl.poll()
    assert ctrl._probe is None  # not yet: retries are spaced out
    now[0] += controller_mod.IDLE_RETRY_SECONDS + 0.1
    ctrl.poll()
    ctrl.wait(5)
    assert ctrl.connected is True


def test_backend_that_exits_reports_its_last_words(tmp_path) -> None:
    import subprocess
    import sys

    dying = [sys.executable, "-c", "print('port in use'); raise SystemExit(1)"]
    server = load("server_process").ServerProcess(lambda cmd, **kw: subprocess.Popen(dying, **kw),
                                                  log_path=str(tmp_path / "serve.log"))
    store = {("impasto", "interpreter"): sys.executable}
    ctrl = controller_mod.Controller(FakeDocuments(), lambda g, n, d: store.get((g, n), d),
                                     lambda g, n, v: None, client_factory=lambda a, t: FakeClient(up=False),
                                     server=server)
    view = FakeView()
    ctrl.add_view(view)
    ctrl.start_backend()
    server._process.wait(10)
    ctrl.refresh()
    ctrl.wait(5)
    text, error = view.last("show_message")[1:]
    assert error and "port in use" in text


@pytest.mark.parametrize(("error", "words"), [
    (ImportError("No module named 'grpclib'"), "cannot load"),
    (ValueError("address 'x' should look like HOST:PORT"), "HOST:PORT"),
])
def test_client_that_cannot_be_made_is_explained(error: Exception, words: str) -> None:
    def factory(address: str, token: str) -> Any:
        raise error

    ctrl = controller_mod.Controller(FakeDocuments(), lambda g, n, d: d, lambda g, n, v: None,
                                     client_factory=factory)
    view = FakeView()
    ctrl.add_view(view)
    ctrl.refresh()
    assert not ctrl.apply(settings_mod.StyleOptions("udnie")) and not ctrl.upscale(2)
    assert words in view.last("show_message")[1] and not ctrl.busy


def test_refresh_errors_are_said_once_until_connect_is_pressed() -> None:
    ctrl, client, docs, view = make(FakeClient(up=True))
    client.server_info = lambda: (_ for _ in ()).throw(BackendError("UNAUTHENTICATED", "missing token"))
    for _ in range(3):
        ctrl.refresh()
        ctrl.wait(5)
    assert len([e for e in view.log if e[0] == "show_message" and e[2]]) == 1
    ctrl.connect()
    ctrl.wait(5)
    assert len([e for e in view.log if e[0] == "show_message" and e[2]]) == 2
