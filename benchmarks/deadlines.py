"""Deadlines: their cost, their accuracy under load, and their overhead on guarded code.

Run: python benchmarks/deadlines.py [--quick] [--batches B] [--rounds R] [--seed S]
                                    [--only cost|accuracy|overhead]...

The peers are optional (``pip install stopit func-timeout``); stopit imports
``pkg_resources``, so it needs ``setuptools<81`` beside it on recent setups.

One process, three measurements, each against its goal:

1. Cost of a deadline that does not fire: ``with hardstop.deadline(60): pass``
   per block (creation, entry and exit, loop included, nothing subtracted),
   median over batches, side by side with ``with stopit.ThreadingTimeout(60):
   pass`` and with ``func_timeout.func_timeout(60, f)`` of a trivial ``f``,
   which hardstop's ``@timeout(60)``-decorated ``f`` is compared with like for
   like. Goal: under 2 us per block, and at least 50x cheaper than either peer.
   A peer that cannot be imported is reported and left out.
2. Accuracy of 10,000 concurrent deadlines in 50 threads: each thread nests 200
   ``deadline_at()`` scopes (the outer ones due later), so that all 10,000 are
   open at once, and blocks innermost in ``threading.Event().wait()``. The
   deadlines are spread over ~2.5 s from a common start. As each scope's
   ``DeadlineExceeded`` reaches it, the thread records ``time.monotonic() -
   scope.when`` and waits again (``threading.Event().wait()`` in even threads,
   ``hardstop.sleep(60)`` in odd ones) until the enclosing scope fires.
   Reported: how many fired, median / p99 / max lateness in ms, whether the
   very late ones come in bursts (a stall of the whole process), the cyclic
   GC's pauses and how often the OS preempted the process. Goal: p99 under
   2 ms. Threads are joined with a time limit; hangs, stray exceptions and
   unraisable errors are reported, a hung thread with its stack.
3. Overhead on guarded code while nothing fires: a pure-Python summing loop of
   ~50 ms, plainly and inside one ``with hardstop.deadline(60):`` block (its
   watchdog thread alive, as it is whenever a deadline is open; the CPU time
   it used meanwhile is reported), interleaved, medians of wall-clock time
   (and of the thread's CPU time, which other processes do not inflate), with
   a second plain series as a control that shows the noise floor, and a 95%
   interval (resampling the rounds) of the slowdown. For reference, the same
   loop under the ``sys.settrace`` recipe ("KThread": a trace function checking
   a kill flag on every line), run on a tenth of the iterations and compared
   per iteration. Goal: hardstop under 1%.

It ends with a summary: figure, value, goal, met?
The default run takes under a minute; ``--quick`` about 15 seconds. Every
figure suffers from other work on the machine: the load average is printed.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import math
import os
import platform
import random
import statistics
import sys
import threading
import time
import traceback
import warnings

import hardstop

GOAL_BLOCK_US = 2.0
GOAL_RATIO = 50.0
GOAL_P99_MS = 2.0
GOAL_OVERHEAD_PCT = 1.0


# --------------------------------------------------------------------------- helpers


def version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


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


# --------------------------------------------------------------------------- 1. cost per block


def trivial() -> int:
    return 1


def load_peers() -> dict[str, object]:
    peers: dict[str, object] = {}
    try:
        with warnings.catch_warnings():
            # stopit imports pkg_resources, which warns that it is deprecated.
            warnings.simplefilter("ignore")
            import stopit
        peers["stopit"] = stopit
    except Exception as error:  # noqa: BLE001 - any import failure is reported, not fatal
        print(f"  stopit left out: cannot import it: {type(error).__name__}: {error}")
    try:
        import func_timeout

        peers["func_timeout"] = func_timeout
    except Exception as error:  # noqa: BLE001
        print(f"  func_timeout left out: cannot import it: {type(error).__name__}: {error}")
    return peers


def block_methods(peers: dict[str, object]) -> dict[str, object]:
    deadline = hardstop.deadline

    def hardstop_block(n: int) -> None:
        for _ in range(n):
            with deadline(60):
                pass

    decorated = hardstop.timeout(60)(trivial)

    def hardstop_decorated(n: int) -> None:
        for _ in range(n):
            decorated()

    def plain_call(n: int) -> None:
        f = trivial
        for _ in range(n):
            f()

    methods: dict[str, object] = {
        "hardstop: with deadline(60): pass": hardstop_block,
        "hardstop: @timeout(60) f()": hardstop_decorated,
    }
    if "stopit" in peers:
        threading_timeout = peers["stopit"].ThreadingTimeout

        def stopit_block(n: int) -> None:
            for _ in range(n):
                with threading_timeout(60):
                    pass

        methods["stopit: with ThreadingTimeout(60): pass"] = stopit_block
    if "func_timeout" in peers:
        call = peers["func_timeout"].func_timeout

        def func_timeout_call(n: int) -> None:
            for _ in range(n):
                call(60, trivial)

        methods["func_timeout: func_timeout(60, f)"] = func_timeout_call
    methods["reference: plain call f()"] = plain_call
    return methods


def per_block_us(method, n: int) -> float:
    t0 = time.perf_counter()
    method(n)
    return (time.perf_counter() - t0) / n * 1e6


def measure_cost(batches: int, batch_seconds: float, summary: list) -> None:
    print("\n1. Cost of a deadline that does not fire (60 s deadline around `pass`)")
    print(f"  before: {load()}")
    peers = load_peers()
    methods = block_methods(peers)
    baseline = threading.active_count()
    # Size each method's batch to about batch_seconds, from a short trial run.
    sizes = {}
    for name, method in methods.items():
        method(10)  # warm up (starts hardstop's watchdog, imports lazily loaded parts)
        settle_threads(baseline + 1)
        trial = 500 if name.startswith(("hardstop", "reference")) else 30
        estimate = min(per_block_us(method, trial) for _ in range(3))
        sizes[name] = max(50, int(batch_seconds * 1e6 / max(estimate, 0.01)))
        settle_threads(baseline + 1)
    baseline = threading.active_count()  # now includes hardstop's watchdog
    samples: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for round_index in range(batches):
        # Rotate the order so that drift in the machine hits all alike.
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(per_block_us(methods[name], sizes[name]))
            settle_threads(baseline)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    block = medians["hardstop: with deadline(60): pass"]
    decorated = medians["hardstop: @timeout(60) f()"]
    print(
        f"  {batches} batches of ~{batch_seconds * 1e3:.0f} ms per method, interleaved; "
        "raw cost per block or call (loop included, nothing subtracted)"
    )
    print(f"  {'method':44} {'blocks/batch':>12} {'median us':>10} {'min us':>9} {'max us':>9} {'/ hardstop':>11}")
    for name in names:
        mine = decorated if "func_timeout" in name or "@timeout" in name else block
        ratio = f"{medians[name] / mine:10.1f}x" if not name.startswith("reference") else f"{'-':>11}"
        print(
            f"  {name:44} {sizes[name]:12d} {medians[name]:10.3f} {min(samples[name]):9.3f} "
            f"{max(samples[name]):9.3f} {ratio}"
        )
    print("  (/ hardstop: the block rows against hardstop's block, the call rows against its @timeout call)")
    summary.append(
        (
            "cost of a non-firing deadline block",
            f"{block:.3f} us",
            f"< {GOAL_BLOCK_US:g} us",
            check(block < GOAL_BLOCK_US),
        )
    )
    summary.append(("cost of a @timeout-decorated call", f"{decorated:.3f} us", "(for reference)", "-"))
    stopit_name = "stopit: with ThreadingTimeout(60): pass"
    func_name = "func_timeout: func_timeout(60, f)"
    if stopit_name in medians:
        ratio = medians[stopit_name] / block
        summary.append(
            ("stopit block / hardstop block", f"{ratio:.0f}x", f">= {GOAL_RATIO:g}x", check(ratio >= GOAL_RATIO))
        )
    else:
        summary.append(("stopit block / hardstop block", "not measured", f">= {GOAL_RATIO:g}x", "n/a"))
    if func_name in medians:
        ratio = medians[func_name] / decorated
        summary.append(
            (
                "func_timeout call / hardstop @timeout call",
                f"{ratio:.0f}x",
                f">= {GOAL_RATIO:g}x",
                check(ratio >= GOAL_RATIO),
            )
        )
        ratio = medians[func_name] / block
        summary.append(
            ("func_timeout call / hardstop block", f"{ratio:.0f}x", f">= {GOAL_RATIO:g}x", check(ratio >= GOAL_RATIO))
        )
    else:
        summary.append(("func_timeout call / hardstop call", "not measured", f">= {GOAL_RATIO:g}x", "n/a"))


# --------------------------------------------------------------------------- 2. accuracy under load


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


def measure_accuracy(threads: int, depth: int, span: float, margin: float, seed: int, summary: list) -> None:
    total = threads * depth
    print(
        f"\n2. Accuracy: {total:,} concurrent deadlines, {threads} threads x {depth} nested "
        f"deadline_at() scopes, spread over {span:g} s"
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
        over = sum(1 for v in values if v > GOAL_P99_MS / 1e3)
        print(
            f"  {name:34} {len(values):6d} {statistics.median(values) * 1e3:10.3f} "
            f"{percentile(values, 0.99) * 1e3:8.3f} {values[-1] * 1e3:8.3f} {over:7d}"
        )

    row("all (lateness when caught)", late)
    for name in sorted(by_kind):
        row(f"  {name}", by_kind[name])
    # Are the late ones spread out, or a few stalls (the machine, the collector)?
    very_late = sorted(
        when for w in workers for when, x in zip(w.fired_at, w.late, strict=True) if x > GOAL_P99_MS / 1e3
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
            f"  late by > {GOAL_P99_MS:g} ms: {len(very_late)}, in {len(bursts)} burst(s) (deadlines less than "
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
    frames = sys._current_frames()
    for w in hung[:5]:
        stack = "".join(traceback.format_stack(frames.get(w.thread.ident))[-4:]) if w.thread.ident in frames else ""
        print(
            f"  ! thread {w.index} ({w.rewait}) still alive at level {w.level}, "
            f"{len(w.late)} of {depth} caught; its stack:\n{stack}"
        )
    p99 = percentile(late, 0.99) * 1e3 if late else float("nan")
    complete = fired == total and len(late) == total and not hung and not errors
    summary.append(
        (f"deadlines fired of {total:,} concurrent", f"{fired:,} ({len(late):,} caught)", f"{total:,}", check(complete))
    )
    summary.append(
        ("median lateness", f"{statistics.median(late) * 1e3:.3f} ms" if late else "n/a", "(for reference)", "-")
    )
    summary.append(("p99 lateness", f"{p99:.3f} ms", f"< {GOAL_P99_MS:g} ms", check(complete and p99 < GOAL_P99_MS)))


# --------------------------------------------------------------------------- 3. overhead on guarded code


def work(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


class KillFlag:
    """The KThread recipe's trace functions: check a kill flag on every line event."""

    def __init__(self) -> None:
        self.killed = False

    def globaltrace(self, frame, event, arg):
        return self.localtrace if event == "call" else None

    def localtrace(self, frame, event, arg):
        if self.killed and event == "line":
            raise SystemExit
        return self.localtrace


def run_plain(n: int) -> tuple[float, float]:
    """Wall-clock and thread CPU seconds of one run of the loop."""
    t0, c0 = time.perf_counter(), time.thread_time()
    work(n)
    return time.perf_counter() - t0, time.thread_time() - c0


def run_deadline(n: int) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.thread_time()
    with hardstop.deadline(60):
        work(n)
    return time.perf_counter() - t0, time.thread_time() - c0


def run_settrace(n: int) -> tuple[float, float]:
    flag = KillFlag()
    t0, c0 = time.perf_counter(), time.thread_time()
    sys.settrace(flag.globaltrace)
    try:
        work(n)
    finally:
        sys.settrace(None)
    return time.perf_counter() - t0, time.thread_time() - c0


def measure_overhead(rounds: int, trace_runs: int, loop_ms: float, summary: list) -> None:
    print(f"\n3. Overhead on guarded code while nothing fires (a ~{loop_ms:g} ms pure-Python loop)")
    print(f"  before: {load()}")
    run_plain(100_000)
    probe = min(run_plain(200_000)[0] for _ in range(3))
    n = max(10_000, int(200_000 * loop_ms / 1e3 / probe))
    with hardstop.deadline(60):  # make sure the watchdog runs, and find it
        watchdog = next((t for t in threading.enumerate() if t.name == "hardstop-watchdog"), None)
    watchdog_cpu = thread_cpu(watchdog)
    runs: dict[str, list[tuple[float, float]]] = {"plain": [], "guarded": [], "control": []}
    methods = {"plain": run_plain, "guarded": run_deadline, "control": run_plain}
    order = list(runs)
    for index in range(rounds):
        # Rotate the order, so that a trend in the machine's speed hits all alike.
        shift = index % len(order)
        for name in order[shift:] + order[:shift]:
            runs[name].append(methods[name](n))
    watchdog_cpu = thread_cpu(watchdog) - watchdog_cpu
    n_trace = max(1_000, n // 10)
    runs["traced"], runs["plain, short"] = [], []
    for _ in range(trace_runs):
        runs["plain, short"].append(run_plain(n_trace))
        runs["traced"].append(run_settrace(n_trace))
    wall = {name: [w for w, _ in values] for name, values in runs.items()}
    cpu = {name: [c for _, c in values] for name, values in runs.items()}
    plain, guarded = wall["plain"], wall["guarded"]

    def slowdown_of(series: dict, name: str, base: str = "plain") -> float:
        return (statistics.median(series[name]) / statistics.median(series[base]) - 1) * 100

    def paired_of(name: str) -> float:
        return statistics.median((a / b - 1) * 100 for a, b in zip(wall[name], wall["plain"], strict=True))

    slowdown = slowdown_of(wall, "guarded")
    trace_slowdown = slowdown_of(wall, "traced", "plain, short")
    # 95% interval of the slowdown, by resampling the rounds (pairs kept together).
    rng = random.Random(0)
    resampled = []
    for _ in range(1000):
        picks = [rng.randrange(rounds) for _ in range(rounds)]
        resampled.append(
            (statistics.median([guarded[i] for i in picks]) / statistics.median([plain[i] for i in picks]) - 1) * 100
        )
    resampled.sort()
    low, high = resampled[25], resampled[974]
    alive = watchdog is not None and watchdog.is_alive()
    spent = f", {watchdog_cpu * 1e3:.3f} ms of CPU in all {rounds} rounds" if not math.isnan(watchdog_cpu) else ""
    print(
        f"  {n:,} iterations, {rounds} rounds of each, order rotated; hardstop's watchdog thread alive "
        f"throughout: {check(alive)}{spent}"
    )
    print(
        f"  {'how the loop runs':42} {'median ms':>10} {'min ms':>8} {'slowdown':>9} {'paired':>8} "
        f"{'CPU ms':>8} {'CPU slowdown':>12}"
    )
    rows = [
        ("plain", "plain"),
        ("inside with hardstop.deadline(60):", "guarded"),
        ("plain again (control: the noise floor)", "control"),
    ]
    for label, name in rows:
        median_ms, min_ms = statistics.median(wall[name]) * 1e3, min(wall[name]) * 1e3
        cpu_ms = statistics.median(cpu[name]) * 1e3
        if name == "plain":
            print(f"  {label:42} {median_ms:10.3f} {min_ms:8.3f} {'':9} {'':8} {cpu_ms:8.3f}")
        else:
            print(
                f"  {label:42} {median_ms:10.3f} {min_ms:8.3f} {slowdown_of(wall, name):+8.2f}% "
                f"{paired_of(name):+7.2f}% {cpu_ms:8.3f} {slowdown_of(cpu, name):+11.2f}%"
            )
    scale = n / n_trace
    print(
        f"  {'sys.settrace kill-flag recipe (KThread)':42} {statistics.median(wall['traced']) * 1e3 * scale:10.3f} "
        f"{min(wall['traced']) * 1e3 * scale:8.3f} {trace_slowdown:+8.0f}% {'':8} "
        f"{statistics.median(cpu['traced']) * 1e3 * scale:8.3f} {slowdown_of(cpu, 'traced', 'plain, short'):+11.0f}%"
    )
    print(
        f"  (slowdown: of the medians; paired: median of the per-round ratios to the plain run; CPU: this "
        f"thread's CPU time, which leaves out the time the OS ran something else. settrace: {trace_runs} "
        f"runs of {n_trace:,} iterations against plain runs of that length, scaled to {n:,})"
    )
    print(
        f"  95% interval of the slowdown (resampling the rounds): {low:+.2f}% .. {high:+.2f}%"
        + ("; it straddles the goal: this machine is too noisy to tell" if low < GOAL_OVERHEAD_PCT <= high else "")
    )
    summary.append(
        (
            "slowdown of a loop inside a deadline",
            f"{slowdown:+.2f}% [{low:+.1f}..{high:+.1f}]",
            f"< {GOAL_OVERHEAD_PCT:g}%",
            check(slowdown < GOAL_OVERHEAD_PCT) + ("*" if low < GOAL_OVERHEAD_PCT <= high else ""),
        )
    )
    summary.append(("slowdown under the settrace recipe", f"{trace_slowdown:+.0f}%", "(for reference)", "-"))


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~15 s run: fewer batches and rounds")
    parser.add_argument("--batches", type=int, help="batches per method in 1 (default 25; quick 7)")
    parser.add_argument("--rounds", type=int, help="runs of each loop in 3 (default 150; quick 40)")
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--depth", type=int, default=200, help="nested deadlines per thread")
    parser.add_argument("--span", type=float, default=2.5, help="seconds over which the deadlines fall")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--only",
        choices=["cost", "accuracy", "overhead"],
        action="append",
        help="run only this measurement (may be repeated)",
    )
    args = parser.parse_args()
    batches = args.batches or (7 if args.quick else 25)
    rounds = args.rounds or (40 if args.quick else 150)
    trace_runs = 3 if args.quick else 5
    batch_seconds = 0.05 if args.quick else 0.1

    began = time.monotonic()
    print(
        f"{platform.python_implementation()} {platform.python_version()} ({sys.executable}), "
        f"{platform.system()} {platform.release()} {platform.machine()}"
    )
    print(
        f"{cpu_model()}, {os.cpu_count()} CPUs; hardstop {version_of('hardstop')}, "
        f"stopit {version_of('stopit')}, func-timeout {version_of('func-timeout')}, "
        f"setuptools {version_of('setuptools')}"
    )
    summary: list[tuple[str, str, str, str]] = []
    only = set(args.only or ["cost", "accuracy", "overhead"])
    if "cost" in only:
        measure_cost(batches, batch_seconds, summary)
    if "accuracy" in only:
        measure_accuracy(args.threads, args.depth, args.span, 1.0, args.seed, summary)
    if "overhead" in only:
        measure_overhead(rounds, trace_runs, 50.0, summary)

    print(f"\nSummary ({time.monotonic() - began:.0f} s in all)")
    print(f"  {'figure':44} {'value':>22} {'goal':>16} {'met?':>5}")
    for figure, value, goal, met in summary:
        print(f"  {figure:44} {value:>22} {goal:>16} {met:>5}")
    if any(met.endswith("*") for *_, met in summary):
        print("  * its 95% interval straddles the goal: the verdict is within this machine's noise")


if __name__ == "__main__":
    main()
