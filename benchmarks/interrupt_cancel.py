"""Cost of one interrupt + withdrawal on a live thread: hardstop against the bare recipe.

Run: python benchmarks/interrupt_cancel.py [--pairs N] [--batches B]

Both run in this one process against the same target thread (blocked in a wait,
so nothing is ever raised). The bare recipe is the corrected ctypes one
(`argtypes` with `c_ulong`), arming then clearing with NULL; hardstop validates
the target, checks for twin thread states, keeps a receipt and, on 3.10-3.12,
resets the interpreter-wide flag that the bare recipe leaves set. Reported:
median microseconds per pair over B batches, and the ratio.
"""

from __future__ import annotations

import argparse
import ctypes
import platform
import statistics
import threading
import time

import hardstop

set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
set_async_exc.argtypes = [ctypes.c_ulong, ctypes.py_object]
set_async_exc.restype = ctypes.c_int
clear_async_exc = ctypes.PyDLL(None).PyThreadState_SetAsyncExc
clear_async_exc.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
clear_async_exc.restype = ctypes.c_int


def bare_recipe(thread: threading.Thread, pairs: int) -> None:
    ident = thread.ident
    for _ in range(pairs):
        set_async_exc(ident, SystemExit)
        clear_async_exc(ident, None)


def with_hardstop(thread: threading.Thread, pairs: int) -> None:
    interrupt = hardstop.interrupt
    for _ in range(pairs):
        if not interrupt(thread).cancel():
            raise AssertionError("the request was raised: the benchmark target is not blocked")


def per_pair_us(method, thread: threading.Thread, pairs: int, batches: int) -> float:
    samples = []
    for _ in range(batches):
        t0 = time.perf_counter()
        method(thread, pairs)
        samples.append((time.perf_counter() - t0) / pairs * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=15)
    args = parser.parse_args()

    blocker = threading.Lock()
    blocker.acquire()
    # Blocked in Lock.acquire, a C wait that nothing ends in a worker thread (not
    # even 3.15's wake signal): each request stays armed until it is cancelled.
    target = threading.Thread(target=blocker.acquire, daemon=True)
    target.start()
    try:
        # Interleave the two methods so that drift in the machine hits both alike.
        rows = {"bare ctypes recipe": [], "hardstop interrupt + cancel": []}
        for _ in range(3):
            rows["bare ctypes recipe"].append(per_pair_us(bare_recipe, target, args.pairs, args.batches))
            rows["hardstop interrupt + cancel"].append(per_pair_us(with_hardstop, target, args.pairs, args.batches))
    finally:
        blocker.release()
    bare = statistics.median(rows["bare ctypes recipe"])
    print(
        f"Python {platform.python_version()} on {platform.machine()} {platform.system()}, "
        f"{args.pairs} pairs x {args.batches} batches x 3 rounds"
    )
    print(f"{'method':32} {'median us/pair':>15} {'bare / method':>14}")
    for name, values in rows.items():
        value = statistics.median(values)
        print(f"{name:32} {value:15.3f} {bare / value:14.2f}")


if __name__ == "__main__":
    main()
