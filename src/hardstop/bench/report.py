"""The results as text: the machine, the stop tables, the costs, why cells did not stop, the goals."""

from __future__ import annotations

import os
import platform
import signal
import statistics
import sys
from collections.abc import Sequence
from typing import Any

import hardstop

Results = dict[str, Any]

THREADS = {
    "worker": "worker thread: median / p99 ms from the request to the work interrupted",
    "main": "main thread (a helper thread makes the request): median / p99 ms from the request to the work interrupted",
}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> list[float] | None:
    """The load average (1, 5, 15 min): other work on the machine makes every figure worse."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine(peers: dict[str, str | None]) -> dict[str, Any]:
    signum = hardstop.wake_signal()
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "hardstop": hardstop.__version__,
        "peers": peers,
        "wake_signal": signal.Signals(signum).name if signum is not None else None,
        "switch_interval_ms": sys.getswitchinterval() * 1e3,
    }


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 10 else f"{value:.0f}"


def cell_text(cell: dict[str, Any]) -> str:
    status, latency = cell["status"], cell["latency_ms"]
    if status == "stopped":
        return f"{_ms(latency['median'])} / {_ms(latency['p99'])}"
    if status == "at exit":
        return f"at exit: {_ms(latency['median'])}"
    if status == "partly stopped":
        return f"{cell['stopped']}/{cell['trials']}: {_ms(latency['median'])}"
    return {"not stopped": "NO", "n/a": "n/a", "not installed": "-", "error": "error"}[status]


def _cells(results: Results) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(c["method"], c["workload"], c["thread"]): c for c in results["cells"]}


def stop_tables(results: Results) -> str:
    cells = _cells(results)
    out = []
    for thread, title in THREADS.items():
        rows = [["method", *(w["label"] for w in results["workloads"])]]
        for method in results["methods"]:
            if thread not in method["threads"]:
                continue
            rows.append(
                [method["label"], *(cell_text(cells[method["key"], w["key"], thread]) for w in results["workloads"])]
            )
        out += [f"Stop, {title}", _table(rows), ""]
    out.append(
        f"NO: not stopped within {results['settings']['bound']} s (then withdrawn and released, see the notes); "
        "at exit: a daemon thread is never stopped, it is abandoned when its process exits (ms to the exit); "
        "-: not installed. Methods missing from the main-thread table cannot run there."
    )
    return "\n".join(out)


def _us(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f} us" if value < 100 else f"{value:,.0f} us"


def _slowdown(pct: float, interval: list[float]) -> str:
    return f"{pct:+.1f}% [{interval[0]:+.1f}, {interval[1]:+.1f}]"


def cost_table(results: Results) -> str:
    rows = [["method", "loop slowdown", "ns per unit", "stop request", "one-off request", "guarded call"]]
    for method in results["methods"]:
        slow = method.get("slowdown_pct")
        one_off = [c["request_us"] for c in results["cells"] if c["method"] == method["key"] and c["request_us"]]
        rows.append(
            [
                method["label"],
                "" if slow is None else _slowdown(slow, method["interval_pct"]),
                "" if method.get("unit_ns") is None else f"{method['unit_ns']:.0f}",
                _us(method.get("request_us")),
                _us(statistics.median(one_off)) if one_off else "",
                _us(method.get("guarded_us")),
            ]
        )
    reference = results["reference"]
    extra = []
    for method in results["methods"]:
        if method.get("plain_after_pct") is not None:
            extra.append(
                f"After the {method['label']} threads of the slowdown rounds had ended (their loops finished, "
                f"nobody killed them), a plain thread ran {method['plain_after_pct']:+.0f}% slower: the trace "
                "function they leave set outlives them (CPython 3.12+), until one raises (a killed KThread's does)."
            )
        if method.get("start_method"):
            startups = [c["startup_ms"] for c in results["cells"] if c.get("startup_ms") is not None]
            extra.append(
                f"{method['label']}: start method {method['start_method']}; start() to the work running in the "
                f"child: median {statistics.median(startups):.1f} ms."
                if startups
                else ""
            )
    rows.append(["plain thread (reference)", "", f"{reference['unit_ns']:.0f}", "", "", _us(reference["guarded_us"])])
    ran = {method["key"] for method in results["methods"]}
    footnotes = ["The plain thread's guarded call is a plain call"]
    if "process" in ran:
        footnotes.append("multiprocessing's is start() + join() of a process doing nothing")
    if "hardstop.kill" in ran:
        footnotes.append("hardstop.kill has no request cost of its own: the call waits for the end")
    noise = _slowdown(reference["control_pct"], reference["control_interval_pct"])
    rows.append(["plain thread again (the noise)", noise, "", "", "", ""])
    return "\n".join(
        [
            "Costs: the loop's slowdown while not stopped (CPU time per unit against a plain thread: the median "
            "of the per-round ratios [its 95% interval]); one stop "
            "request (warm: the median of many on a thread blocked in Lock.acquire, each withdrawn before the "
            "next); one-off: the median of the single requests made in the cells (machine-dependent: caches are "
            "cold after the settling sleep); a guarded call of a trivial function that does not time out.",
            _table(rows),
            "; ".join(footnotes) + ".",
            *filter(None, extra),
        ]
    )


def notes(results: Results) -> str:
    labels = {w["key"]: w["label"] for w in results["workloads"]}
    grouped: dict[tuple[str, str], dict[str, list[str]]] = {}
    for cell in results["cells"]:
        if cell["note"] and cell["status"] != "n/a":
            places = grouped.setdefault((cell["method"], cell["note"]), {})
            places.setdefault(cell["thread"], []).append(labels[cell["workload"]])
    out = ["Notes: what happened where a method did not stop the work"]
    for (method, note), places in grouped.items():
        every = [thread for thread, where in places.items() if len(where) == len(labels)]
        where = "; ".join(f"{thread}: {'all' if thread in every else ', '.join(w)}" for thread, w in places.items())
        out.append(f"  {method} ({where}): {note}")
    return "\n".join(out)


def goals(results: Results) -> list[tuple[str, str, str, str]]:
    """hardstop's rows against the issue's goals: (figure, hardstop, the others, met?)."""
    cells = _cells(results)
    methods = {m["key"]: m for m in results["methods"]}
    mine = [key for key in ("hardstop.interrupt", "hardstop.deadline", "hardstop.kill") if key in methods]
    rows: list[tuple[str, str, str, str]] = []

    def medians(workload: str, thread: str) -> dict[str, float]:
        return {
            key: cells[key, workload, thread]["latency_ms"]["median"]
            for key in methods
            if (key, workload, thread) in cells and cells[key, workload, thread]["status"] == "stopped"
        }

    latency_goals = results["workloads"] if "hardstop.interrupt" in methods else []  # interrupt()'s latencies
    for workload in latency_goals:
        for thread in ("worker", "main"):
            if not workload["woken"][thread]:
                continue
            found = medians(workload["key"], thread)
            if "hardstop.interrupt" not in found:
                rows.append((f"stop latency, {workload['label']} ({thread})", "NOT stopped", "", "NO"))
                continue
            own = found["hardstop.interrupt"]
            others = {k: v for k, v in found.items() if k not in mine}
            if others:
                best = min(others, key=others.__getitem__)
                rest = f"fastest {best} {_ms(others[best])} ms, median {_ms(statistics.median(others.values()))} ms"
                met = "yes" if own < statistics.median(others.values()) else "NO"
            else:
                rest, met = "none stopped it", "yes"
            rows.append((f"stop latency, {workload['label']} ({thread})", f"{_ms(own)} ms", rest, met))
    request = methods.get("hardstop.interrupt", {}).get("request_us")
    bare = methods.get("ctypes-ulong", {}).get("request_us")
    if request is not None:
        rows.append(
            ("cost of a stop request", _us(request), f"ctypes recipe {_us(bare)}" if bare else "", "(for reference)")
        )
    trace = methods.get("settrace", {}).get("slowdown_pct")
    for key in mine:
        slow = methods.get(key, {}).get("slowdown_pct")
        if slow is not None:
            rest = f"sys.settrace {trace:+.0f}%" if trace is not None else ""
            interval = methods[key]["interval_pct"]
            # Met when the slowdown is under 1%, or not measurable: its interval reaches below 1%.
            met = "yes" if slow < 1 else "yes (noise)" if interval[0] < 1 else "NO"
            rows.append((f"loop slowdown, {key}", _slowdown(slow, interval), rest, met))
    for key in mine:
        measured = [c for c in results["cells"] if c["method"] == key and c["status"] != "n/a"]
        woken = [c for c in measured if _woken(results, c["workload"], c["thread"])]
        missed = [_where(c) for c in woken if c["status"] != "stopped"]
        rows.append(
            (
                f"every wakeable wait stopped, {key}",
                f"{len(woken) - len(missed)} of {len(woken)}",
                ", ".join(missed),
                "yes" if not missed else "NO",
            )
        )
        unwoken = [c for c in measured if not _woken(results, c["workload"], c["thread"])]
        if unwoken:
            honest = all(c["status"] == "not stopped" for c in unwoken)
            rows.append(
                (f"reported not stopped, {key}", ", ".join(map(_where, unwoken)), "", "yes" if honest else "NO")
            )
    return rows


def _where(cell: dict[str, Any]) -> str:
    return f"{cell['workload']} ({cell['thread']})"


def _woken(results: Results, workload: str, thread: str) -> bool:
    return bool(next(w for w in results["workloads"] if w["key"] == workload)["woken"][thread])


def goal_table(results: Results) -> str:
    """The goals, or nothing when none of hardstop's methods ran."""
    measured = goals(results)
    if not measured:
        return ""
    rows = [("goal (hardstop's rows)", "hardstop", "the others", "met?"), *measured]
    reference = results["reference"]
    noise = _slowdown(reference["control_pct"], reference["control_interval_pct"])
    return "\n".join(["Goals", _table(rows), f"(slowdowns: a plain thread against itself measured {noise})"])


def header(results: Results) -> str:
    m = results["machine"]
    peers = ", ".join(f"{name} {version or 'not installed'}" for name, version in m["peers"].items())
    before, after = results.get("load_before"), results.get("load_after")
    load_text = (
        f"load average {before[0]} before, {after[0]} after (1 min), on {m['cpus']} CPUs"
        if before and after
        else "load average unknown"
    )
    return "\n".join(
        [
            f"{m['python']} ({m['executable']}), {m['system']}; {m['cpu']}, {m['cpus']} CPUs",
            f"hardstop {m['hardstop']}; {peers}; wake signal {m['wake_signal']}; "
            f"switch interval {m['switch_interval_ms']:g} ms",
            f"{results['settings']['mode']} mode: {load_text}; {results.get('elapsed_s', 0):.0f} s in all",
        ]
    )


def text(results: Results) -> str:
    parts = [header(results), stop_tables(results), cost_table(results), notes(results), goal_table(results)]
    return "\n\n".join(filter(None, parts))
