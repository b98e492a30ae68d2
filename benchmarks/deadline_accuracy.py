"""Accuracy of many concurrent deadlines under load.

Run: python benchmarks/deadline_accuracy.py [--threads T] [--depth D] [--rate R | --span S] [--seed S]

T threads (default 50) each nest D ``deadline_at()`` scopes (default 200; the
outer ones due later), so that all T x D are open at once, and block innermost
in ``threading.Event().wait()``. The deadlines fall at R a second (default
4,000: 10,000 over 2.5 s), or over S seconds, from a common start, which comes
after a set-up margin that grows with the count; a set-up that overruns it (a
thread not yet in place when the first deadline is due) fails the run. The
rate stays the same as the count grows, so that a larger run measures what
many open deadlines and threads cost (the heap, the collector, the walks over
threads); ``--span`` or ``--rate`` finds the rate at which the machine no
longer keeps up (each expiry wakes a thread, which catches the exception and
waits again: on 2 CPUs with the GIL, that work saturates first). As each scope's ``DeadlineExceeded`` reaches
it, the thread records ``time.monotonic() - scope.when`` and waits again
(``threading.Event().wait()`` in even threads, ``hardstop.sleep(60)`` in odd
ones) until the enclosing scope fires.

Reported: how many fired, median / p99 / max lateness in ms, the lateness of the
first 50 to fire against the rest (a cold watchdog shows there), whether the
very late ones come in bursts (a stall of the whole process), the cyclic GC's
pauses and how often the OS preempted the process. Goals: none early, none
missed, p99 under 2 ms (10,000 over 50 threads) or under 5 ms (100,000 over
1,000 threads: ``--threads 1000 --depth 100``). Threads are joined with a time
limit; hangs, stray exceptions and unraisable errors are reported, a hung
thread with its stack.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import threading
import time
import traceback

from _report import check, involuntary_switches, load, percentile, print_header, print_summary

import hardstop
from hardstop import _hardstop

# Set-up: starting the threads and opening every scope before the first is due.
# Measured here at about 10 us per scope on an idle machine; the margin allows 5x.
SETUP_MARGIN_MIN = 1.0
SETUP_SECONDS_PER_SCOPE = 50e-6
FIRST = 50  # the first deadlines to fire, reported apart


class Worker:
    """One thread's nest of scopes and what it saw."""

    def __init__(self, index: int, whens: list[float], rewait: str) -> None:
        self.index = index
        self.whens = whens  # outermost first, each earlier than the one before
        self.rewait = rewait
        self.late: list[float] = []  # (seconds) in the order the scopes fired, innermost first
        self.fired_at: list[float] = []  # their deadlines, in the same order
        self.errors: list[str] = []
        self.scopes: list[hardstop.Deadline] = []
        self.level = -1  # the level the thread is at, for a report if it hangs
        self.thread: threading.Thread | None = None

    def wait_for_enclosing(self, level: int) -> None:
        """Block inside scope ``level - 1`` until it fires (which raises here)."""
        self.level = level - 1
        if self.rewait == "Event.wait":
            threading.Event().wait()
        else:
            hardstop.sleep(60)
        self.errors.append(f"level {level - 1}: the wait inside it ended without the deadline firing")

    def nest(self, level: int, on_ready) -> None:
        scope = hardstop.deadline_at(self.whens[level])
        self.scopes.append(scope)
        try:
            with scope:
                if level + 1 < len(self.whens):
                    self.nest(level + 1, on_ready)
                else:
                    self.level = level
                    on_ready()
                    threading.Event().wait()
                    self.errors.append(f"level {level}: Event().wait() returned without the deadline firing")
        except hardstop.DeadlineExceeded as error:
            late = time.monotonic() - scope.when
            if error.scope is not scope:
                self.errors.append(f"level {level}: caught the DeadlineExceeded of another scope: {error!r}")
                raise
            self.late.append(late)
            self.fired_at.append(scope.when)
        else:
            self.errors.append(f"level {level}: the block was left without DeadlineExceeded")
        if level:
            self.wait_for_enclosing(level)

    def run(self, on_ready) -> None:
        try:
            self.nest(0, on_ready)
        except BaseException as error:  # noqa: BLE001 - a stray exception is a finding, report it
            self.errors.append(
                f"stray {type(error).__name__} at the top of the thread: {error!r}\n"
                + "".join(traceback.format_exception(error)[-6:])
            )
        self.level = -2  # done


def measure_accuracy(
    threads: int, depth: int, span: float, margin: float, seed: int, goal_p99_ms: float, summary: list
) -> bool:
    """Run it, print the report, add the figures to ``summary``; True when every goal but p99 is met."""
    total = threads * depth
    print(
        f"\n2. Accuracy: {total:,} concurrent deadlines, {threads} threads x {depth} nested "
        f"deadline_at() scopes, spread over {span:g} s ({total / span:,.0f} a second) after a set-up "
        f"margin of {margin:.1f} s"
    )
    print(f"  before: {load()}")
    rng = random.Random(seed)
    slot = span / total
    start = time.monotonic() + margin
    workers = []
    for index in range(threads):
        whens = []
        for level in range(depth):
            # Innermost levels of all threads first: slot k = (depth-1-level)*threads + index,
            # each deadline at a random point of the middle 80% of its slot of span/total.
            k = (depth - 1 - level) * threads + index
            whens.append(start + (k + 0.1 + 0.8 * rng.random()) * slot)
        workers.append(Worker(index, whens, "Event.wait" if index % 2 == 0 else "hardstop.sleep"))
    last_when = max(w.whens[0] for w in workers)

    ready_lock = threading.Lock()
    ready_times: list[float] = []
    all_ready = threading.Event()

    def on_ready() -> None:
        with ready_lock:
            ready_times.append(time.monotonic())
            if len(ready_times) == threads:
                all_ready.set()

    unraisable: list[str] = []
    previous_hook = sys.unraisablehook

    def hook(info) -> None:
        unraisable.append(f"{info.err_msg or 'unraisable'}: {info.exc_type.__name__}: {info.exc_value!r}")
        previous_hook(info)

    sys.unraisablehook = hook
    pauses: list[float] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - gc_started[0])

    gc.callbacks.append(on_gc)
    switches = involuntary_switches()
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, depth * 3 + 200))
    try:
        for worker in workers:
            worker.thread = threading.Thread(
                target=worker.run, args=(on_ready,), name=f"deadline-worker-{worker.index}", daemon=True
            )
            worker.thread.start()
        all_ready.wait(max(0.0, start - time.monotonic()))
        opened_by = max(ready_times) if len(ready_times) == threads else None
        join_until = last_when + 5.0
        for worker in workers:
            worker.thread.join(max(0.0, join_until - time.monotonic()))
    finally:
        sys.setrecursionlimit(old_limit)
        sys.unraisablehook = previous_hook
        gc.callbacks.remove(on_gc)
        switches = involuntary_switches() - switches

    hung = [w for w in workers if w.thread.is_alive()]
    late = sorted(x for w in workers for x in w.late)
    fired = sum(1 for w in workers for s in w.scopes if s.expired)
    entered = sum(len(w.scopes) for w in workers)
    errors = [(w.index, e) for w in workers for e in w.errors]
    if opened_by is not None:
        print(
            f"  all {total:,} open at once: yes, the last thread was in place "
            f"{(start - opened_by) * 1e3:.0f} ms before the first deadline"
        )
    else:
        print(
            f"  all {total:,} open at once: NO, only {len(ready_times)} of {threads} threads were in place "
            "when the first deadline came"
        )
    by_kind: dict[str, list[float]] = {}
    for w in workers:
        # w.late[0] is the innermost scope, woken from Event().wait() in every thread.
        by_kind.setdefault("innermost, in Event.wait", []).extend(w.late[:1])
        by_kind.setdefault(f"enclosing, in {w.rewait}", []).extend(w.late[1:])
    print(f"  {'deadlines':34} {'count':>6} {'median ms':>10} {'p99 ms':>8} {'max ms':>8} {'> 2 ms':>7}")

    def row(name: str, values: list[float]) -> None:
        values = sorted(values)
        if not values:
            print(f"  {name:34} {0:6d}")
            return
        over = sum(1 for v in values if v > goal_p99_ms / 1e3)
        print(
            f"  {name:34} {len(values):6d} {statistics.median(values) * 1e3:10.3f} "
            f"{percentile(values, 0.99) * 1e3:8.3f} {values[-1] * 1e3:8.3f} {over:7d}"
        )

    row("all (lateness when caught)", late)
    in_order = sorted((when, x) for w in workers for when, x in zip(w.fired_at, w.late, strict=True))
    row(f"  the first {FIRST} to fire", [x for _, x in in_order[:FIRST]])
    row("  the rest", [x for _, x in in_order[FIRST:]])
    for name in sorted(by_kind):
        row(f"  {name}", by_kind[name])
    # Are the late ones spread out, or a few stalls (the machine, the collector)?
    very_late = sorted(
        when for w in workers for when, x in zip(w.fired_at, w.late, strict=True) if x > goal_p99_ms / 1e3
    )
    bursts = []
    for when in very_late:
        if bursts and when - bursts[-1][-1] < 0.02:
            bursts[-1].append(when)
        else:
            bursts.append([when])
    if very_late:
        biggest = max(bursts, key=len)
        print(
            f"  late by > {goal_p99_ms:g} ms: {len(very_late)}, in {len(bursts)} burst(s) (deadlines less than "
            f"20 ms apart); the largest: {len(biggest)} deadlines due within "
            f"{(biggest[-1] - biggest[0]) * 1e3:.1f} ms, {biggest[0] - start:.3f} s after the first"
        )
    print(
        f"  cyclic GC during the run: {len(pauses)} collections, longest {max(pauses, default=0) * 1e3:.2f} ms, "
        f"{sum(pauses) * 1e3:.1f} ms in all; the process was preempted {switches} times "
        "(involuntary context switches)"
    )
    early = sum(1 for v in late if v < 0)
    print(
        f"  entered {entered:,}, fired {fired:,} (scope.expired), lateness recorded for {len(late):,}; "
        f"caught early: {early}; threads hung: {len(hung)}; stray errors: {len(errors)}; "
        f"unraisable: {len(unraisable)}"
    )
    for index, error in errors[:10]:
        print(f"  ! thread {index}: {error}")
    if len(errors) > 10:
        print(f"  ! ... {len(errors) - 10} more errors")
    for message in unraisable[:5]:
        print(f"  ! unraisable: {message}")
    for w in hung[:5]:
        frame = _hardstop.current_frame(w.thread.ident or 0)  # (3.11: not sys._current_frames(), see wsgi.py)
        stack = "".join(traceback.format_stack(frame)[-4:]) if frame is not None else ""
        print(
            f"  ! thread {w.index} ({w.rewait}) still alive at level {w.level}, "
            f"{len(w.late)} of {depth} caught; its stack:\n{stack}"
        )
    p99 = percentile(late, 0.99) * 1e3 if late else float("nan")
    complete = fired == total and len(late) == total and not hung and not errors and early == 0
    summary.append(
        (
            "set-up within its margin",
            "yes" if opened_by is not None else "NO (overran)",
            "yes",
            check(opened_by is not None),
        )
    )
    summary.append(
        (f"deadlines fired of {total:,} concurrent", f"{fired:,} ({len(late):,} caught)", f"{total:,}", check(complete))
    )
    summary.append(
        ("median lateness", f"{statistics.median(late) * 1e3:.3f} ms" if late else "n/a", "(for reference)", "-")
    )
    first = sorted(x for _, x in in_order[:FIRST])
    summary.append(
        (
            f"p99 lateness of the first {FIRST}",
            f"{percentile(first, 0.99) * 1e3:.3f} ms" if first else "n/a",
            "(for reference)",
            "-",
        )
    )
    summary.append(("p99 lateness", f"{p99:.3f} ms", f"< {goal_p99_ms:g} ms", check(complete and p99 < goal_p99_ms)))
    return complete and opened_by is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--depth", type=int, default=200, help="nested deadlines per thread")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--rate", type=float, default=4000.0, help="deadlines due per second")
    when.add_argument("--span", type=float, help="seconds over which the deadlines fall (instead of --rate)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for name in ("threads", "depth"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} takes a positive count, not {getattr(args, name)}")
    if args.span is not None and not args.span > 0:
        parser.error(f"--span takes a positive number of seconds, not {args.span}")
    if not args.rate > 0:
        parser.error(f"--rate takes a positive number of deadlines a second, not {args.rate}")
    began = time.monotonic()
    print_header("hardstop-threads")
    summary: list[tuple[str, str, str, str]] = []
    total = args.threads * args.depth
    span = args.span if args.span is not None else total / args.rate
    margin = max(SETUP_MARGIN_MIN, total * SETUP_SECONDS_PER_SCOPE)
    goal = 2.0 if total <= 10_000 else 5.0
    complete = measure_accuracy(args.threads, args.depth, span, margin, args.seed, goal, summary)
    print_summary(summary, began)
    sys.exit(0 if complete else 1)


if __name__ == "__main__":
    main()
