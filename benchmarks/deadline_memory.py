"""Memory that an open deadline costs, beyond the frame of its with statement.

Run: python benchmarks/deadline_memory.py [--threads T] [--depth D]

T threads (default 100) each nest D calls (default 100), every call inside a
``with`` statement, and hold there while ``tracemalloc`` takes its measure:
once with ``hardstop.deadline_at(far)`` scopes, once with a plain context
manager whose frame is also made an object (``sys._getframe()``, as a deadline
does to know where it was set), and once with a plain context manager alone.
Reported: bytes per open deadline beyond the control with frame objects (the
figure with a goal: under 300 bytes) and beyond the plain control.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from contextlib import AbstractContextManager

from _report import check, print_header, print_summary

import hardstop

GOAL_BYTES = 300


class Plain:
    __slots__ = ("frame",)

    def __enter__(self) -> Plain:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class WithFrame(Plain):
    """A plain context manager that makes its caller's frame an object and keeps it, as a deadline does."""

    __slots__ = ()

    def __enter__(self) -> WithFrame:
        self.frame = sys._getframe(1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.frame = None


def open_scopes(threads: int, depth: int, make: Callable[[], AbstractContextManager[object]]) -> int:
    """Bytes traced while every thread holds ``depth`` nested scopes from ``make``, against before."""
    inside = threading.Barrier(threads + 1)
    leave = threading.Event()

    def nest(level: int) -> None:
        with make():
            if level:
                nest(level - 1)
            else:
                inside.wait()
                leave.wait()

    workers = [threading.Thread(target=nest, args=(depth - 1,)) for _ in range(threads)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for worker in workers:
        worker.start()
    inside.wait()
    during = tracemalloc.get_traced_memory()[0]
    leave.set()
    for worker in workers:
        worker.join()
    tracemalloc.stop()
    return during - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=100)
    parser.add_argument("--depth", type=int, default=100, help="nested scopes per thread")
    args = parser.parse_args()
    for name in ("threads", "depth"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} takes a positive count, not {getattr(args, name)}")
    began = time.monotonic()
    print_header("hardstop-threads")
    far = time.monotonic() + 3600
    with hardstop.deadline(3600):  # the watchdog starts outside the measure
        pass
    sys.setrecursionlimit(max(sys.getrecursionlimit(), args.depth * 3 + 200))
    count = args.threads * args.depth
    print(f"\n{count:,} open scopes: {args.threads} threads x {args.depth} nested with statements")
    measured = {}
    for name, make in [
        ("plain context manager", Plain),
        ("plain, with its frame an object", WithFrame),
        ("hardstop.deadline_at(far)", lambda: hardstop.deadline_at(far)),
    ]:
        measured[name] = min(open_scopes(args.threads, args.depth, make) for _ in range(3)) / count
        print(f"  {name:34} {measured[name]:8.1f} bytes per scope (frames and threads included)")
    beyond_frame = measured["hardstop.deadline_at(far)"] - measured["plain, with its frame an object"]
    beyond_plain = measured["hardstop.deadline_at(far)"] - measured["plain context manager"]
    print(f"  a deadline costs {beyond_frame:.0f} bytes beyond its frame object, {beyond_plain:.0f} beyond a plain one")
    summary = [
        (
            "bytes per open deadline beyond its frame",
            f"{beyond_frame:.0f}",
            f"< {GOAL_BYTES}",
            check(beyond_frame < GOAL_BYTES),
        ),
        ("the same, beyond a plain scope's frame", f"{beyond_plain:.0f}", "(for reference)", "-"),
    ]
    print_summary(summary, began)


if __name__ == "__main__":
    main()
