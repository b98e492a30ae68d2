"""Does the interpreter stay fast after many withdrawals? (CPython 3.9-3.12 quirk)

Run: python benchmarks/flag_slowdown.py [--pairs N] [--rounds R]

On 3.9-3.12 one interpreter-wide "async exception pending" flag is set by every
arming and reset only when some thread raises an async exception. The bare
recipe's withdrawal (clear the slot with NULL) leaves it set, and every thread
then takes the slow path at each check until one does. Each case runs in a
fresh subprocess: a call-heavy loop is timed (median of R rounds) before and
after N arm + withdraw pairs aimed at a blocked thread, or N deadline blocks.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys

CASE = r"""
import ctypes, statistics, sys, threading, time
import hardstop

def calls(n=200_000):
    def f(x):
        return x
    for i in range(n):
        f(i)

def timed(rounds):
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        calls()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)

case, pairs, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
release = threading.Event()
target = threading.Thread(target=release.wait)
target.start()
before = timed(rounds)
if case == "bare recipe":
    arm = ctypes.pythonapi.PyThreadState_SetAsyncExc
    arm.argtypes = [ctypes.c_ulong, ctypes.py_object]
    clear = ctypes.PyDLL(None).PyThreadState_SetAsyncExc
    clear.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
    for _ in range(pairs):
        arm(target.ident, SystemExit)
        clear(target.ident, None)
elif case == "hardstop interrupt + cancel":
    for _ in range(pairs):
        hardstop.interrupt(target, wake=False).cancel()
elif case == "hardstop deadline blocks":
    for _ in range(pairs):
        with hardstop.deadline(60):
            pass
after = timed(rounds)
release.set()
target.join()
print(before, after)
"""

CASES = ["bare recipe", "hardstop interrupt + cancel", "hardstop deadline blocks"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=3, help="subprocesses per case (median of their slowdowns)")
    args = parser.parse_args()
    print(f"CPython {platform.python_version()} on {platform.system()} {platform.machine()}; {args.pairs:,} per case")
    print(f"{'case':30}  {'before ms':>9}  {'after ms':>9}  {'slowdown':>9}")
    for case in CASES:
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run(
                [sys.executable, "-c", CASE, case, str(args.pairs), str(args.rounds)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            runs.append((float(out[0]), float(out[1])))
        before = statistics.median(b for b, _ in runs)
        after = statistics.median(a for _, a in runs)
        slowdown = statistics.median((a / b - 1) * 100 for b, a in runs)
        print(f"{case:30}  {before * 1e3:9.2f}  {after * 1e3:9.2f}  {slowdown:+8.1f}%")


if __name__ == "__main__":
    main()
