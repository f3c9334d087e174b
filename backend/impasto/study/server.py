"""The study's web page on loopback (standard-library http.server, no new dependency).

Routes: ``GET /`` the page (``impasto/data/study/index.html``); ``GET /api/study`` title, question and trial count;
``GET /api/state?participant=ID`` progress and the next pair; ``POST /api/answer`` {participant, trial, choice,
ms}; ``POST /api/undo`` {participant}; ``GET /image?participant=ID&trial=N&side=left|right|reference``. The page
never learns which method is which (images are addressed by trial and side), so the study stays blind.

Only loopback addresses are served, requests must name a loopback host (a page elsewhere cannot reach the
server through DNS rebinding), and answers are taken only as JSON from a loopback origin (no cross-site posts)."""

from __future__ import annotations

import json
import logging
import mimetypes
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from impasto.errors import ImpastoError, InvalidArgument
from impasto.study.design import AnswerLog, Study, check_name

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "::1", "localhost")
MAX_BODY = 4096


def _page() -> bytes:
    return (resources.files("impasto") / "data" / "study" / "index.html").read_bytes()


class StudyServer(ThreadingHTTPServer):
    """Serves one study; `url` is where to point a browser. `port=0` lets the system pick a free port."""

    daemon_threads = True

    def __init__(self, study: Study, port: int = 0, host: str = "127.0.0.1"):
        if host not in LOOPBACK:
            raise InvalidArgument(f"the study server only listens on loopback, not {host!r}",
                                  hint="to run a study with people elsewhere, copy the study folder to their machine")
        if host == "::1":
            self.address_family = socket.AF_INET6
        self.study = study
        self.answers = AnswerLog(study)
        self.page = _page()
        self._orders: dict[str, dict[int, tuple[Any, bool]]] = {}
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def side_file(self, participant: str, trial: int, side: str) -> str | None:
        """The study-relative file shown on `side` of `trial` for this participant (None: no such thing)."""
        order = self._orders.get(participant)
        if order is None:
            order = self._orders[participant] = {t.index: (t, sw) for t, sw in self.study.order(participant)}
        if trial not in order:
            return None
        t, swapped = order[trial]
        if side == "reference":
            return self.study.reference.get(t.image)
        if side not in ("left", "right"):
            return None
        method = (t.b if swapped else t.a) if side == "left" else (t.a if swapped else t.b)
        return self.study.files[method][t.image]


def _blind(state: dict[str, Any]) -> dict[str, Any]:
    """The state without the method names: the page addresses images by trial and side only."""
    trial = state.get("trial")
    if trial:
        state = {**state, "trial": {k: v for k, v in trial.items() if k not in ("left", "right")}}
    return state


class _Handler(BaseHTTPRequestHandler):
    server: StudyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s " + format, self.address_string(), *args)

    # ---- responses ----

    def _send(self, status: int, body: bytes, ctype: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in LOOPBACK

    def _participant(self, value: Any) -> str:
        return check_name(str(value or ""), "participant id")

    # ---- routes ----

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "loopback host names only")
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            if url.path in ("/", "/index.html"):
                return self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
            if url.path == "/api/study":
                s = self.server.study
                return self._json({"title": s.title, "question": s.question, "total": len(s.trials()),
                                   "reference": bool(s.reference)})
            if url.path == "/api/state":
                return self._json(_blind(self.server.answers.state(self._participant(q.get("participant")))))
            if url.path == "/image":
                rel = self.server.side_file(self._participant(q.get("participant")), int(q.get("trial", "-1")),
                                            q.get("side", ""))
                if rel is None:
                    return self._error(HTTPStatus.NOT_FOUND, "no such image")
                path = self.server.study.root / rel
                ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                return self._send(HTTPStatus.OK, path.read_bytes(), ctype, cache=True)
        except (ImpastoError, ValueError) as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        self._error(HTTPStatus.NOT_FOUND, "not found")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_POST(self) -> None:  # noqa: N802
        if not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "loopback host names only")
        # Only our own page may answer: a JSON content type makes a browser ask first (CORS preflight, which
        # this server never grants) before another site's page could post here, and a stated Origin must be us.
        origin = urlsplit(self.headers.get("Origin") or "http://127.0.0.1").hostname or ""
        if not (self.headers.get("Content-Type") or "").startswith("application/json") or origin not in LOOPBACK:
            return self._error(HTTPStatus.FORBIDDEN, "JSON from the study page only")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            who = self._participant(body.get("participant"))
            if self.path == "/api/answer":
                ms = body.get("ms")
                return self._json(_blind(self.server.answers.answer(
                    who, int(body["trial"]), str(body.get("choice")), float(ms) if ms is not None else None)))
            if self.path == "/api/undo":
                return self._json(_blind(self.server.answers.undo(who)))
        except (ImpastoError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc))
        self._error(HTTPStatus.NOT_FOUND, "not found")
