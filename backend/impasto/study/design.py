"""A study folder and its answers.

Layout (self-contained, so a study can be copied to the machine people answer on)::

    STUDY/study.json              title, question, methods, images, seed
    STUDY/methods/METHOD/IMAGE.*  one output per method and image (same stem in every method)
    STUDY/reference/IMAGE.*       optional: what the outputs are compared against (shown above the pair)
    STUDY/answers.jsonl           one JSON object per line, appended as answers come

Trials are every (image, pair of methods); each participant sees them in an order and with sides (which method
is on the left) drawn from a generator seeded by the study's seed and the participant id, so a restarted server
shows the same participant the same sequence and resumes after their last answer. The log keeps everything:
an ``answer`` line per key press and an ``undo`` line that withdraws that participant's latest standing answer.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from impasto.errors import InvalidArgument, NotFound

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")  # method labels and participant ids
STUDY_FILE, ANSWERS_FILE = "study.json", "answers.jsonl"
DEFAULT_QUESTION = "Which image looks better?"


def check_name(name: str, what: str) -> str:
    if not NAME.match(name):
        raise InvalidArgument(f"{what} {name!r} is not allowed",
                              hint="use 1-64 letters, digits, '_', '.', '+' or '-', starting with a letter or digit")
    return name


@dataclass(frozen=True)
class Trial:
    index: int
    image: str  # the image's stem
    a: str  # the pair's methods, in the study's method order
    b: str


@dataclass
class Study:
    root: Path
    title: str
    question: str
    methods: list[str]
    images: list[str]
    files: dict[str, dict[str, str]]  # method -> stem -> path relative to root
    reference: dict[str, str] = field(default_factory=dict)  # stem -> path relative to root
    seed: int = 0

    @property
    def answers_path(self) -> Path:
        return self.root / ANSWERS_FILE

    def trials(self) -> list[Trial]:
        pairs = list(itertools.combinations(self.methods, 2))
        return [Trial(i, img, a, b) for i, (img, (a, b)) in enumerate(itertools.product(self.images, pairs))]

    def order(self, participant: str) -> list[tuple[Trial, bool]]:
        """This participant's sequence: (trial, swapped), swapped meaning method b is shown on the left."""
        rng = random.Random(f"{self.seed}:{participant}")
        trials = self.trials()
        rng.shuffle(trials)
        return [(t, rng.random() < 0.5) for t in trials]

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "title": self.title, "question": self.question, "methods": self.methods,
                "images": self.images, "files": self.files, "reference": self.reference, "seed": self.seed}


def load(root: str | Path) -> Study:
    root = Path(root)
    path = root / STUDY_FILE
    if not path.is_file():
        raise NotFound(f"{root}: not a study folder (no {STUDY_FILE})", hint="make one with `impasto study build`")
    d = json.loads(path.read_text())
    return Study(root, d["title"], d["question"], d["methods"], d["images"], d["files"], d.get("reference", {}),
                 d.get("seed", 0))


def _images_in(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise NotFound(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            if p.stem in found:
                raise InvalidArgument(f"{folder}: two images named {p.stem!r} ({found[p.stem].name}, {p.name})")
            found[p.stem] = p
    return found


def create(out: str | Path, files: Mapping[str, Mapping[str, Path]], reference: Mapping[str, Path] | None = None,
           *, title: str = "Image comparison", question: str = DEFAULT_QUESTION, seed: int | None = None,
           overwrite: bool = False) -> Study:
    """Copy each method's images (method -> stem -> file) into a new study folder `out` and describe it there.
    Every method must have the same stems."""
    out = Path(out)
    if len(files) < 2:
        raise InvalidArgument("a study needs at least two methods to compare")
    for m in files:
        check_name(m, "method name")
    stems = sorted(next(iter(files.values())))
    for m, f in files.items():
        if sorted(f) != stems:
            missing = sorted(set(stems) ^ set(f))
            raise InvalidArgument(f"method {m!r} does not have the same images as the others: {missing[:5]}",
                                  hint="each method needs one output per image, with the same file names")
    if not stems:
        raise InvalidArgument("no images to compare", hint=f"image files: {', '.join(IMAGE_SUFFIXES)}")
    if reference is not None and sorted(reference) != stems:
        raise InvalidArgument("the reference folder does not have the same images as the methods")
    if (out / STUDY_FILE).exists() or (out / ANSWERS_FILE).exists():
        if not overwrite:
            raise InvalidArgument(f"{out} already holds a study", hint="choose another --out, or pass --overwrite")
        shutil.rmtree(out)
    study = Study(out, title, question, list(files), stems, {}, {},
                  random.SystemRandom().randrange(2**31) if seed is None else seed)
    for m, f in files.items():
        (out / "methods" / m).mkdir(parents=True, exist_ok=True)
        study.files[m] = {}
        for stem, src in f.items():
            rel = f"methods/{m}/{stem}{src.suffix.lower()}"
            if Path(src).resolve() != (out / rel).resolve():
                shutil.copyfile(src, out / rel)
            study.files[m][stem] = rel
    if reference is not None:
        (out / "reference").mkdir(parents=True, exist_ok=True)
        for stem, src in reference.items():
            rel = f"reference/{stem}{src.suffix.lower()}"
            if Path(src).resolve() != (out / rel).resolve():
                shutil.copyfile(src, out / rel)
            study.reference[stem] = rel
    (out / STUDY_FILE).write_text(json.dumps(study.to_json(), indent=2) + "\n")
    return study


def build_from_folders(out: str | Path, methods: Mapping[str, str | Path], reference: str | Path | None = None,
                       **kw: Any) -> Study:
    """A study from folders that hold one output per image each, matched by file name (without extension)."""
    files = {m: _images_in(Path(d)) for m, d in methods.items()}
    ref = _images_in(Path(reference)) if reference else None
    return create(out, files, ref, **kw)


class AnswerLog:
    """The study's answers.jsonl: appended under a lock, one flushed line per event, replayed per participant."""

    def __init__(self, study: Study):
        self.study = study
        self.path = study.answers_path
        self._lock = threading.Lock()

    def events(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short by a crash: the rest is still good
                    continue
        return out

    def _append(self, event: dict[str, Any]) -> None:
        line = (json.dumps(event) + "\n").encode()
        with self.path.open("a+b") as f:
            if f.seek(0, 2) > 0:
                f.seek(-1, 2)
                if f.read(1) != b"\n":  # a line cut short by a crash: start a new one, keep ours whole
                    line = b"\n" + line
            f.write(line)
            f.flush()

    def standing(self, participant: str | None = None) -> list[dict[str, Any]]:
        """The answers that stand (undone ones removed), in the order given; one participant's or everyone's."""
        kept: dict[str, list[dict[str, Any]]] = {}
        for e in self.events():
            who = e.get("participant", "")
            if participant is not None and who != participant:
                continue
            if e.get("type") == "answer":
                kept.setdefault(who, []).append(e)
            elif e.get("type") == "undo" and kept.get(who):
                kept[who].pop()
        return [e for answers in kept.values() for e in answers]

    def state(self, participant: str) -> dict[str, Any]:
        """Progress and the next trial (None when every trial is answered) for `participant`."""
        done = {e["trial"] for e in self.standing(participant)}
        order = self.study.order(participant)
        nxt = next(((t, sw) for t, sw in order if t.index not in done), None)
        state: dict[str, Any] = {"participant": participant, "answered": len(done), "total": len(order),
                                 "done": nxt is None, "trial": None}
        if nxt is not None:
            t, swapped = nxt
            state["trial"] = {"index": t.index, "image": t.image, "reference": t.image in self.study.reference,
                              "left": t.b if swapped else t.a, "right": t.a if swapped else t.b}
        return state

    def answer(self, participant: str, trial: int, choice: str, ms: float | None = None) -> dict[str, Any]:
        """Record `choice` ("left"/"right") for `trial` if it is the participant's current one; the new state.
        A repeated or stale answer (a double key press, a second tab) is ignored, not recorded twice."""
        if choice not in ("left", "right"):
            raise InvalidArgument(f"choice must be 'left' or 'right', got {choice!r}")
        with self._lock:
            state = self.state(participant)
            cur = state["trial"]
            if cur is None or cur["index"] != trial:
                return {**state, "ignored": True}
            self._append({"type": "answer", "participant": participant, "trial": trial, "image": cur["image"],
                          "left": cur["left"], "right": cur["right"], "choice": choice, "chosen": cur[choice],
                          "ms": ms, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            return self.state(participant)

    def undo(self, participant: str) -> dict[str, Any]:
        """Withdraw the participant's latest standing answer (nothing to undo: no line written)."""
        with self._lock:
            mine = self.standing(participant)
            if mine:
                self._append({"type": "undo", "participant": participant, "trial": mine[-1]["trial"],
                              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            return self.state(participant)
