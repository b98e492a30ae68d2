"""``python -m hardstop``: what hardstop can do on this interpreter, probed now.

Every row is measured as the command runs (see ``hardstop._probes``): a thread
is put in a wait, interrupted from another thread and given a bound to raise;
what did not stop is said so, its request is withdrawn and the thread released.
CPython's quirks that can be shown in a moment are shown; the others are given
from the version, and marked so.

    python -m hardstop           the report
    python -m hardstop --json    the same, as JSON (the docs' capability table is made from it)
    python -m hardstop bench     every known way to stop a thread, measured side by side
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence

from hardstop import _probes

_CELLS = {
    _probes.NOT_STOPPED: "NOT stopped",
    _probes.LATE: "stopped late",
    _probes.RETURNED_FIRST: "returned first",
    _probes.NOT_PROBED: "not probed",
}


def _cell(result: _probes.WaitResult) -> str:
    if result.stopped and result.latency_ms is not None:
        return f"stopped, {result.latency_ms:.2f} ms"
    return _CELLS.get(result.outcome, result.outcome)


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def _waits(report: _probes.Report) -> list[str]:
    by_wait: dict[str, dict[str, _probes.WaitResult]] = {}
    for result in report.waits:
        by_wait.setdefault(result.wait, {})[result.thread] = result
    rows = [("wait", "worker thread", "main thread")]
    notes: dict[str, list[str]] = {}
    for wait, threads in by_wait.items():
        rows.append((wait, _cell(threads[_probes.WORKER]), _cell(threads[_probes.MAIN])))
        for thread, result in threads.items():
            if result.note:
                notes.setdefault(f"{_cell(result)}: {result.note}", []).append(f"{wait} ({thread})")
    lines = [
        f"Waits, probed now: a thread in each wait, hardstop.interrupt() from another thread, "
        f"{report.bound_seconds:g} s to raise (time: from the request to the exception caught)",
        *_table(rows),
    ]
    for note, cells in notes.items():
        lines.extend(textwrap.wrap(f"{note}. In: {', '.join(cells)}.", 120, subsequent_indent="  "))
    return lines


def _quirks(report: _probes.Report) -> list[str]:
    lines = ["CPython quirks (see docs/known-issues.md): applies here? on which versions; how it is known"]
    width = max(len(quirk.versions) for quirk in report.quirks)
    for quirk in report.quirks:
        lines.append(f"  {'yes' if quirk.applies else 'no ':3}  {quirk.versions:{width}}  {quirk.quirk}")
        lines.append(f"  {'':3}  {'':{width}}  {quirk.evidence}")
    return lines


def render(report: _probes.Report) -> str:
    """The report as text."""
    wake = f"wake signal: {report.wake_signal or 'none installed'}"
    lines = [
        f"hardstop {report.hardstop}",
        f"Python {report.python} ({report.implementation}) on {report.platform}",
        f"extension: {report.extension}",
        f"GIL: {report.gil}",
        wake,
        "",
        *_waits(report),
        "",
        *_quirks(report),
    ]
    if report.leftover_threads:
        lines += ["", f"probe threads still alive at the end: {', '.join(report.leftover_threads)}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        from hardstop.bench import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m hardstop",
        description=__doc__.splitlines()[0].strip("`").replace("``", ""),
        epilog="python -m hardstop bench --help: every known way to stop a thread, measured side by side.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = _probes.run()
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        print()
    else:
        print(render(report))
    return 0
