"""`impasto study`: the study folder, per-participant orders, the answer log (undo, resume), the loopback server
over real HTTP, Wilson intervals and the report, and studies rendered with the Engine. The browser end to end
test is tests/integration/test_study_browser.py."""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from impasto.cli import main
from impasto.errors import InvalidArgument, NotFound
from impasto.study.design import AnswerLog, build_from_folders, load
from impasto.study.render import parse_style_spec, render_sr, render_styles
from impasto.study.report import format_report, plot_report, report, wilson
from impasto.study.server import StudyServer
from PIL import Image

LEVEL = {"a": 40, "b": 120, "c": 220}


def _folders(tmp: Path, names: tuple[str, ...] = ("x", "y"), size: tuple[int, int] = (24, 32)) -> dict[str, Path]:
    out = {}
    for m, level in LEVEL.items():
        (tmp / m).mkdir(exist_ok=True)
        for n in names:
            Image.fromarray(np.full((*size, 3), level, np.uint8)).save(tmp / m / f"{n}.png")
        out[m] = tmp / m
    return out


@pytest.fixture()
def study(tmp_path: Path) -> Any:
    return build_from_folders(tmp_path / "S", _folders(tmp_path), seed=3)


def test_wilson_interval_known_values() -> None:
    assert wilson(0, 0) == (0.0, 1.0)
    assert all(wilson(n, n)[1] == 1.0 and wilson(0, n)[0] == 0.0 for n in range(1, 200))  # exact ends
    assert wilson(2, 2) == pytest.approx((0.3424, 1.0), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    low, high = wilson(500, 1000)
    assert high - low == pytest.approx(2 * 1.96 * 0.5 / np.sqrt(1000), rel=0.01)  # normal limit for large n


def test_build_from_folders_copies_and_describes(study: Any, tmp_path: Path) -> None:
    again = load(study.root)
    assert again.methods == ["a", "b", "c"] and again.images == ["x", "y"] and again.seed == 3
    assert (study.root / "methods" / "b" / "y.png").is_file()
    assert len(again.trials()) == 6
    assert {(t.image, t.a, t.b) for t in again.trials()} == {
        (i, a, b) for i in ("x", "y") for a, b in (("a", "b"), ("a", "c"), ("b", "c"))}
    with pytest.raises(InvalidArgument, match="already holds a study"):
        build_from_folders(study.root, _folders(tmp_path))
    (tmp_path / "c" / "y.png").unlink()
    with pytest.raises(InvalidArgument, match="same images"):
        build_from_folders(tmp_path / "T", _folders(tmp_path, ("x",)) | {"c": tmp_path / "c", "d": tmp_path / "a"})
    with pytest.raises(InvalidArgument, match="not allowed"):
        build_from_folders(tmp_path / "U", {"a b": tmp_path / "a", "b": tmp_path / "b"})
    with pytest.raises(NotFound):
        load(tmp_path / "nothing")


def test_orders_are_random_per_participant_but_repeatable(study: Any) -> None:
    one, again, other = study.order("p1"), study.order("p1"), study.order("p2")
    assert one == again and one != other
    assert sorted(t.index for t, _ in one) == list(range(6))
    many = [sw for p in range(20) for _, sw in study.order(f"p{p}")]
    assert 0.3 < np.mean(many) < 0.7  # either side, about half the time


def test_answer_log_undo_resume_and_stale_answers(study: Any) -> None:
    log = AnswerLog(study)
    s = log.state("p1")
    assert s["answered"] == 0 and s["total"] == 6 and not s["done"]
    first = s["trial"]["index"]
    s = log.answer("p1", first, "left", 321.0)
    assert s["answered"] == 1 and s["trial"]["index"] != first
    assert log.answer("p1", first, "right")["ignored"]  # a double press: not recorded twice
    second = s["trial"]["index"]
    log.answer("p1", second, "right")
    s = log.undo("p1")
    assert s["answered"] == 1 and s["trial"]["index"] == second  # the undone pair comes back
    assert AnswerLog(study).state("p1") == s  # a new server (restart) sees the same
    assert AnswerLog(study).state("p2")["answered"] == 0
    with study.answers_path.open("a") as f:
        f.write('{"type": "answer", "partic')  # a line cut short by a crash
    assert AnswerLog(study).state("p1") == s
    with pytest.raises(InvalidArgument):
        log.answer("p1", second, "middle")
    for _ in range(5):
        s = log.answer("p1", s["trial"]["index"], "left") if s["trial"] else s
    assert s["done"] and s["trial"] is None and s["answered"] == 6
    assert log.undo("p2")["answered"] == 0  # nothing to undo: no line written
    lines = study.answers_path.read_text().splitlines()
    assert sum('"undo"' in v for v in lines) == 1


def _get(url: str, host: str | None = None) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), ""


def _post(url: str, body: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture()
def server(study: Any) -> Iterator[StudyServer]:
    srv = StudyServer(study, 0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_server_is_blind_loopback_only_and_records(server: StudyServer, study: Any) -> None:
    url = server.url
    assert url.startswith("http://127.0.0.1:")
    code, page, ctype = _get(url)
    assert code == 200 and b"<html" in page and ctype.startswith("text/html")
    assert json.loads(_get(url + "api/study")[1]) == {"title": "Image comparison", "total": 6, "reference": False,
                                                     "question": "Which image looks better?"}
    state = json.loads(_get(url + "api/state?participant=p1")[1])
    trial = state["trial"]
    assert set(trial) == {"index", "image", "reference"}  # no method names reach the page
    t, swapped = dict((t.index, (t, sw)) for t, sw in study.order("p1"))[trial["index"]]
    left = t.b if swapped else t.a
    code, png, ctype = _get(url + f"image?participant=p1&trial={trial['index']}&side=left")
    assert code == 200 and ctype == "image/png"
    assert png == (study.root / study.files[left][t.image]).read_bytes()
    assert _get(url + f"image?participant=p1&trial={trial['index']}&side=reference")[0] == 404
    assert _get(url + "image?participant=p1&trial=99&side=left")[0] == 404
    assert _get(url + "api/state?participant=../etc")[0] == 400
    assert _get(url + "api/study", host="attacker.example:80")[0] == 403  # DNS rebinding
    code, s = _post(url + "api/answer", {"participant": "p1", "trial": trial["index"], "choice": "left", "ms": 5})
    assert code == 200 and s["answered"] == 1 and "left" not in s["trial"]
    assert _post(url + "api/answer", {"participant": "p1", "trial": "x", "choice": "left"})[0] == 400
    cross_site = {"participant": "p1", "trial": s["trial"]["index"], "choice": "left"}
    assert _post(url + "api/answer", cross_site, Origin="https://attacker.example")[0] == 403
    assert _post(url + "api/answer", cross_site, **{"Content-Type": "text/plain"})[0] == 403
    assert _post(url + "api/undo", {"participant": "p1"})[1]["answered"] == 0
    events = [json.loads(v) for v in study.answers_path.read_text().splitlines()]
    assert [e["type"] for e in events] == ["answer", "undo"] and events[0]["chosen"] == left
    with pytest.raises(InvalidArgument, match="loopback"):
        StudyServer(study, 0, host="0.0.0.0")


def test_report_table_json_and_plot(study: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    log = AnswerLog(study)
    for who in ("p1", "p2"):  # everyone prefers the brighter image
        s = log.state(who)
        while not s["done"]:
            t = s["trial"]
            s = log.answer(who, t["index"], "left" if LEVEL[t["left"]] > LEVEL[t["right"]] else "right")
    rep = report(study)
    assert rep["answers"] == 12 and rep["participants"] == ["p1", "p2"]
    pair = {(p["a"], p["b"]): p for p in rep["pairs"]}
    assert pair[("a", "b")]["rate"] == 0.0 and pair[("a", "b")]["n"] == 4 and pair[("a", "b")]["wins_b"] == 4
    assert pair[("b", "c")]["ci95"] == pytest.approx(list(wilson(0, 4)))
    assert [m["rate"] for m in rep["methods"]] == [0.0, 0.5, 1.0]
    text = format_report(rep)
    assert "95% CI (Wilson)" in text and "12 answers from 2 participant(s)" in text
    assert plot_report(rep, tmp_path / "r.png") and (tmp_path / "r.png").stat().st_size > 1000
    assert main(["study", "report", str(study.root)]) == 0
    out = capsys.readouterr().out
    assert "a         b            4       0    0.00  [0.00, 0.49]" in out and "plot:" in out
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: the report still works
    assert not plot_report(rep, tmp_path / "r2.png")
    assert main(["study", "report", str(study.root), "--plot", str(tmp_path / "r2.png")]) == 0
    assert "no plot: matplotlib is not installed" in capsys.readouterr().out


def test_style_specs() -> None:
    assert parse_style_spec("wave").label == "wave"
    m = parse_style_spec("opt=starry-night:gatys=100")
    assert (m.label, m.model, m.gatys, m.refine) == ("opt", "starry-night", 100, 0)
    assert parse_style_spec("wave:refine=20").label == "wave-refine20"
    with pytest.raises(InvalidArgument):
        parse_style_spec("a=b=c")


def test_render_sr_and_styles_with_the_engine(tmp_path: Path, impasto_home: Path) -> None:
    from impasto.engine.engine import Engine, EngineConfig

    rng = np.random.default_rng(5)
    (tmp_path / "photos").mkdir()
    for n in ("p", "q"):
        Image.fromarray(rng.integers(0, 255, (34, 42, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"{n}.png")
    engine = Engine(EngineConfig(device="cpu"))
    sr = render_sr(tmp_path / "SR", ["bicubic", "srgan-x2"], [tmp_path / "photos"], scale=2, engine=engine, seed=1)
    assert sr.methods == ["bicubic", "srgan-x2"] and sr.images == ["p", "q"] and len(sr.trials()) == 2
    with Image.open(sr.root / sr.files["srgan-x2"]["p"]) as im:
        assert im.size == (42, 34)  # cropped to a multiple of 2, then x2 of the LR
    with Image.open(sr.root / sr.reference["p"]) as im:
        assert im.size == (42, 34)
    st = render_styles(tmp_path / "ST", ["ff=udnie", "wave", "opt=udnie:gatys=2"], [tmp_path / "photos" / "p.png"],
                       size=48, engine=engine)
    assert st.methods == ["ff", "wave", "opt"] and len(st.trials()) == 3
    with Image.open(st.root / st.files["opt"]["p"]) as im:
        assert im.size == (48, 39)
    assert main(["study", "build", "--out", str(tmp_path / "X"), "--sr", "bicubic", "srgan-x2"]) == 1  # no photos
