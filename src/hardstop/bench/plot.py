"""``--plot FILE.png``: the results in one figure (matplotlib, from ``pip install 'hardstop-threads[bench]'``).

Left, every cell: coloured by its median stop latency, red where it did not
stop. Right: the slowdown of a loop while not stopped, and the cost of a stop
request and of a guarded call that does not time out.
"""

from __future__ import annotations

import importlib
from typing import Any

from hardstop.bench.report import Results, cell_text

COLOURS = {"not stopped": "#e8736c", "at exit": "#ff9f80", "n/a": "#e8e8e8", "not installed": "#ffffff"}


def missing() -> str:
    """Why a plot cannot be drawn here, or "" when it can."""
    try:
        importlib.import_module("matplotlib")
    except ImportError as error:
        return f"--plot needs matplotlib ({error}): pip install 'hardstop-threads[bench]'"
    return ""


def _grid(axes: Any, figure: Any, results: Results, matplotlib: Any) -> None:
    cells = {(c["method"], c["workload"], c["thread"]): c for c in results["cells"]}
    columns = [(w, t) for t in ("worker", "main") for w in results["workloads"]]
    rows = results["methods"]
    norm = matplotlib.colors.LogNorm(0.01, 1000)
    cmap = matplotlib.colormaps["viridis"]
    image: list[list[tuple[float, float, float, float]]] = []
    for method in rows:
        line: list[tuple[float, float, float, float]] = []
        for workload, thread in columns:
            cell = cells[method["key"], workload["key"], thread]
            latency = cell["latency_ms"]
            if cell["status"] in ("stopped", "partly stopped"):
                line.append(cmap(norm(max(latency["median"], 0.01))))
            else:
                line.append(matplotlib.colors.to_rgba(COLOURS.get(cell["status"], "#ffffff")))
            dark = cell["status"] in ("stopped", "partly stopped") and norm(max(latency["median"], 0.01)) < 0.6
            text = cell_text(cell).replace(" / ", "\n").replace("at exit: ", "exit\n")
            axes.text(
                len(line) - 1,
                len(image),
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
            )
        image.append(line)
    axes.imshow(image, aspect="auto")
    axes.set_xticks(range(len(columns)), [f"{w['label']}\n({t})" for w, t in columns], fontsize=8, rotation=30)
    axes.set_yticks(range(len(rows)), [m["label"] for m in rows], fontsize=9)
    axes.axvline(len(results["workloads"]) - 0.5, color="black", linewidth=2)
    axes.set_title(
        f"stop latency, median / p99 ms (NO: not stopped within {results['settings']['bound']} s)", fontsize=10
    )
    figure.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="median ms", shrink=0.6)


def _number(value: float, unit: str, signed: bool) -> str:
    text = f"{value:+.1f}" if signed else f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f" {text}{unit}"


def _bars(axes: Any, rows: list[tuple[str, float | None, list[float] | None]], title: str, unit: str) -> None:
    """Horizontal bars, one per (label, value, 95% interval or None); a log scale for costs."""
    shown = [row for row in rows if row[1] is not None]
    positions = list(range(len(shown)))
    values = [value or 0.0 for _, value, _ in shown]
    signed = any(interval is not None for _, _, interval in shown)
    errors = None
    if signed:
        errors = [
            [value - (interval or [value, value])[0] for (_, _, interval), value in zip(shown, values, strict=True)],
            [(interval or [value, value])[1] - value for (_, _, interval), value in zip(shown, values, strict=True)],
        ]
    axes.barh(positions, values, xerr=errors, color="#4c72b0", ecolor="#555555", capsize=2)
    axes.set_yticks(positions, [label for label, _, _ in shown], fontsize=8)
    axes.invert_yaxis()
    ends = [value + (errors[1][i] if errors else 0.0) for i, value in enumerate(values)]
    for position, value, end in zip(positions, values, ends, strict=True):
        axes.text(max(end, 0.0), position, _number(value, unit, signed), va="center", fontsize=7)
    if signed:
        axes.set_xscale("symlog", linthresh=1)
        axes.axvline(1, color="grey", linestyle=":", linewidth=1)
    else:
        axes.set_xscale("log")
    axes.set_xlim(right=max(ends) * 8)  # room for the last label
    axes.set_title(title, fontsize=10)


def draw(results: Results, path: str) -> None:
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot = importlib.import_module("matplotlib.pyplot")
    figure = pyplot.figure(figsize=(17, 10), layout="constrained")
    grid = figure.add_gridspec(2, 2, width_ratios=[2.3, 1])
    _grid(figure.add_subplot(grid[:, 0]), figure, results, matplotlib)
    methods = results["methods"]
    slowdowns = [(m["label"], m.get("slowdown_pct"), m.get("interval_pct")) for m in methods]
    _bars(
        figure.add_subplot(grid[0, 1]),
        slowdowns,
        "the loop's slowdown while not stopped\n(% against a plain thread, with its 95% interval)",
        "%",
    )
    costs: list[tuple[str, float | None, list[float] | None]] = []
    for m in methods:
        if m.get("request_us") is not None:
            costs.append((f"{m['label']}: request", m["request_us"], None))
        if m.get("guarded_us") is not None:
            costs.append((f"{m['label']}: guarded call", m["guarded_us"], None))
    costs.append(("plain call (reference)", results["reference"]["guarded_us"], None))
    _bars(
        figure.add_subplot(grid[1, 1]),
        costs,
        "one stop request (warm); one guarded call\nthat does not time out (us)",
        " us",
    )
    machine = results["machine"]
    figure.suptitle(
        f"hardstop bench ({results['settings']['mode']}): {machine['python']}, {machine['system']}, "
        f"{machine['cpu']}, {machine['cpus']} CPUs",
        fontsize=11,
    )
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
