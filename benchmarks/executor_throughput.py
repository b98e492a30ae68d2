"""Throughput of ``hardstop.futures.ThreadPoolExecutor`` against the standard executor.

Run: python benchmarks/executor_throughput.py [--quick] [--rounds R] [--tasks N] [--workers W]

Both executors in one process, N workers each (default 4), started once and
kept warm. One round submits 20,000 tiny tasks (``abs(-1)``) to one executor,
then waits for every result; the rounds alternate between the executors (the
order swapped every round, so a trend in the machine's speed hits both
alike). The same with ``map()`` (consumed whole). Medians of tasks/s, and the
median of the per-round ratios hardstop / standard with a 95% interval
(resampling the rounds). Goal: hardstop at least 0.9x the standard executor.
The machine's load average is printed before and after: other work on it
widens every figure.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import random
import statistics
import time
from collections.abc import Callable

from _report import check, load, print_header, print_summary

from hardstop.futures import ThreadPoolExecutor

GOAL_RATIO = 0.9


def tiny() -> int:
    return abs(-1)


def tiny_of(value: int) -> int:
    return abs(value)


def round_submit(executor: concurrent.futures.Executor, tasks: int) -> float:
    """Seconds to submit ``tasks`` tiny tasks and collect every result."""
    began = time.perf_counter()
    futures = [executor.submit(tiny) for _ in range(tasks)]
    for future in futures:
        future.result()
    return time.perf_counter() - began


def round_map(executor: concurrent.futures.Executor, tasks: int) -> float:
    began = time.perf_counter()
    for _ in executor.map(tiny_of, range(tasks)):
        pass
    return time.perf_counter() - began


def interval(ratios: list[float]) -> tuple[float, float]:
    """95% interval of the median ratio, resampling the rounds."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(1000))
    return medians[25], medians[974]


def measure(
    title: str,
    one_round: Callable[[concurrent.futures.Executor, int], float],
    executors: dict[str, concurrent.futures.Executor],
    rounds: int,
    tasks: int,
    summary: list[tuple[str, str, str, str]],
) -> None:
    print(f"\n{title}: {tasks:,} tasks a round, {rounds} rounds of each, alternating")
    print(f"  before: {load()}")
    names = list(executors)
    for name in names:  # warm up: every worker started, caches filled
        one_round(executors[name], min(tasks, 2_000))
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            seconds[name].append(one_round(executors[name], tasks))
    print(f"  after:  {load()}")
    print(f"  {'executor':40} {'median tasks/s':>15} {'best tasks/s':>13} {'median µs/task':>15}")
    for name in names:
        median = statistics.median(seconds[name])
        print(f"  {name:40} {tasks / median:15,.0f} {tasks / min(seconds[name]):13,.0f} {median / tasks * 1e6:15.2f}")
    standard, ours = seconds[names[0]], seconds[names[1]]
    ratios = [s / h for s, h in zip(standard, ours, strict=True)]  # throughput ratio, hardstop / standard
    ratio = statistics.median(ratios)
    low, high = interval(ratios)
    straddles = low < GOAL_RATIO <= high
    print(
        f"  hardstop / standard throughput: {ratio:.2f}x "
        f"(median of the per-round ratios; 95% interval {low:.2f}..{high:.2f})"
    )
    summary.append(
        (
            f"{title}: hardstop / standard",
            f"{ratio:.2f}x [{low:.2f}..{high:.2f}]",
            f">= {GOAL_RATIO:g}x",
            check(ratio >= GOAL_RATIO) + ("*" if straddles else ""),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 15")
    parser.add_argument("--rounds", type=int, help="rounds of each executor (default 15; quick 5)")
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks a round (default 20,000)")
    parser.add_argument("--workers", type=int, default=4, help="worker threads of each executor (default 4)")
    args = parser.parse_args()
    if args.rounds is not None and args.rounds < 2:
        parser.error(f"--rounds takes a count of at least 2, not {args.rounds}")
    if args.tasks < 1:
        parser.error(f"--tasks takes a positive count, not {args.tasks}")
    if args.workers < 1:
        parser.error(f"--workers takes a positive count, not {args.workers}")
    rounds = args.rounds or (5 if args.quick else 15)
    began = time.monotonic()
    print_header("hardstop-threads")
    print(f"{args.workers} workers in each executor")
    summary: list[tuple[str, str, str, str]] = []
    with (
        concurrent.futures.ThreadPoolExecutor(args.workers) as standard,
        ThreadPoolExecutor(args.workers) as ours,
    ):
        executors: dict[str, concurrent.futures.Executor] = {
            "concurrent.futures.ThreadPoolExecutor": standard,
            "hardstop.futures.ThreadPoolExecutor": ours,
        }
        measure("submit()", round_submit, executors, rounds, args.tasks, summary)
        measure("map()", round_map, executors, rounds, args.tasks, summary)
    print_summary(summary, began)


if __name__ == "__main__":
    main()
