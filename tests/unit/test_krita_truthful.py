"""What the docker says stays true (issue 15): the health check, messages taken down when they stop being
true, progress with time left, limits known before sending, the brush size, restyling a result from its
source, and the live preview. The controller against fake documents, views and a fake backend client
(test_krita_controller.py); the pure helpers directly."""

from __future__ import annotations

import threading

import pytest
from fake_krita import FakeDocuments, FakeView
from plugin_loader import common_on_path, load, load_common
from test_krita_controller import FakeClient

common_on_path()
from impasto_client import BackendError  # noqa: E402

controller_mod = load("controller")
settings_mod = load("settings")
limits = load("limits")
progress_mod = load("progress")
preview_mod = load("preview")
StyleOptions = settings_mod.StyleOptions


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class RunningServer:
    """A backend process that is running (we pressed Start) and says nothing."""

    running = True

    def start(self, *args: object) -> None:
        pass

    def exit_code(self) -> None:
        return None

    def error_output(self) -> str:
        return ""

    def stop(self) -> None:
        self.running = False


def make(client: FakeClient | None = None, docs: FakeDocuments | None = None, store: dict | None = None,
         server: object = None):
    client = client or FakeClient()
    docs = docs or FakeDocuments()
    store = {} if store is None else store
    clock = Clock()
    ctrl = controller_mod.Controller(
        docs, lambda g, n, d: store.get((g, n), d), lambda g, n, v: store.__setitem__((g, n), v),
        client_factory=lambda address, token: client, server=server, clock=clock,
    )
    view = FakeView()
    ctrl.add_view(view)
    return ctrl, client, docs, view, clock


def tick(ctrl, clock: Clock, seconds: float) -> None:
    """Let `seconds` pass on the controller's clock, then let what that starts finish."""
    clock.now += seconds
    ctrl.poll()
    assert ctrl.wait(5)


def messages(view: FakeView) -> list[str]:
    return [e[1] for e in view.log if e[0] == "show_message"]


# -- health ----------------------------------------------------------------------------------------------

def test_health_check_notices_a_backend_that_went_away_and_came_back() -> None:
    ctrl, client, docs, view, clock = make()
    ctrl.refresh()
    assert ctrl.wait(5) and ctrl.connected is True
    asked = client.infos
    tick(ctrl, clock, controller_mod.HEALTH_SECONDS - 0.1)
    assert client.infos == asked  # not before it is due
    tick(ctrl, clock, 0.2)
    assert client.infos == asked + 1 and ctrl.connected is True
    client.up = False  # the backend died
    tick(ctrl, clock, controller_mod.HEALTH_SECONDS)
    assert ctrl.connected is False and view.last("show_status")[1] is False
    assert "not running" in view.last("show_status")[2]
    client.up = True  # and was started again, by whoever
    tick(ctrl, clock, controller_mod.IDLE_RETRY_SECONDS)
    assert ctrl.connected is True and view.last("show_status")[1] is True
    # Within HEALTH_SECONDS + IDLE_RETRY_SECONDS either way: the dot is red or green within ~2-4 s.
    assert controller_mod.HEALTH_SECONDS <= 2.0 and controller_mod.IDLE_RETRY_SECONDS <= 2.0


def test_no_health_check_while_a_job_streams() -> None:
    ctrl, client, docs, view, clock = make(FakeClient(gate=threading.Event()))
    ctrl.refresh()
    ctrl.wait(5)
    assert ctrl.apply(StyleOptions("udnie"))
    asked = client.infos
    clock.now += 10 * controller_mod.HEALTH_SECONDS
    for _ in range(5):
        ctrl.poll()
    assert client.infos == asked
    ctrl.cancel()
    assert ctrl.wait(5)


def test_a_wedged_backend_counts_as_gone() -> None:
    ctrl, client, docs, view, clock = make()
    ctrl.refresh()
    ctrl.wait(5)
    client.server_info = lambda: (_ for _ in ()).throw(BackendError("DEADLINE_EXCEEDED", "no answer"))
    tick(ctrl, clock, controller_mod.HEALTH_SECONDS)
    assert ctrl.connected is False and messages(view) == []  # the dot says it; no message each time
    assert client.timeout == load("connection").PROBE_TIMEOUT  # a health check never hangs


# -- messages that stop being true ------------------------------------------------------------------------

def test_added_layer_message_goes_when_undo_takes_the_layer_away() -> None:
    ctrl, client, docs, view, clock = make()
    ctrl.refresh()
    ctrl.wait(5)
    ctrl.apply(StyleOptions("udnie"))
    ctrl.wait(5)
    assert messages(view)[-1] == "Added layer “Udnie”."
    tick(ctrl, clock, controller_mod.WATCH_SECONDS)
    assert messages(view)[-1] == "Added layer “Udnie”."  # still true
    docs.names.remove("Udnie")  # Undo
    tick(ctrl, clock, controller_mod.WATCH_SECONDS)
    assert messages(view)[-1] == ""


def test_a_message_waits_to_be_seen_true_but_not_forever() -> None:
    ctrl, client, docs, view, clock = make()
    state = [False]  # with a view open, Krita adds a layer a moment after it was asked to
    ctrl.message("Added layer “X”.", valid=lambda: state[0])
    tick(ctrl, clock, controller_mod.WATCH_SECONDS)
    assert messages(view)[-1] == "Added layer “X”."
    state[0] = True
    tick(ctrl, clock, controller_mod.WATCH_SECONDS)
    state[0] = False  # undone
    tick(ctrl, clock, controller_mod.WATCH_SECONDS)
    assert messages(view)[-1] == ""
    ctrl.message("Added layer “Y”.", valid=lambda: False)  # undone before it was ever seen
    tick(ctrl, clock, controller_mod.WATCH_SECONDS)
    assert messages(view)[-1] == "Added layer “Y”."
    tick(ctrl, clock, controller_mod.NOTE_GRACE_SECONDS)
    assert messages(view)[-1] == ""


def test_views_whose_widgets_were_deleted_are_dropped() -> None:
    ctrl, client, docs, view, clock = make()

    class Gone:
        def show_limits(self) -> None:
            raise RuntimeError("wrapped C/C++ object of type QComboBox has been deleted")

    gone = Gone()
    ctrl.add_view(gone)
    ctrl._each("show_limits")
    assert gone not in ctrl.views and view in ctrl.views


def test_starting_message_goes_once_the_backend_answers() -> None:
    client = FakeClient(up=False)
    store = {("impasto", "interpreter"): "/usr/bin/python3"}
    ctrl, client, docs, view, clock = make(client, store=store, server=RunningServer())
    ctrl.refresh()
    ctrl.wait(5)
    ctrl.start_backend()
    assert messages(view)[-1] == "Starting the backend…"
    tick(ctrl, clock, controller_mod.RETRY_SECONDS)
    assert messages(view)[-1] == "Starting the backend…" and view.last("show_status")[2] == "Backend starting…"
    client.up = True
    tick(ctrl, clock, controller_mod.RETRY_SECONDS)
    assert ctrl.connected is True and messages(view)[-1] == ""


def test_not_running_error_goes_once_the_backend_answers() -> None:
    ctrl, client, docs, view, clock = make(FakeClient(up=False))
    ctrl.refresh()
    ctrl.wait(5)
    ctrl.apply(StyleOptions("udnie"))
    ctrl.wait(5)
    assert "not running" in messages(view)[-1]
    client.up = True
    tick(ctrl, clock, controller_mod.IDLE_RETRY_SECONDS)
    assert ctrl.connected is True and messages(view)[-1] == ""


# -- progress ---------------------------------------------------------------------------------------------

def test_progress_says_stage_percent_and_time_left() -> None:
    t = progress_mod.ProgressTracker("Applying Udnie", now=0.0)
    assert t.report(3.0).text == "Applying Udnie… 3 s" and t.report(3.0).percent is None
    t.update("queued", 0.0, 2, now=0.0)
    assert t.report(1.0).text == "Waiting in the queue (2 ahead)… 1 s"
    t.update("loading", 0.0, 0, now=1.0)
    t.update("stylize", 0.0, 0, now=2.0)
    report = t.report(9.0)
    assert report.text == "Stylizing: working… 9 s" and report.percent is None  # no fraction yet
    t.update("stylize", 0.25, 0, now=4.0)
    t.update("stylize", 0.5, 0, now=6.0)  # a quarter every 2 s: 4 s to go
    report = t.report(6.0)
    assert report.text == "Stylizing… 50%, about 4 s left" and report.percent == 50
    assert t.report(7.0).text == "Stylizing… 50%, about 3 s left"  # counts down between events
    t.update("refine", 0.1, 0, now=8.0)  # a new stage measures its own rate
    assert t.report(8.5).text == "Refining… 10%"


def test_durations_read_like_a_person_says_them() -> None:
    d = progress_mod.duration
    assert (d(0.4), d(59.4), d(60), d(80), d(599), d(750)) == ("0 s", "59 s", "1 min", "1 min 20 s",
                                                               "9 min 59 s", "13 min")


def test_docker_gets_activity_with_progress_events() -> None:
    ctrl, client, docs, view, clock = make()
    ctrl.refresh()
    ctrl.wait(5)
    ctrl.apply(StyleOptions("udnie"))
    ctrl.wait(5)
    assert ("show_progress", "stylize", 0.5, 0) in view.log
    texts = [e[1] for e in view.log if e[0] == "show_activity"]
    assert texts and texts[0].startswith("Stylizing… 50%")


# -- limits -----------------------------------------------------------------------------------------------

def test_upscale_factors_that_do_not_fit_are_offered_disabled_with_a_reason() -> None:
    choices = limits.upscale_choices(4096, 4096, 64_000_000, [2, 4])
    assert [c.enabled for c in choices] == [False, False, False]
    assert "8192×8192 (67 MP)" in choices[0].reason and "64 MP" in choices[0].reason
    assert "no model" in choices[2].reason
    assert [c.enabled for c in limits.upscale_choices(1000, 800, 64_000_000, [2, 4])] == [True, True, False]
    assert all(c.enabled for c in limits.upscale_choices(4096, 4096, 0, None))  # nothing known yet
    for c in choices:  # the artist cannot reach a server flag: never suggest one
        assert "--" not in c.reason and "flag" not in c.reason


def test_stylize_limits_and_brush_size() -> None:
    assert limits.stylize_problem(4096, 4096, 1.0, 64_000_000) == ""
    problem = limits.stylize_problem(4096, 4096, 2.0, 64_000_000)  # brush 50%: painted at 8192²
    assert "8192×8192" in problem and "brush size of 52% or more" in problem
    assert "Select a part" in limits.stylize_problem(9000, 9000, 1.0, 64_000_000)
    assert limits.stylize_problem(9000, 9000, 1.0, 0) == ""
    common = load_common()  # the brush size's arithmetic, shared with GIMP
    assert (common.BRUSH.low, common.BRUSH.high) == (0.25, 4.0)
    assert common.brush_to_scale(2.0) == 0.5 and common.scale_to_brush(0.25) == 4.0


def test_controller_refuses_before_sending_and_never_names_a_server_flag() -> None:
    docs = FakeDocuments(layer_size=(4096, 4096), image_size=(4096, 4096))
    ctrl, client, docs, view, clock = make(FakeClient(max_pixels=64_000_000), docs=docs)
    ctrl.refresh()
    ctrl.wait(5)
    tick(ctrl, clock, controller_mod.WATCH_SECONDS)
    assert ("show_limits",) in view.log
    assert [c.enabled for c in ctrl.upscale_choices()] == [False, False, False]
    assert not ctrl.upscale(2) and client.calls == []
    assert "64 MP" in messages(view)[-1] and "--max-pixels" not in messages(view)[-1]
    assert not ctrl.apply(StyleOptions("udnie", scale=2.0)) and client.calls == []
    assert "brush size" in messages(view)[-1]
    assert ctrl.apply(StyleOptions("udnie", scale=1.0))
    ctrl.wait(5)
    assert client.calls[0][2]["scale"] == 1.0


def test_brush_size_reaches_the_backend_as_processing_scale() -> None:
    ctrl, client, docs, view, clock = make()
    ctrl.apply(StyleOptions("wave", scale=0.5))
    ctrl.wait(5)
    assert client.calls[0][2]["scale"] == 0.5 and ctrl.settings.scale == 0.5


# -- apply on a result ------------------------------------------------------------------------------------

def test_apply_on_a_result_stylizes_its_source_unless_turned_off() -> None:
    docs = FakeDocuments(layer="Udnie", sources={"Udnie": "Background"}, names=["Background", "Udnie"])
    ctrl, client, docs, view, clock = make(docs=docs)
    ctrl.refresh()
    ctrl.wait(5)
    ctrl.apply(StyleOptions("wave"))
    ctrl.wait(5)
    snap, _, name = docs.added[0]
    assert docs.reads == [True] and snap.node == "Background" and name == "Wave"
    assert messages(view)[-1] == "Added layer “Wave” from “Background”, which “Udnie” was made from."
    ctrl.update_settings(from_source=False)
    ctrl.apply(StyleOptions("wave"))
    ctrl.wait(5)
    assert docs.reads[-1] is False and docs.added[-1][0].node == "Udnie"


# -- live preview -----------------------------------------------------------------------------------------

def test_preview_is_debounced_never_touches_the_document_and_is_replaced() -> None:
    ctrl, client, docs, view, clock = make()
    ctrl.refresh()
    ctrl.wait(5)
    ctrl.request_preview(StyleOptions("udnie", 0.5))
    ctrl.request_preview(StyleOptions("wave", 0.8))  # a slider drag: only where it stops counts
    ctrl.poll()
    assert [c for c in client.calls if c[0] == "stylize"] == []  # debounced
    tick(ctrl, clock, preview_mod.DEBOUNCE_SECONDS)
    (call,) = client.calls
    assert call[1][3:] == ("BGRA_U8", "wave") and call[2]["strength"] == 0.8
    image, caption = view.last("show_preview")[1:]
    assert image == (bytes(255 - b for b in range(16)), 2, 2) and caption.startswith("Wave, strength 80%")
    assert docs.added == [] and docs.opened == []


def test_a_running_preview_is_cancelled_when_settings_change() -> None:
    gate = threading.Event()
    ctrl, client, docs, view, clock = make(FakeClient(gate=gate))
    ctrl.refresh()
    ctrl.wait(5)
    ctrl.request_preview(StyleOptions("udnie"))
    clock.now += preview_mod.DEBOUNCE_SECONDS
    ctrl.poll()
    first = ctrl.preview.job
    assert first is not None and not first.cancelled
    ctrl.request_preview(StyleOptions("wave"))
    assert first.cancelled
    client.gate = None
    tick(ctrl, clock, preview_mod.DEBOUNCE_SECONDS)
    assert [c[1][4] for c in client.calls] == ["udnie", "wave"]
    assert view.last("show_preview")[2].startswith("Wave")
    assert not [e for e in view.log if e[0] == "show_preview" and e[2].startswith("Udnie")]


def test_apply_cancels_the_preview_and_preview_off_stops_it() -> None:
    ctrl, client, docs, view, clock = make(FakeClient(gate=threading.Event()))
    ctrl.refresh()
    ctrl.wait(5)
    ctrl.request_preview(StyleOptions("udnie"))
    clock.now += preview_mod.DEBOUNCE_SECONDS
    ctrl.poll()
    job = ctrl.preview.job
    ctrl.client_factory = lambda a, t: FakeClient()
    ctrl.apply(StyleOptions("udnie"))
    assert job.cancelled
    assert ctrl.wait(5) and len(docs.added) == 1
    ctrl.update_settings(live_preview=False)
    ctrl.request_preview(StyleOptions("wave"))
    tick(ctrl, clock, 1.0)
    assert ctrl.preview.job is None and ctrl.preview.wanted is None


def test_preview_follows_the_layer() -> None:
    ctrl, client, docs, view, clock = make()
    ctrl.refresh()
    ctrl.wait(5)
    ctrl.request_preview(StyleOptions("udnie"))
    tick(ctrl, clock, preview_mod.DEBOUNCE_SECONDS)
    assert len(client.calls) == 1
    docs.layer = "Other"  # another layer became active
    tick(ctrl, clock, controller_mod.WATCH_SECONDS)
    tick(ctrl, clock, preview_mod.DEBOUNCE_SECONDS)
    assert len(client.calls) == 2
    docs.unsupported = "Select a paint layer"
    tick(ctrl, clock, controller_mod.WATCH_SECONDS)
    assert view.last("show_preview")[1] is None


@pytest.mark.parametrize(("scale", "shrink", "expected"), [
    (1.0, 0.5, (2.0, True)),  # a 896 px layer previewed at 448: processed at 896, strokes as on the layer
    (1.0, 0.1, (2.0, False)),  # a 4480 px layer: capped at PREVIEW_WORK_SIDE, strokes larger
    (0.25, 0.1, (2.0, False)),
    (0.25, 1.0, (0.25, True)),
])
def test_preview_scale(scale: float, shrink: float, expected: tuple[float, bool]) -> None:
    assert preview_mod.preview_scale(scale, shrink, 448) == expected
