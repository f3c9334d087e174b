"""Transport cost of `impasto serve`: round trips of RGBA u8 images through the no-op Echo RPC.

    .venv/bin/python benchmarks/transport.py [--quick] [--runs 7] [--out docs/benchmarks/transport.json]

For 1024x1024 and 4096x4096 it prints the median round trip through the grpcio client (impasto.serve.client)
and through the plugins' pure-Python client (plugins/common, run in a child process with protobuf in
pure-Python mode, as inside Krita and GIMP), beside a plain memory copy of the same bytes. The target
(issue 3) is a 4096x4096 round trip through the server in at most 0.25 s. Also writes transport.png beside
the JSON. --quick (the smoke test) sends 128x128 and 256x256 images twice each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import common  # benchmarks/common.py: the script's own folder is on sys.path

ROOT = Path(__file__).resolve().parents[1]
SIZES = (1024, 4096)
QUICK_SIZES = (128, 256)
TARGET_S = 0.25


def _timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up: connection, first allocations
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_per_trip(fn: Callable[[], object], server_pid: int, runs: int) -> float | None:
    """CPU seconds of client and server together per round trip. On a machine shared with other work the
    wall time mostly measures the queue for a core; this does not (and bounds an idle machine's wall time)."""
    before_server, before_client = _process_cpu(server_pid), time.process_time()
    for _ in range(runs):
        fn()
    after_server = _process_cpu(server_pid)
    if before_server is None or after_server is None:
        return None
    return (after_server - before_server + time.process_time() - before_client) / runs


def pure_client(address: str, runs: int, sizes: tuple[int, ...] = SIZES) -> dict[str, list[float]]:
    """Runs in the child process: the plugins' client, pure-Python protobuf."""
    sys.path.insert(0, str(ROOT / "plugins" / "common"))
    import impasto_client
    from google.protobuf.internal import api_implementation

    assert api_implementation.Type() == "python", api_implementation.Type()
    client = impasto_client.ImpastoClient(address)
    out = {}
    for size in sizes:
        data = os.urandom(size * size * 4)

        def trip(data: bytes = data, size: int = size) -> None:
            result = client.echo(data, size, size, "RGBA_U8")
            assert len(result.data) == len(data)

        out[str(size)] = _timed(trip, runs)
    return out


def start_server() -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "backend"), env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-m", "impasto", "serve", "--address", "127.0.0.1:0", "--device", "cpu"],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("impasto: serving on "):
            return proc, line.split()[3]
    raise SystemExit("impasto serve did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=None, help="timed trips per figure (default 7; --quick 2)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default docs/benchmarks/transport.json)")
    parser.add_argument("--out-dir", type=Path, default=None, help="folder for transport.json and transport.png")
    parser.add_argument("--quick", action="store_true", help="small images, few trips (smoke test)")
    parser.add_argument("--sizes", type=lambda v: tuple(int(x) for x in v.split(",")), help=argparse.SUPPRESS)
    parser.add_argument("--pure-client", metavar="ADDRESS", help=argparse.SUPPRESS)  # the child's mode
    args = parser.parse_args(argv)
    args.runs = args.runs or (2 if args.quick else 7)
    sizes: tuple[int, ...] = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    if args.out is None:
        args.out = (args.out_dir or ROOT / "docs" / "benchmarks") / "transport.json"
    if args.pure_client:
        print(json.dumps(pure_client(args.pure_client, args.runs, sizes)))
        return 0

    import grpc
    import numpy as np
    from google.protobuf.internal import api_implementation
    from impasto.serve.client import Client

    load_before = common.load_average()
    server, address = start_server()
    try:
        results: dict[str, dict[str, object]] = {}
        with Client(address) as client:
            for size in sizes:
                image = np.random.default_rng(size).integers(0, 256, (size, size, 4), dtype=np.uint8)
                raw = image.tobytes()
                copy = _timed(lambda raw=raw: bytearray(raw), args.runs)
                grpcio = _timed(lambda image=image: client.echo(image), args.runs)
                assert np.array_equal(client.echo(image), image)
                cpu = _cpu_per_trip(lambda image=image: client.echo(image), server.pid, args.runs)
                results[str(size)] = {"bytes": len(raw), "memory_copy_s": copy, "grpcio_client_s": grpcio,
                                      "grpcio_cpu_per_trip_s": cpu}
        env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
        child = subprocess.run([sys.executable, __file__, "--pure-client", address, "--runs", str(args.runs),
                                "--sizes", ",".join(map(str, sizes))], capture_output=True, text=True, env=env,
                               check=True)
        for size, times in json.loads(child.stdout).items():
            results[size]["pure_python_client_s"] = times
    finally:
        server.terminate()
        server.wait(30)

    print(f"{'image':>11} {'memory copy':>12} {'grpcio client':>14} {'pure-Python client':>19}"
          f"   (medians of {args.runs})")
    summary = {}
    for size, r in results.items():
        med = {k: statistics.median(v) for k, v in r.items() if isinstance(v, list)}  # type: ignore[arg-type]
        summary[size] = med
        print(f"{size + 'x' + size:>11} {med['memory_copy_s']:>11.3f}s {med['grpcio_client_s']:>13.3f}s "
              f"{med['pure_python_client_s']:>18.3f}s")
    big = summary[str(sizes[-1])]["grpcio_client_s"]
    verdict = "meets" if big <= TARGET_S else "misses"
    cpu = results[str(sizes[-1])]["grpcio_cpu_per_trip_s"]
    target = f"{verdict} the {TARGET_S} s target" if sizes[-1] == 4096 else "the target is for 4096x4096"
    print(f"{sizes[-1]}x{sizes[-1]} RGBA u8 round trip: {big:.3f} s ({target}); "
          f"{big / summary[str(sizes[-1])]['memory_copy_s']:.0f}x a memory copy; "
          + (f"{cpu:.3f} CPU s (client + server) per trip; " if isinstance(cpu, float) else "")
          + f"load average {common.load_average():.1f} on {os.cpu_count()} CPUs")
    report = {
        "what": "round trip of an RGBA u8 image through impasto serve's no-op Echo RPC (1 MiB chunks)",
        "machine": {"cpu": common.cpu_name(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(),
                    "grpcio": grpc.__version__, "protobuf_backend": api_implementation.Type(),
                    "load_average_before_after": [load_before, common.load_average()]},
        "runs": args.runs, "medians_s": summary, "all_s": results, "target_4096_s": TARGET_S,
        "measured": common.stamp(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    _plot(args.out.with_suffix(".png"), report)
    return 0


def _plot(path: Path, report: dict) -> None:
    """Median round trip per size and client beside the memory copy (log scale); matplotlib is optional."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    med = report["medians_s"]
    sizes = list(med)
    kinds = [("memory_copy_s", "memory copy"), ("grpcio_client_s", "grpcio client"),
             ("pure_python_client_s", "pure-Python client")]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    width = 0.27
    for i, (key, label) in enumerate(kinds):
        ax.bar([j + (i - 1) * width for j in range(len(sizes))], [med[s][key] for s in sizes], width, label=label)
    if "4096" in sizes:
        ax.axhline(report["target_4096_s"], color="k", ls="--", lw=0.8, label="4096 target")
    ax.set_xticks(range(len(sizes)), [f"{s}x{s} RGBA u8" for s in sizes])
    ax.set_yscale("log")
    ax.set_ylabel(f"round trip, median of {report['runs']} (s)")
    ax.legend(fontsize=8)
    m = report["machine"]
    fig.suptitle(f"Transport through impasto serve (Echo), {m['cpu']} ({m['cpus']} CPUs), "
                 f"load {m['load_average_before_after'][0]:.1f}", fontsize=8)
    plt.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    sys.exit(main())
