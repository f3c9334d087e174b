"""Apply in real Krita: from pressing Apply on a 2048x1536 layer to the new layer, through the installed plugin
and a real backend on loopback (issue 13's target: <= 3 s, with the bar moving).

    .venv/bin/python benchmarks/krita_apply.py [--size 2048x1536] [--runs 2] [--runtime auto torch] [--style udnie]

For each backend runtime: `impasto serve --warmup --runtime R` starts (models converted and loaded before the
clock runs), then one kritarunner session (Krita 5.1.5 on the host, offscreen) drives the installed plugin's
controller exactly as the docker does (tests/integration/krita_driver.py): a small warm-up Apply, then `--runs`
Applies on fresh WxH documents. Each row: seconds from Apply to the new layer in the document (read, send,
stylize, receive, write), median and spread, and how often the docker's progress line changed its percent
during the job; then the live preview on the same layer: seconds from the request (debounce included) to the
styled reduced copy (long side 448) shown. Needs kritarunner (apt-get install krita) and the plugin wheels
(.ci/plugin-wheels.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

DRIVER = common.ROOT / "tests" / "integration" / "krita_driver.py"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(runtime: str) -> tuple[subprocess.Popen, str]:
    address = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "impasto", "serve", "--address", address, "--warmup",
                             "--runtime", runtime], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    end = time.monotonic() + 600
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"impasto serve --runtime {runtime} exited before it was ready")
        if "warmed up" in line:
            return proc, address
    proc.kill()
    raise SystemExit("impasto serve did not warm up in 10 minutes")


def _krita(address: str, size: tuple[int, int], runs: int, style: str) -> dict:
    from impasto.cli import plugin_install

    base = Path(tempfile.mkdtemp(prefix="impasto-krita-bench-"))
    try:
        pykrita = base / "share" / "krita" / "pykrita"
        wheels = os.environ.get("IMPASTO_WHEELS") or str(common.ROOT / ".cache" / "plugin-wheels")
        plugin_install.install_krita(pykrita, Path(wheels))
        shutil.copy(DRIVER, base / "krita_driver.py")
        out = base / "out"
        out.mkdir()
        cases = [{"name": "warm", "depth": "U8", "style": style, "size": [64, 48]}]
        cases += [{"name": f"run{i}", "depth": "U8", "style": style, "size": list(size), "timeout": 600}
                  for i in range(runs)]
        cases += [{"name": f"preview{i}", "depth": "U8", "style": style, "size": list(size), "op": "preview"}
                  for i in range(runs)]
        spec = base / "spec.json"
        spec.write_text(json.dumps({"out": str(out), "address": address, "cases": cases}))
        (base / "run").mkdir(mode=0o700)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base / "home"),
               "XDG_DATA_HOME": str(base / "share"), "XDG_CONFIG_HOME": str(base / "config"),
               "XDG_RUNTIME_DIR": str(base / "run"), "QT_QPA_PLATFORM": "offscreen",
               "PYTHONPATH": os.pathsep.join([str(base), str(pykrita)]), "IMPASTO_KRITA_SPEC": str(spec)}
        proc = subprocess.run(["kritarunner", "-s", "krita_driver", "-f", "main"], env=env, capture_output=True,
                              text=True, timeout=300 + 600 * runs)
        results_file = out / "results.json"
        if not results_file.exists():
            raise SystemExit(f"kritarunner wrote no results (rc {proc.returncode}): {proc.stderr[-2000:]}")
        return json.loads(results_file.read_text())
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="2048x1536", help="layer size WxH (default 2048x1536)")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--runtime", nargs="+", default=["auto", "torch"], help="backend runtimes to compare")
    p.add_argument("--style", default="udnie")
    args = p.parse_args(argv)
    if shutil.which("kritarunner") is None:
        print("kritarunner not found: install Krita (apt-get install krita, or .ci/install-krita.sh)")
        return 2
    w, h = (int(v) for v in args.size.lower().split("x"))
    print(f"Krita Apply on {common.cpu_name()}; load average {common.load_average():.1f}; {w}x{h} U8 RGBA "
          f"layer, style {args.style}, {args.runs} runs per runtime (Krita 5.1.5, kritarunner offscreen)")
    for runtime in args.runtime:
        server, address = _serve(runtime)
        try:
            results = _krita(address, (w, h), args.runs, args.style)
        finally:
            server.terminate()
            server.wait(30)
        rows = [results.get(f"run{i}", {}) for i in range(args.runs)]
        bad = [r.get("error") or r.get("messages") for r in rows if not r.get("finished") or "seconds" not in r]
        if bad:
            print(f"{runtime:>6}: a run did not finish: {str(bad[0])[-800:]}")
            continue
        secs = [r["seconds"] for r in rows]
        percents = [len({m[2] for m in r["messages"] if m[0] == "show_activity" and m[2] is not None})
                    for r in rows]
        each = ", ".join(f"{s:.2f}" for s in secs)
        print(f"{runtime:>6}: Apply -> new layer {statistics.median(secs):6.2f} s (runs {each}); "
              f"progress percents shown per job: {', '.join(map(str, percents))}; load {common.load_average():.1f}")
        shown = [results.get(f"preview{i}", {}).get("preview_seconds") for i in range(args.runs)]
        if all(isinstance(v, float | int) for v in shown):
            print(f"{runtime:>6}: live preview shown {statistics.median(shown):6.2f} s after the change "
                  f"(runs {', '.join(f'{v:.2f}' for v in shown)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
