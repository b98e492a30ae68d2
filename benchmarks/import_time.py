"""What ``import hardstop`` costs a program: ``python -X importtime -c "import hardstop"``.

Run: python benchmarks/import_time.py [--runs N]

Each run is a fresh interpreter. Interleaved with it, the same for ``import
threading`` (which hardstop needs, and most programs have anyway) and ``import
asyncio`` (what ``import hardstop`` used to pull in), so that the machine's
speed at that moment weighs on all three alike. Medians of the cumulative
microseconds ``-X importtime`` gives each top-level module, and the modules
``import hardstop`` added that a bare interpreter does not load. Goal: under
10 ms for hardstop, its extension included, and no asyncio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from _report import check, load, print_header, print_summary

GOAL_MS = 10.0
MODULES = ("hardstop", "threading", "asyncio")


def cumulative_us(module: str) -> int:
    """The cumulative import time of ``module`` in a fresh interpreter, in microseconds."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True, check=True
    )
    for line in result.stderr.splitlines():
        fields = [field.strip() for field in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == module:
            return int(fields[1])
    raise RuntimeError(f"-X importtime did not report {module!r}:\n{result.stderr}")


def modules_added() -> list[str]:
    code = "import sys; before = set(sys.modules); import hardstop; print(' '.join(sorted(set(sys.modules) - before)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=31)
    args = parser.parse_args()
    began = time.monotonic()
    print_header("hardstop-threads")
    print(load())
    times: dict[str, list[int]] = {module: [] for module in MODULES}
    for _ in range(args.runs):
        for module in MODULES:
            times[module].append(cumulative_us(module))
    print(f"\n{args.runs} fresh interpreters each; cumulative import time (-X importtime), milliseconds")
    print(f"  {'module':12} {'median':>8} {'min':>8} {'max':>8}")
    for module in MODULES:
        values = times[module]
        print(
            f"  {module:12} {statistics.median(values) / 1000:8.2f} {min(values) / 1000:8.2f} {max(values) / 1000:8.2f}"
        )
    added = modules_added()
    top_level = sorted({name.split(".")[0] for name in added if not name.startswith("hardstop")})
    print(f"\nModules `import hardstop` loads that a bare interpreter does not ({len(added)}): {' '.join(top_level)}")
    print(load())
    median_ms = statistics.median(times["hardstop"]) / 1000
    print_summary(
        [
            (
                "import hardstop, cumulative (median)",
                f"{median_ms:.2f} ms",
                f"< {GOAL_MS:.0f} ms",
                check(median_ms < GOAL_MS),
            ),
            ("asyncio imported by it", "yes" if "asyncio" in added else "no", "no", check("asyncio" not in added)),
        ],
        began,
    )


if __name__ == "__main__":
    main()
