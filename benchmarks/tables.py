"""Markdown tables from the benchmark JSON files, for docs/benchmarks.md and gpu.sh's summary.

    .venv/bin/python benchmarks/tables.py [DIR]      (default docs/benchmarks)

Prints one table per JSON found, each headed by the machine that produced it (the card or the CPU, torch
threads, load average), so a figure never appears without its machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _machine(r: dict[str, Any]) -> str:
    m = r["machine"]
    load = r["load_average_before_after"]
    threads = "" if m["device"].startswith("cuda") else f", torch threads: {m['torch_threads']}"
    return f"*{m['device_name']}{threads}; load average {load[0]:.1f} before, {load[1]:.1f} after; {r['measured']}*"


def _num(v: float | None, spec: str, suffix: str = "") -> str:
    return "–" if v is None else f"{v:{spec}}{suffix}"


def stylize(r: dict[str, Any]) -> list[str]:
    out = [f"Stylization ({r['weights']}). {_machine(r)}", "",
           "| size | config | median s | CPU s | runs | peak MiB | vs ref | vs ref, CPU s | max diff | p99.9 diff |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ref_cpu = {row["size"]: row.get("cpu_s") for row in r["rows"] if row["config"] == "reference"}
    for row in r["rows"]:
        # the same ratio on process CPU time: on a shared machine wall time is partly the wait for a core
        cpu_ratio = ref_cpu[row["size"]] / row["cpu_s"] if ref_cpu.get(row["size"]) and row.get("cpu_s") else None
        out.append(f"| {row['size']}² | {row['config']} | {row['median_s']:.3f} | {_num(row.get('cpu_s'), '.2f')} | "
                   f"{row.get('runs', len(row['all_s']))} | {row['peak_mib']:.0f} | "
                   f"{_num(row['speedup_vs_reference'], '.2f', '×')} | {_num(cpu_ratio, '.2f', '×')} | "
                   f"{_num(row['max_diff_pct'], '.2f', '%')} | "
                   f"{_num(row['p999_diff_pct'], '.3f', '%')} |")
    for c in r["compile"]:
        done = f"{c['compile_s']:.1f} s" if c.get("compile_s") is not None else f"failed ({c.get('error')})"
        out.append(f"\ntorch.compile at {c['size']}²: first call {done} (not in the latency).")
    if r.get("trained_weights_check"):
        out += ["", "| trained weights | against | size | max diff | p99.9 diff |", "|---|---|---:|---:|---:|"]
        for t in r["trained_weights_check"]:
            out.append(f"| {t['weights']} | {t['against']} | {t['size']}² | {t['max_diff_pct']:.2f}% | "
                       f"{t['p999_diff_pct']:.3f}% |")
    out += ["", f"{r['goal']['verdict']}."]
    return out


def gatys(r: dict[str, Any]) -> list[str]:
    out = [f"Gatys, {r['timed_iterations']} timed iterations after {r['warmup_iterations']} warm-up. {_machine(r)}",
           "", "| size | implementation | s / iteration | CPU s / iteration | vs reference | on CPU s | first loss |",
           "|---:|---|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        out.append(f"| {row['size']}² | {row['implementation']} | {row['s_per_iteration']:.4f} | "
                   f"{_num(row.get('cpu_s_per_iteration'), '.4f')} | {row['speedup_vs_reference']:.2f}× | "
                   f"{_num(row.get('speedup_vs_reference_cpu'), '.2f', '×')} | {row['first_loss']:.6g} |")
    return out


def speed_quality(r: dict[str, Any]) -> list[str]:
    out = [f"Speed vs quality, content long side {r['size_long_side']}, {r['iterations']} Gatys iterations. "
           f"{_machine(r)}", "",
           "| pair | feed-forward s (CPU s) | FF loss | Gatys from | reaches FF loss at | time (CPU s) "
           "| FF speed-up (on CPU s) | final / FF loss |",
           "|---|---:|---:|---|---:|---:|---:|---:|"]
    for p in r["pairs"]:
        ff = p["feedforward"]
        name = f"{p['content'].rsplit('/', 1)[-1]} × {p['style']}"
        ff_time = f"{ff['time_s']:.3f} ({_num(ff.get('cpu_s'), '.3f')})"
        ff_loss = f"{ff['loss']:.3g}"
        for init, c in p["gatys"].items():
            k, t, tc = c["reach_iteration"], c["reach_time_s"], c.get("reach_cpu_s")
            reach = "(starts there)" if init == "feedforward" else ("not reached" if k is None else f"iteration {k}")
            speed = p["speedup_at_equal_loss"].get(init)
            speed_cpu = p.get("speedup_at_equal_loss_cpu", {}).get(init)
            out.append(f"| {name} | {ff_time} | {ff_loss} | {init} | {reach} | {_num(t, '.2f', ' s')} "
                       f"({_num(tc, '.2f')}) | {_num(speed, '.0f', '×')} ({_num(speed_cpu, '.0f', '×')}) "
                       f"| {c['final_loss'] / ff['loss']:.3f} |")
            name = ff_time = ff_loss = ""  # once per pair
    return out + speed_quality_summary(r)


def speed_quality_summary(r: dict[str, Any]) -> list[str]:
    """The speed-up at equal loss across the pairs, with its spread ('>': a pair not reached, a lower bound)."""
    if "summary" not in r:
        return []
    out = ["", "| Gatys from | pairs | not reached | median | IQR (q1 – q3) | min – max | median on CPU s "
               "| per style (median) |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for init, s in r["summary"].items():
        gt = ">" if s["lower_bounds"] else ""
        styles = ", ".join(f"{name} {gt if v['not_reached'] else ''}{v['median']:.0f}×"
                           for name, v in s["per_style"].items())
        out.append(f"| {init} | {s['pairs']} | {s['not_reached']} | {gt}{s['median']:.1f}× | {s['iqr']:.1f}× "
                   f"({s['q1']:.1f} – {s['q3']:.1f}) | {gt}{s['min']:.1f}× – {gt}{s['max']:.1f}× "
                   f"| {gt}{s['cpu']['median']:.1f}× | {styles} |")
    return out


def transport(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    load = m["load_average_before_after"]
    out = [f"Transport, median of {r['runs']} round trips. *{m.get('cpu', '')} ({m['cpus']} CPUs); load average "
           f"{load[0]:.1f} before, {load[1]:.1f} after; {r['measured']}*", "",
           "| image (RGBA u8) | memory copy s | grpcio client s | pure-Python client s | CPU s per trip (grpcio) |",
           "|---|---:|---:|---:|---:|"]
    for size, med in r["medians_s"].items():
        cpu = r["all_s"][size].get("grpcio_cpu_per_trip_s")
        out.append(f"| {size}×{size} | {med['memory_copy_s']:.4f} | {med['grpcio_client_s']:.3f} | "
                   f"{med['pure_python_client_s']:.3f} | {_num(cpu, '.3f')} |")
    return out


def sr(r: dict[str, Any]) -> list[str]:
    out = [f"Super-resolution, {r['model']} x{r['scale']} from {r['size']}², whole image. {_machine(r)}", "",
           "| config | median s | CPU s | runs | peak MiB | vs eager | max diff (levels) | p99.9 diff (levels) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        out.append(f"| {row['config']} | {row['median_s']:.3f} | {_num(row.get('cpu_s'), '.2f')} | {row['runs']} | "
                   f"{row['peak_mib']:.0f} | {row['speedup_vs_eager']:.2f}× | {row['max_levels']:.2f} | "
                   f"{row['p999_levels']:.3f} |")
    return [*out, "", f"{r['goal']['verdict']}."]


def cli(r: dict[str, Any]) -> list[str]:
    out = [f"The `impasto stylize` process ({r['style']}; {r['photo']}). {_machine(r)}", "",
           "| photo | whole process s | reference forward s | vs reference | max diff (levels) |",
           "|---|---:|---:|---:|---:|"]
    for row in r["rows"]:
        out.append(f"| {row['width']}×{row['height']} | {row['process_s']:.2f} | {row['reference_forward_s']:.2f} | "
                   f"{row['speedup_vs_reference_forward']:.2f}× | {_num(row.get('max_diff_levels'), '.2f')} |")
    return [*out, "", f"{r['goal']['verdict']}."]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else OUT_DIR
    for name, render in (("stylize_speed", stylize), ("gatys_speed", gatys), ("speed_quality", speed_quality),
                         ("transport", transport), ("sr_speed", sr),
                         ("cli_speed", cli)):
        report = _load(folder, name)
        if report is not None:
            print(f"### {name}\n")
            print("\n".join(render(report)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
