"""What every benchmark here prints around its figures: the machine, percentiles, a summary table."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import threading
import time

from hardstop.bench.report import cpu_model  # the CPU's name, as python -m hardstop bench prints it


def version_of(distribution: str) -> str:
    """The installed version of a distribution, or "?"."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-int(fraction * 1_000_000) * len(sorted_values) // 1_000_000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def settle_threads(baseline: int, limit: float = 2.0) -> None:
    """Let the helper threads a peer left behind (timers being cancelled) finish."""
    end = time.monotonic() + limit
    while threading.active_count() > baseline and time.monotonic() < end:
        time.sleep(0.001)


def load() -> str:
    """The machine's load average: other work on it makes every figure here worse."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def involuntary_switches() -> int:
    """Times the OS took a CPU from this process to run something else (-1: unknown)."""
    try:
        import resource
    except ImportError:
        return -1
    return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


def thread_cpu(thread: threading.Thread | None) -> float:
    """CPU seconds another thread has used (NaN where the OS cannot tell)."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (AttributeError, OSError, TypeError):
        return float("nan")


def check(met: bool) -> str:
    return "yes" if met else "NO"


def print_header(*distributions: str) -> None:
    """The interpreter, the machine and the versions measured."""
    print(
        f"{platform.python_implementation()} {platform.python_version()} ({sys.executable}), "
        f"{platform.system()} {platform.release()} {platform.machine()}"
    )
    versions = ", ".join(f"{name} {version_of(name)}" for name in distributions)
    print(f"{cpu_model()}, {os.cpu_count()} CPUs; {versions}")


def print_summary(summary: list[tuple[str, str, str, str]], began: float) -> None:
    """The closing table: figure, value, goal, met?"""
    print(f"\nSummary ({time.monotonic() - began:.0f} s in all)")
    print(f"  {'figure':44} {'value':>22} {'goal':>16} {'met?':>5}")
    for figure, value, goal, met in summary:
        print(f"  {figure:44} {value:>22} {goal:>16} {met:>5}")
    if any(met.endswith("*") for *_, met in summary):
        print("  * its 95% interval straddles the goal: the verdict is within this machine's noise")
