"""`impasto study build|serve|report`: a two-alternative forced-choice (2AFC) study of output quality —
build it from method folders or render it with the Engine, answer it in a browser on loopback, report
preference rates with Wilson 95% intervals (docs/quality.md)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from impasto.errors import InvalidArgument


def _method(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER, got {text!r}")
    return name, folder


def register(sub: Any) -> None:
    st = sub.add_parser("study", help="2AFC studies: build, serve on loopback, report preference rates")
    ssub = st.add_subparsers(dest="study_command", metavar="ACTION", required=True)

    b = ssub.add_parser(
        "build", help="make a study folder from method folders, SR models or style methods",
        description="Every image is compared for every pair of methods. Give exactly one of --methods (folders "
                    "with one output per image, same file names), --sr (SR models, or 'bicubic', on --photos "
                    "degraded here) or --style (style methods on --photos: [LABEL=]MODEL[:refine=N|:gatys=N]).")
    b.add_argument("--out", required=True, help="the study folder to create")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--methods", nargs="+", type=_method, metavar="NAME=DIR", help="one folder per method")
    src.add_argument("--sr", nargs="+", metavar="MODEL", help="SR models to compare (store names or 'bicubic')")
    src.add_argument("--style", nargs="+", metavar="SPEC",
                     help="style methods, e.g. ff=starry-night ref=starry-night:refine=20 opt=starry-night:gatys=100")
    b.add_argument("--reference", metavar="DIR", help="with --methods: reference images shown above each pair")
    b.add_argument("--photos", nargs="+", metavar="PATH", help="with --sr/--style: photos or folders of photos")
    b.add_argument("--scale", type=int, default=4, choices=[2, 4, 8], help="with --sr (default 4)")
    b.add_argument("--size", type=int, help="long side the photos are resized to first (default: --style 512, "
                                            "--sr as they are)")
    b.add_argument("--device", default="auto", help="with --sr/--style: where the Engine runs")
    b.add_argument("--title", help="shown at the top of the page")
    b.add_argument("--question", help="shown beside the title (default: 'Which image looks better?')")
    b.add_argument("--seed", type=int, help="seed of every participant's order and sides (default: random)")
    b.add_argument("--overwrite", action="store_true", help="replace a study (and its answers!) in --out")
    b.set_defaults(func=_build)

    s = ssub.add_parser("serve", help="serve a study's page on loopback; answers go to STUDY/answers.jsonl",
                        description="Prints the address once it listens. Participants open it with "
                                    "?participant=ID (or type their id); a restart resumes where each stopped.")
    s.add_argument("study")
    s.add_argument("--port", type=int, default=8765, help="default 8765; 0 lets the system pick a free one")
    s.set_defaults(func=_serve)

    r = ssub.add_parser("report", help="preference rates with Wilson 95%% intervals per method pair")
    r.add_argument("study")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.add_argument("--plot", metavar="PNG", help="where to draw the plot (default STUDY/report.png)")
    r.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    r.set_defaults(func=_report)


def _build(args: argparse.Namespace) -> int:
    kw: dict[str, Any] = {"seed": args.seed, "overwrite": args.overwrite}
    if args.title:
        kw["title"] = args.title
    if args.question:
        kw["question"] = args.question
    if args.methods:
        from impasto.study.design import build_from_folders

        if args.photos:
            raise InvalidArgument("--photos goes with --sr or --style", hint="--methods takes the folders directly")
        methods = dict(args.methods)
        if len(methods) != len(args.methods):
            raise InvalidArgument("two methods have the same name")
        study = build_from_folders(args.out, methods, args.reference, **kw)
    else:
        if not args.photos:
            raise InvalidArgument("--sr and --style need --photos", hint="photos, or folders of photos")
        if args.reference:
            raise InvalidArgument("--reference goes with --methods (with --sr/--style the photo is the reference)")
        from impasto.engine.engine import Engine, EngineConfig
        from impasto.study.render import render_sr, render_styles

        engine = Engine(EngineConfig(device=args.device))
        if args.sr:
            study = render_sr(args.out, args.sr, args.photos, scale=args.scale, size=args.size, engine=engine, **kw)
        else:
            study = render_styles(args.out, args.style, args.photos, size=args.size or 512, engine=engine, **kw)
    n = len(study.trials())
    print(f"built study {str(study.root)!r}: {len(study.methods)} methods ({', '.join(study.methods)}), "
          f"{len(study.images)} images, {n} pairs per participant")
    print(f"next: impasto study serve {study.root}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from impasto.study.design import load
    from impasto.study.server import StudyServer

    study = load(args.study)
    try:
        server = StudyServer(study, args.port)
    except OSError as exc:
        raise InvalidArgument(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}",
                              hint="choose another --port, or --port 0 for any free one") from None
    # SIGTERM stops like Ctrl+C; shutdown() must come from another thread than serve_forever's.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"impasto: serving study {study.title!r} ({len(study.trials())} pairs per participant) at {server.url}",
          flush=True)
    print(f"impasto: participants open {server.url}?participant=ID; answers go to {study.answers_path}; "
          "Ctrl+C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("impasto: study server stopped", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from impasto.study.design import load
    from impasto.study.report import format_report, plot_report, report

    study = load(args.study)
    rep = report(study)
    plot = None
    if not args.no_plot:
        path = Path(args.plot) if args.plot else study.root / "report.png"
        plot = str(path) if rep["answers"] and plot_report(rep, path) else None
        rep["plot"] = plot
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(format_report(rep))
    if plot:
        print(f"\nplot: {plot}")
    elif not args.no_plot and rep["answers"]:
        print("\nno plot: matplotlib is not installed (pip install matplotlib)")
    return 0
