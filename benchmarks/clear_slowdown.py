"""Is a call-heavy loop slower after hardstop withdrew requests? (CPython 3.9-3.12's shared flag)

Run: python benchmarks/clear_slowdown.py [--pairs N] [--blocks N] [--rounds R] [--calls C]

On 3.9-3.12 one interpreter-wide "async exception pending" flag is set by every
arming and reset only when some thread raises an async exception. The bare
recipe's withdrawal, ``PyThreadState_SetAsyncExc(ident, NULL)``, leaves it set:
every thread then takes the slow path at each check, until one raises. hardstop
never clears a slot it did not arm, and after each withdrawal it resets the flag
in C (ext/shared_flag.c) when no slot of the interpreter is armed.

One process, one target thread blocked in ``Lock.acquire`` (nothing wakes it,
so nothing is ever raised there). Each round times the loop (its CPU time) plain,
then in each of these states, in a rotated order:

* control: nothing done before it (the noise floor);
* after N/R ``hardstop.interrupt(target)`` + ``receipt.cancel()`` pairs;
* after N/R ``with hardstop.deadline(60): pass`` blocks;
* after N/R pairs of the bare ctypes recipe: arm, then clear with NULL (the
  alternative, which shows the quirk).

After each state is timed, one async exception is raised and caught in this
thread, so that the next starts from a reset flag whatever the state left.
Reported: the median time of each, the median of its per-round ratios to the
plain loop of the same round, and that ratio's 95% interval (resampling the
rounds). N is 100,000 pairs and 100,000 blocks in all.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable

from _report import cpu_model, load
from interrupt_cancel import clear_async_exc, set_async_exc

import hardstop
from hardstop.bench.measure import compare

GOAL_PCT = 1.0


def call_heavy_loop(calls: int) -> float:
    """CPU seconds of this thread for ``calls`` calls of a trivial Python function
    (each one an eval-breaker check). CPU time, not wall-clock time: the time the
    OS gives the CPU to other processes on a shared machine is left out."""

    def f(x: int) -> int:
        return x

    t0 = time.thread_time()
    for i in range(calls):
        f(i)
    return time.thread_time() - t0


class _ResetFlag(BaseException):
    """Raised in this thread only, so that 3.10-3.12 reset their shared flag."""


def _some_bytecode() -> None:
    for _ in (0, 1, 2):
        pass


def raise_one_async_exception() -> None:
    """Raise and catch an async exception here: the only thing that resets the shared flag."""
    try:
        set_async_exc(threading.get_ident(), _ResetFlag)
        _some_bytecode()
    except _ResetFlag:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000, help="interrupt + cancel pairs in all (and bare pairs)")
    parser.add_argument("--blocks", type=int, default=100_000, help="deadline blocks in all")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--calls", type=int, default=200_000, help="calls per timed loop")
    args = parser.parse_args()
    pairs, blocks = -(-args.pairs // args.rounds), -(-args.blocks // args.rounds)  # at least N in all

    blocker = threading.Lock()
    blocker.acquire()
    target = threading.Thread(target=blocker.acquire, daemon=True)
    target.start()
    time.sleep(0.1)  # into its wait; a request raised there would stop the run (see below)

    def interrupt_and_cancel() -> None:
        interrupt = hardstop.interrupt
        for _ in range(pairs):
            if not interrupt(target).cancel():
                raise AssertionError("A request was raised: the benchmark's target is not blocked.")

    def deadline_blocks() -> None:
        deadline = hardstop.deadline
        for _ in range(blocks):
            with deadline(60):
                pass

    def bare_arm_and_clear() -> None:
        ident = target.ident
        for _ in range(pairs):
            set_async_exc(ident, SystemExit)
            clear_async_exc(ident, None)

    states: dict[str, Callable[[], None]] = {
        "control (nothing before it)": lambda: None,
        f"after {pairs:,} interrupt() + cancel()": interrupt_and_cancel,
        f"after {blocks:,} `with deadline(60): pass`": deadline_blocks,
        f"after {pairs:,} bare arm + clear(NULL)": bare_arm_and_clear,
    }
    print(f"CPython {platform.python_version()} on {platform.system()} {platform.machine()} ({cpu_model()}); {load()}")
    print(
        f"{args.rounds} rounds; in all {pairs * args.rounds:,} pairs and {blocks * args.rounds:,} blocks; "
        f"loop: {args.calls:,} calls"
    )
    call_heavy_loop(args.calls)  # warm up
    interrupt_and_cancel()
    deadline_blocks()
    raise_one_async_exception()
    plain: list[float] = []
    timed: dict[str, list[float]] = {name: [] for name in states}
    names = list(states)
    try:
        for index in range(args.rounds):
            plain.append(call_heavy_loop(args.calls))
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                states[name]()
                timed[name].append(call_heavy_loop(args.calls))
                raise_one_async_exception()
    finally:
        blocker.release()
        target.join()
    print(f"{'loop timed (CPU time)':44} {'median ms':>10} {'slowdown':>9}  95% interval")
    print(f"{'plain (first in each round)':44} {statistics.median(plain) * 1e3:10.3f}")
    results = {}
    for name in names:
        result = compare(timed[name], plain)
        results[name] = result
        low, high = result["interval_pct"]
        print(
            f"{name:44} {statistics.median(timed[name]) * 1e3:10.3f} {result['slowdown_pct']:+8.2f}%  "
            f"[{low:+.2f}%, {high:+.2f}%]"
        )
    shared_flag = sys.version_info < (3, 13)
    print(
        "(slowdown: median of the per-round ratios to the plain loop; interval: resampling the rounds. "
        + (
            "This version keeps one shared flag: the bare clear should show it.)"
            if shared_flag
            else "This version keeps the flag per thread: no state should be slower.)"
        )
    )
    for name in names[1:3]:
        low, high = results[name]["interval_pct"]
        verdict = "met" if results[name]["slowdown_pct"] < GOAL_PCT else "NOT met"
        print(f"goal, {name}: slowdown under {GOAL_PCT:g}%: {verdict}" + (" (noise)" if low < GOAL_PCT <= high else ""))


if __name__ == "__main__":
    main()
