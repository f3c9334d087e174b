"""A scripted participant for `impasto study`: answers every pair of a study through the study server's own HTTP
API, choosing the image with the lower LPIPS distance to the reference it is shown. NOT human judgement: it
exists to show what a study produces (docs/quality.md) and to exercise the server outside the browser test.

    impasto study build --out /tmp/sr-study --sr bicubic impasto-sr-x4 srgan-x4 \\
        --photos backend/impasto/data/samples --scale 4 --seed 17
    python benchmarks/study_scripted.py /tmp/sr-study --participant scripted-lpips
    impasto study report /tmp/sr-study
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
import urllib.request
from typing import Any

import numpy as np
from impasto.study.design import load
from impasto.study.server import StudyServer
from impasto.train.lpips import LPIPSMetric
from PIL import Image


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _image(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def answer_all(study_dir: str, participant: str) -> int:
    study = load(study_dir)
    if not study.reference:
        raise SystemExit("this scripted participant needs a study with reference images (--sr, --style, --reference)")
    server = StudyServer(study, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    lpips = LPIPSMetric()
    url, n = server.url, 0
    try:
        state = json.loads(_get(f"{url}api/state?participant={participant}"))
        while not state["done"]:
            t = state["trial"]["index"]
            img = {s: _image(_get(f"{url}image?participant={participant}&trial={t}&side={s}"))
                   for s in ("left", "right", "reference")}
            d = {s: lpips(img[s], img["reference"]) for s in ("left", "right")}
            choice = "left" if (d["left"] or 0.0) <= (d["right"] or 0.0) else "right"
            state = _post(f"{url}api/answer", {"participant": participant, "trial": t, "choice": choice})
            n += 1
    finally:
        server.shutdown()
        server.server_close()
    print(f"{participant}: answered {n} pairs ({state['answered']} of {state['total']} standing)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study")
    p.add_argument("--participant", default="scripted-lpips")
    a = p.parse_args(argv)
    return answer_all(a.study, a.participant)


if __name__ == "__main__":
    sys.exit(main())
