"""Preference rates of a 2AFC study with 95% confidence intervals (Wilson score interval), per method pair and
per method, as a text table, JSON and an optional plot (matplotlib, where it is installed).

Each standing answer (undone ones removed) is one vote between the two methods of its trial. For a pair (a, b)
the rate is the share of that pair's votes that went to a. The Wilson interval (Wilson 1927) stays inside [0, 1]
and keeps its coverage for small counts and rates near 0 or 1, where the normal approximation does not. The
votes of one participant are not independent of each other, so with few participants the intervals are too
narrow; the report says how many participants the votes come from.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from impasto.study.design import AnswerLog, Study

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exact ends at k = 0 and k = n (the float sum lands a hair inside them)
    return 0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half)


def _rate(k: int, n: int) -> dict[str, Any]:
    low, high = wilson(k, n)
    return {"n": n, "wins": k, "rate": k / n if n else None, "ci95": [low, high]}


def report(study: Study) -> dict[str, Any]:
    """Counts, rates and Wilson 95% intervals from the study's answer log."""
    answers = AnswerLog(study).standing()
    pairs = []
    for a, b in itertools.combinations(study.methods, 2):
        votes = [e["chosen"] for e in answers if {e["left"], e["right"]} == {a, b}]
        pairs.append({"a": a, "b": b, **_rate(votes.count(a), len(votes)), "wins_b": votes.count(b)})
    methods = []
    for m in study.methods:
        mine = [e for e in answers if m in (e["left"], e["right"])]
        methods.append({"method": m, **_rate(sum(e["chosen"] == m for e in mine), len(mine))})
    left = sum(e["choice"] == "left" for e in answers)
    return {
        "study": study.title, "question": study.question, "folder": str(study.root),
        "participants": sorted({e["participant"] for e in answers}),
        "answers": len(answers), "trials_per_participant": len(study.trials()),
        "pairs": pairs, "methods": methods,
        "left_rate": _rate(left, len(answers)),  # a side bias check: ~0.5 expected
    }


def _ci(r: dict[str, Any]) -> str:
    return f"[{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"


def format_report(rep: dict[str, Any]) -> str:
    """The report as a text table (method A preferred over B: rate and its Wilson 95% interval)."""
    width = max([len(p["a"]) for p in rep["pairs"]] + [len(p["b"]) for p in rep["pairs"]] + [8])
    lines = [f"{rep['study']}: {rep['question']}",
             f"{rep['answers']} answers from {len(rep['participants'])} participant(s) "
             f"({', '.join(rep['participants']) or 'none yet'})", "",
             f"{'method A':{width}s}  {'method B':{width}s}  {'n':>4s}  {'A wins':>6s}  {'A rate':>6s}  "
             "95% CI (Wilson)"]
    for p in rep["pairs"]:
        rate = "   -  " if p["rate"] is None else f"{p['rate']:6.2f}"
        lines.append(f"{p['a']:{width}s}  {p['b']:{width}s}  {p['n']:4d}  {p['wins']:6d}  {rate}  {_ci(p)}")
    lines += ["", f"{'method':{width}s}  {'n':>4s}  {'wins':>6s}  {'rate':>6s}  95% CI (Wilson)"]
    for m in rep["methods"]:
        rate = "   -  " if m["rate"] is None else f"{m['rate']:6.2f}"
        lines.append(f"{m['method']:{width}s}  {m['n']:4d}  {m['wins']:6d}  {rate}  {_ci(m)}")
    lr = rep["left_rate"]
    if lr["n"]:
        lines += ["", f"left side chosen {lr['wins']} of {lr['n']} times ({lr['rate']:.2f}, 95% CI {_ci(lr)})"]
    return "\n".join(lines)


def plot_report(rep: dict[str, Any], path: str | Path) -> bool:
    """A row per method pair: A's preference rate (dot) with its interval, and the 0.5 line. False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    pairs = [p for p in rep["pairs"] if p["n"]]
    fig, ax = plt.subplots(figsize=(7, 0.55 * max(2, len(pairs)) + 1.2))
    ys = list(range(len(pairs)))[::-1]
    rates = [p["rate"] for p in pairs]
    err = [[max(0.0, p["rate"] - p["ci95"][0]) for p in pairs], [max(0.0, p["ci95"][1] - p["rate"]) for p in pairs]]
    ax.errorbar(rates, ys, xerr=err, fmt="o", color="#2a7ae2", ecolor="black", capsize=4, markersize=7)
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(ys, [f"{p['a']} over {p['b']} (n={p['n']})" for p in pairs])
    ax.set_xlim(-0.03, 1.03)
    ax.set_xlabel("preference rate of the first method, with Wilson 95% interval")
    ax.set_title(f"{rep['study']}: {rep['answers']} answers, {len(rep['participants'])} participant(s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
