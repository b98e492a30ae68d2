"""``python -m hardstop bench``: every known way to stop a thread, measured side by side.

Runs each method on each workload, in a worker thread and, where the method
allows it, in the main thread; measures whether it stopped within a bound, the
stop latency, the cost of the request, the slowdown of a loop it watches, and
for timeout-style APIs the cost of a call that does not time out. Prints the
tables; ``--json FILE`` writes them, ``--plot FILE.png`` draws them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import hardstop
from hardstop.bench import children, measure, methods, peers, report
from hardstop.bench.workloads import WORKLOADS, Workload

METHODS: list[type[methods.Method]] = [*methods.COMMON, *peers.PEERS, *methods.HARDSTOP]


def _method_cells(kind: type[methods.Method], s: measure.Settings, why: str) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = []
    if why:
        return [measure.blank(kind.key, w.key, t, "not installed", why) for w in WORKLOADS for t in ("worker", "main")]
    if kind.where == "daemon":
        cells = children.daemon_cells(s)
    elif kind.where == "thread":
        cells = [measure.cell(kind, w, "worker", s) for w in WORKLOADS]
    if "main" in kind.threads:
        cells += [measure.cell(kind, w, "main", s) for w in WORKLOADS]
    else:
        cells += [measure.blank(kind.key, w.key, "main", "n/a", kind.not_main) for w in WORKLOADS]
    return cells


def _entry(kind: type[methods.Method], missing: str) -> dict[str, Any]:
    return {
        "key": kind.key,
        "label": kind.label,
        "threads": list(kind.threads),
        "timeout_style": kind.timeout_style,
        "missing": missing or None,
    }


def woken(workload: type[Workload], thread: str) -> bool:
    """Whether hardstop ends this wait here (README: "What is woken"): Condition
    waits anywhere; with the wake signal, the main thread's waits and, from
    CPython 3.15 (gh-144748), a worker's system calls."""
    signal = hardstop.wake_signal() is not None
    if workload.woken_anywhere:
        return True
    if thread == "main":
        return signal
    return signal and workload.system_call and sys.version_info >= (3, 15)


def run(s: measure.Settings, kinds: list[type[methods.Method]], say: Callable[[str], None]) -> dict[str, Any]:
    """Measure every cell of these methods; the results as written to the JSON file.

    The settrace recipe is measured last: on CPython 3.12+ a thread that ends
    with a trace function set leaves every thread of the process slower (a
    KThread that was killed does not: the trace function that raised is unset).
    That is measured after its loops (which end without being killed), and
    reported.
    """
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": report.machine({kind.distribution: peers.version(kind.distribution) for kind in peers.PEERS}),
        "settings": dataclasses.asdict(s),
        "load_before": report.load(),
    }
    results["workloads"] = [
        {"key": w.key, "label": w.label, "woken": {"worker": woken(w, "worker"), "main": woken(w, "main")}}
        for w in WORKLOADS
    ]
    missing = {kind.key: peers.load(kind.module)[1] if kind.module else "" for kind in kinds}
    usable = [kind for kind in kinds if not missing[kind.key]]
    with hardstop.deadline(60):  # hardstop's watchdog thread: started once, before anything is counted
        pass
    say("the loop's speed under each method, not stopped ...")
    iterations = measure.calibrate(s.loop_seconds)
    first = [k for k in usable if k.where != "process" and k is not methods.Settrace]
    units = measure.unit_costs([methods.Method, *first, measure.Control], s.rounds, iterations)
    plain = units["plain"]
    say("guarded calls that do not time out ...")
    guarded = measure.guarded_calls([k for k in usable if k.timeout_style], s)
    control = measure.compare(units["control"], plain)
    results["reference"] = {
        "unit_ns": statistics.median(plain),
        "control_pct": control["slowdown_pct"],
        "control_interval_pct": control["interval_pct"],
        "guarded_us": guarded["plain"],
    }
    entries, cells = {}, {}
    for kind in sorted(kinds, key=lambda k: k is methods.Settrace):
        began = time.monotonic()
        entry = _entry(kind, missing[kind.key])
        if kind is methods.Settrace and not missing[kind.key]:
            units.update(measure.unit_costs([kind], s.rounds, iterations))
            if sys.version_info >= (3, 12):  # where a trace function set by an ended thread slows the others
                after = measure.unit_costs([methods.Method], s.rounds, iterations)["plain"]
                entry["plain_after_pct"] = (statistics.median(after) / statistics.median(plain) - 1) * 100
        if kind.key in units:
            entry.update(measure.compare(units[kind.key], plain))
        entry["guarded_us"] = guarded.get(kind.key)
        entry["request_us"] = None if missing[kind.key] else measure.request_cost(kind, s.requests)
        cells[kind.key] = _method_cells(kind, s, missing[kind.key])
        if kind.where == "process" and not missing[kind.key]:
            hosted = children.process_results(s)
            cells[kind.key] = hosted.pop("cells") + cells[kind.key]
            entry.update(hosted)
        entries[kind.key] = entry
        stopped = sum(c["status"] == "stopped" for c in cells[kind.key])
        say(f"{kind.label}: {stopped} of {len(cells[kind.key])} cells stopped ({time.monotonic() - began:.1f} s)")
    results["methods"] = [entries[kind.key] for kind in kinds]
    results["cells"] = [cell for kind in kinds for cell in cells[kind.key]]
    results["load_after"] = report.load()
    results["elapsed_s"] = time.monotonic() - started
    return results


def _trials(text: str) -> int:
    try:
        trials = int(text)
    except ValueError:
        trials = 0
    if trials < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number of trials, 1 or more, not {text!r}")
    return trials


def _bound(text: str) -> float:
    try:
        bound = float(text)
    except ValueError:
        bound = math.nan
    if not 0 < bound < math.inf:  # NaN too
        raise argparse.ArgumentTypeError(f"takes a finite number of seconds more than 0, not {text!r}")
    return bound


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hardstop bench", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="more trials, a 1 s bound (a few minutes)")
    mode.add_argument("--smoke", action="store_true", help="one trial per cell, short bounds (a check that it runs)")
    parser.add_argument("--trials", type=_trials, help="trials per cell that stops (1 or more)")
    parser.add_argument("--bound", type=_bound, help="seconds a stop is given (more than 0, finite)")
    parser.add_argument("--methods", help="comma-separated keys of the methods to run (default: all)")
    parser.add_argument("--json", metavar="FILE", help="write the results to FILE")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the results (needs matplotlib)")
    args = parser.parse_args(argv)
    kinds = METHODS
    if args.methods is not None:
        wanted = args.methods.split(",")
        unknown = set(wanted) - {kind.key for kind in METHODS}
        if unknown:
            parser.error(
                f"argument --methods: unknown methods {sorted(unknown)} in {args.methods!r}; "
                f"known: {', '.join(kind.key for kind in METHODS)}"
            )
        kinds = [kind for kind in METHODS if kind.key in wanted]
    if args.plot:
        from hardstop.bench import plot

        why = plot.missing()
        if why:
            print(why, file=sys.stderr)
            return 2
    s = measure.MODES["full" if args.full else "smoke" if args.smoke else "quick"]
    if args.trials is not None:
        s = dataclasses.replace(s, trials=args.trials)
    if args.bound is not None:
        s = dataclasses.replace(s, bound=args.bound)
    print(f"hardstop bench, {s.mode} mode: every known way to stop a thread, measured side by side", flush=True)
    results = run(s, kinds, lambda line: print(f"  {line}", flush=True))
    print()
    print(report.text(results))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)
        print(f"\nwritten: {args.json}")
    if args.plot:
        plot.draw(results, args.plot)
        print(f"drawn: {args.plot}")
    return 0
