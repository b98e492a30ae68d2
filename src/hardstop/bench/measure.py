"""Measuring, in this process: stop cells, the slowdown of an unstopped loop, guarded calls.

A stop cell runs one workload in a worker thread (or in the main thread, a
helper thread making the request) under one method, ``trials`` times. Each
trial: start the work, let it settle into its wait, make the request (timing
the call), and give it ``bound`` seconds. A worker counts as stopped when its
thread has ended (``join``). The latency runs from the request (or the limit of
a timeout-style method) to the moment the method's exception, or the end of
its loop, left the work's function (the settrace recipe raises again in any
clean-up, so there it is the thread's end). Then, whatever happened, what is
still armed is withdrawn, the work is released, every thread is joined, and the
next trial starts from a clean slate. A cell whose first trial did not stop is
not tried again.
"""

from __future__ import annotations

import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hardstop
from hardstop.bench.methods import Method, Settrace
from hardstop.bench.workloads import CountedLoop, Workload

START_LIMIT = 10.0  # seconds the work is given to start


@dataclass(frozen=True)
class Settings:
    mode: str
    trials: int  # per cell (one only if the first did not stop)
    bound: float  # seconds a stop is given
    settle: float  # seconds from the work starting to the request; a timeout-style method's limit
    rounds: int  # of the slowdown measurement
    loop_seconds: float  # length of one run of the loop in it
    batches: int  # of guarded calls
    batch_seconds: float
    exit_trials: int  # daemon-thread processes per workload
    requests: int  # stop requests timed one after another, warm

    @property
    def limit(self) -> float:
        """How long the CPU loop and time.sleep last: past the bound, by a margin."""
        return self.settle + self.bound + max(0.1, self.bound / 2)


MODES = {
    "smoke": Settings("smoke", 1, 0.1, 0.005, 1, 0.002, 1, 0.002, 1, 20),
    "quick": Settings("quick", 5, 0.25, 0.01, 15, 0.005, 5, 0.02, 2, 200),
    "full": Settings("full", 30, 1.0, 0.02, 60, 0.03, 15, 0.1, 10, 2000),
}


@dataclass
class Trial:
    latency: float | None = None  # seconds from the request to the stop, if it stopped at all
    request: float | None = None  # seconds the request call took
    note: str = ""


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-round(fraction * 1000) * len(ordered) // 1000)))
    return ordered[rank - 1]


def summarize(method: str, workload: str, thread: str, trials: list[Trial], bound: float) -> dict[str, Any]:
    """One cell of the results, as written to the JSON file."""
    stopped = [t.latency for t in trials if t.latency is not None and t.latency <= bound]
    status = "stopped" if len(stopped) == len(trials) else "partly stopped" if stopped else "not stopped"
    notes = []
    for trial in trials:
        note = trial.note
        if trial.latency is not None and trial.latency > bound:
            note = f"ended {trial.latency * 1e3:.0f} ms after the request, past the bound"
        if note and note not in notes:
            notes.append(note)
    requests = [t.request for t in trials if t.request is not None]
    return {
        "method": method,
        "workload": workload,
        "thread": thread,
        "status": status,
        "trials": len(trials),
        "stopped": len(stopped),
        "latency_ms": {"median": statistics.median(stopped) * 1e3, "p99": percentile(stopped, 0.99) * 1e3}
        if stopped
        else None,
        "request_us": statistics.median(requests) * 1e6 if requests else None,
        "note": "; ".join(notes),
    }


def blank(method: str, workload: str, thread: str, status: str, note: str) -> dict[str, Any]:
    """A cell not measured: "n/a" (the method cannot run there), "not installed", "error"."""
    return {
        "method": method,
        "workload": workload,
        "thread": thread,
        "status": status,
        "trials": 0,
        "stopped": 0,
        "latency_ms": None,
        "request_us": None,
        "note": note,
    }


def settle_threads(baseline: int, limit: float = 3.0) -> str:
    """Wait for the threads a trial started (and a peer's helpers) to end."""
    end = time.monotonic() + limit
    while threading.active_count() > baseline and time.monotonic() < end:
        time.sleep(0.001)
    extra = threading.active_count() - baseline
    return f"{extra} thread(s) still running after the trial" if extra > 0 else ""


def _join_all(threads: list[threading.Thread | None], limit: float) -> str:
    end = time.monotonic() + limit
    for thread in threads:
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, end - time.monotonic()))
            if thread.is_alive():
                return f"{thread.name} did not end once released"
    return ""


def _add(trial: Trial, note: str) -> None:
    if note:
        trial.note = f"{trial.note}; {note}" if trial.note else note


def worker_trial(kind: type[Method], work_kind: type[Workload], s: Settings) -> Trial:
    method, work = kind(s.settle, s.bound), work_kind(s.limit)
    ready = threading.Event()
    box: dict[str, Any] = {}

    def body() -> None:
        box["working"] = threading.current_thread()  # func_timeout runs it in a thread of its own
        ready.set()
        try:
            method.loop(work.step)
        finally:
            box["ended"] = time.perf_counter()  # not under the settrace recipe: it raises again here

    def target() -> None:
        box["entered"] = time.perf_counter()
        try:
            method.guard(body)
        except BaseException:  # noqa: BLE001 - the stop, whatever the method raises
            pass

    baseline = threading.active_count()
    thread = method.thread(target)
    thread.start()
    trial = Trial()
    try:
        if not ready.wait(START_LIMIT):
            trial.note = "the work did not start"
            return trial
        working: threading.Thread = box["working"]
        token: object = None
        if method.timeout_style:
            asked = box["entered"] + method.limit
        else:
            time.sleep(s.settle)
            asked = time.perf_counter()
            token = method.request(thread)
            trial.request = None if method.request_waits else time.perf_counter() - asked
        working.join(max(0.0, asked + s.bound - time.perf_counter()))
        if working.is_alive():
            trial.note = method.withdraw(working, token)
        else:
            trial.latency = box.get("ended", time.perf_counter()) - asked
    except Exception as error:  # noqa: BLE001 - a method that fails is reported in its cell
        trial.note = f"{type(error).__name__}: {error}"
    finally:
        work.release()
        _add(trial, _join_all([box.get("working"), thread], s.limit + START_LIMIT))
        work.close()
        _add(trial, settle_threads(baseline))
    return trial


def main_trial(kind: type[Method], work_kind: type[Workload], s: Settings) -> Trial:
    method, work = kind(s.settle, s.bound), work_kind(s.limit)
    ready, done = threading.Event(), threading.Event()
    main = threading.current_thread()
    box: dict[str, float] = {}
    trial = Trial()

    def control() -> None:
        try:
            if not ready.wait(START_LIMIT):
                return
            token: object = None
            if method.timeout_style:
                asked = box["entered"] + method.limit
            else:
                time.sleep(s.settle)
                asked = time.perf_counter()
                token = method.request(main)
                trial.request = time.perf_counter() - asked
            box["asked"] = asked
            if not done.wait(max(0.0, asked + s.bound - time.perf_counter())):
                box["withdrawn"] = time.perf_counter()
                trial.note = method.withdraw(main, token)
        except Exception as error:  # noqa: BLE001
            trial.note = f"{type(error).__name__}: {error}"
        finally:
            work.release()

    def body() -> None:
        ready.set()
        try:
            method.loop(work.step)
        finally:
            box["ended"] = time.perf_counter()

    baseline = threading.active_count()
    helper = threading.Thread(target=control, name="bench-control", daemon=True)
    helper.start()
    try:
        box["entered"] = time.perf_counter()
        try:
            method.guard(body)
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 - the stop, whatever the method raises
            pass
        done.set()
        helper.join(s.limit + START_LIMIT)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - a request that landed after its trial: say so
        _add(trial, f"{type(error).__name__} raised after the trial")
    finally:
        done.set()
        _add(trial, _join_all([helper], s.limit + START_LIMIT))
        work.close()
        _add(trial, settle_threads(baseline))
    if "asked" in box and "ended" in box and "withdrawn" not in box:
        trial.latency = box["ended"] - box["asked"]
    return trial


def cell(kind: type[Method], work_kind: type[Workload], thread: str, s: Settings) -> dict[str, Any]:
    one = worker_trial if thread == "worker" else main_trial
    trials: list[Trial] = []
    for _ in range(s.trials):
        trials.append(one(kind, work_kind, s))
        if not any(t.latency is not None and t.latency <= s.bound for t in trials):
            break  # not stopped the first time: it will not be the next
    return summarize(kind.key, work_kind.key, thread, trials, s.bound)


def request_cost(kind: type[Method], requests: int) -> float | None:
    """Microseconds per stop request, warm (the cells time one-off requests): the
    median of ``requests`` requests, each withdrawn before the next, on a thread
    of the method's kind blocked in ``Lock.acquire`` (nothing is raised or woken).
    None for the methods without a separate request call."""
    if kind.timeout_style or kind.where != "thread" or kind.request_waits:
        return None
    lock, ready = threading.Lock(), threading.Event()
    lock.acquire()

    def blocked() -> None:
        ready.set()
        lock.acquire()

    baseline = threading.active_count()
    thread = kind(60.0, 60.0).thread(blocked)
    thread.start()
    samples = []
    try:
        ready.wait(START_LIMIT)
        time.sleep(0.01)  # into the wait
        for _ in range(requests):
            method = kind(60.0, 60.0)
            start = time.perf_counter()
            token = method.request(thread)
            samples.append(time.perf_counter() - start)
            method.withdraw(thread, token)
    finally:
        lock.release()
        thread.join(START_LIMIT)
        settle_threads(baseline)
    return statistics.median(samples) * 1e6


# --------------------------------------------------------------------------- slowdown while not stopped


def _clock() -> Callable[[], float]:
    """The thread's CPU time (which other processes do not inflate) where it is fine-grained
    (not on Windows, whose thread times advance in 15.6 ms steps)."""
    if sys.platform == "win32" or time.get_clock_info("thread_time").resolution > 1e-6:
        return time.perf_counter
    return time.thread_time


def loop_cost(kind: type[Method], iterations: int) -> float:
    """Seconds per unit of the CPU loop, run the method's way (in its thread, guard and loop), never stopped."""
    method = kind(3600.0, 3600.0)
    work = CountedLoop(iterations)
    clock = _clock()
    box: dict[str, float] = {}

    def body() -> None:
        start = clock()
        method.loop(work.step)
        box["cost"] = (clock() - start) / iterations

    thread = method.thread(lambda: method.guard(body))
    thread.start()
    thread.join()
    return box["cost"]


class Control(Method):
    key = "control"
    label = "plain thread, again (the noise)"


def calibrate(seconds: float) -> int:
    """Units of the CPU loop that take about ``seconds`` in a plain thread."""
    per_unit = min(loop_cost(Method, 2000) for _ in range(3))
    return max(200, int(seconds / max(per_unit, 1e-8)))


def unit_costs(kinds: list[type[Method]], rounds: int, iterations: int) -> dict[str, list[float]]:
    """Per method, nanoseconds per unit of the loop in each round, never stopped.

    Interleaved rounds, the order rotated, so that drift in the machine's speed
    hits every method alike. The settrace recipe runs a tenth of the units.
    """
    costs: dict[str, list[float]] = {kind.key: [] for kind in kinds}
    for index in range(rounds):
        shift = index % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            costs[kind.key].append(1e9 * loop_cost(kind, iterations // 10 if kind is Settrace else iterations))
    return costs


def compare(values: list[float], plain: list[float]) -> dict[str, Any]:
    """The slowdown against a plain thread: the median of the per-round ratios, and
    its 95% interval (resampling the rounds)."""
    ratios = [(value / base - 1) * 100 for value, base in zip(values, plain, strict=True)]
    rng = random.Random(0)
    resampled = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(1000))
    return {
        "unit_ns": statistics.median(values),
        "slowdown_pct": statistics.median(ratios),
        "interval_pct": [resampled[25], resampled[974]],
    }


# --------------------------------------------------------------------------- guarded calls that do not time out


def _nothing() -> None:
    pass


def _guarded(kind: type[Method], calls: int) -> float:
    method = kind(60.0, 60.0)
    guard = method.guard
    start = time.perf_counter()
    for _ in range(calls):
        guard(_nothing)
    return (time.perf_counter() - start) / calls


def guarded_calls(kinds: list[type[Method]], s: Settings) -> dict[str, float]:
    """Microseconds per call of a trivial function under a 60 s limit (medians of batches)."""
    with hardstop.deadline(60):  # start hardstop's watchdog thread outside the batches
        pass
    baseline = threading.active_count()
    order: list[type[Method]] = [Method, *kinds]
    sizes = {}
    for kind in order:
        estimate = min(_guarded(kind, 20) for _ in range(2))
        settle_threads(baseline)
        sizes[kind.key] = max(20, int(s.batch_seconds / estimate))
    samples: dict[str, list[float]] = {kind.key: [] for kind in order}
    for index in range(s.batches):
        shift = index % len(order)
        for kind in order[shift:] + order[:shift]:
            samples[kind.key].append(_guarded(kind, sizes[kind.key]))
            settle_threads(baseline)  # stopit's cancelled timers end
    return {key: statistics.median(values) * 1e6 for key, values in samples.items()}
