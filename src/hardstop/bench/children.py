"""The cells measured in other processes: daemon threads (4) and multiprocessing (5).

A daemon thread is never stopped: it is abandoned when its process exits. Each
trial starts ``python -m hardstop.bench.children daemon WORKLOAD``, which runs
the workload in a daemon thread and, when told, lets its main thread return;
measured: whether the thread was still in its work then, and how long the
process took to exit.

multiprocessing's cells run in a host process of their own,
``python -m hardstop.bench.children process SETTINGS``, so that it starts its
children with the interpreter's default start method from a process with no
other threads (``fork`` from a threaded process is unsafe). Measured there:
``terminate()`` on a child in each workload, the child's start-up (``start()``
to the work running), a whole ``start()`` + ``join()`` of a child doing
nothing, and the loop's speed in a child against a plain thread of the host.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

from hardstop.bench import measure
from hardstop.bench.methods import Method
from hardstop.bench.workloads import WORKLOADS, CountedLoop, make, run_plain

HOUR = 3600.0  # the work in a child lasts that long: only its end stops it


# --------------------------------------------------------------------------- daemon threads


def _daemon_child(key: str) -> None:
    work = make(key, HOUR)
    ready = threading.Event()

    def target() -> None:
        ready.set()
        run_plain(work)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    ready.wait()
    print("ready", flush=True)
    sys.stdin.readline()
    print(f"alive {thread.is_alive()}", flush=True)
    # The main thread returns: the interpreter exits with the daemon thread still in its work.


def _daemon_trial(key: str, s: measure.Settings) -> measure.Trial:
    command = [sys.executable, "-m", "hardstop.bench.children", "daemon", key]
    trial = measure.Trial()
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("the child did not start its work")
            time.sleep(s.settle)
            asked = time.perf_counter()
            child.stdin.write("exit\n")
            child.stdin.flush()
            alive = child.stdout.readline().strip() == "alive True"
            child.wait(s.bound + measure.START_LIMIT)
            trial.latency = time.perf_counter() - asked
            if not alive or child.returncode != 0:
                trial.note = f"unexpected: thread alive at exit {alive}, exit status {child.returncode}"
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            child.kill()
            trial.note = f"{type(error).__name__}: {error}"
        if child.wait() != 0 and not trial.note:
            trial.note = f"exit status {child.returncode}: {child.stderr.read() if child.stderr else ''}"
    return trial


def daemon_cells(s: measure.Settings) -> list[dict[str, Any]]:
    cells = []
    for kind in WORKLOADS:
        trials = [_daemon_trial(kind.key, s) for _ in range(s.exit_trials)]
        cell = measure.summarize("daemon", kind.key, "worker", trials, s.bound)
        if cell["status"] == "stopped" and not cell["note"]:
            cell["status"] = "at exit"
            cell["note"] = "never stopped while the process runs: abandoned at exit (latency: to the exit)"
        cells.append(cell)
    return cells


# --------------------------------------------------------------------------- multiprocessing


def _work_in_child(key: str, ready: Event) -> None:
    work = make(key, HOUR)
    ready.set()
    run_plain(work)


def _loop_server(connection: Connection) -> None:
    clock = measure._clock()
    while iterations := connection.recv():
        work = CountedLoop(iterations)
        start = clock()
        run_plain(work)
        connection.send((clock() - start) / iterations)


def _process_trial(context: Any, key: str, s: measure.Settings, startups: list[float]) -> measure.Trial:
    ready = context.Event()
    began = time.perf_counter()
    child = context.Process(target=_work_in_child, args=(key, ready), daemon=True)
    child.start()
    trial = measure.Trial()
    if not ready.wait(measure.START_LIMIT):
        trial.note = "the child did not start its work"
    else:
        startups.append(time.perf_counter() - began)
        time.sleep(s.settle)
        asked = time.perf_counter()
        child.terminate()
        trial.request = time.perf_counter() - asked
        child.join(s.bound)
        if child.exitcode is None:
            trial.note = "still running after terminate(): killed"
        else:
            trial.latency = time.perf_counter() - asked
    child.kill()
    child.join()
    return trial


def _process_host(s: measure.Settings) -> dict[str, Any]:
    context = multiprocessing.get_context()
    cells = []
    for kind in WORKLOADS:
        startups: list[float] = []
        trials: list[measure.Trial] = []
        for _ in range(s.trials):
            trials.append(_process_trial(context, kind.key, s, startups))
            if trials[-1].latency is None:
                break
        cell = measure.summarize("process", kind.key, "worker", trials, s.bound)
        if startups:
            cell["startup_ms"] = statistics.median(startups) * 1e3
        cells.append(cell)
    calls = []
    for _ in range(max(1, s.batches)):
        began = time.perf_counter()
        child = context.Process(target=measure._nothing)
        child.start()
        child.join()
        calls.append(time.perf_counter() - began)
    here, there = context.Pipe()
    server = context.Process(target=_loop_server, args=(there,), daemon=True)
    server.start()
    iterations = measure.calibrate(s.loop_seconds)
    plain, child_costs = [], []
    for _ in range(s.rounds):
        plain.append(1e9 * measure.loop_cost(Method, iterations))
        here.send(iterations)
        child_costs.append(1e9 * here.recv())
    here.send(0)
    server.join()
    return {
        "start_method": context.get_start_method(),
        "cells": cells,
        "guarded_us": statistics.median(calls) * 1e6,
        **measure.compare(child_costs, plain),
    }


def process_results(s: measure.Settings) -> dict[str, Any]:
    """Run the host process; on failure, every cell says why."""
    command = [sys.executable, "-m", "hardstop.bench.children", "process", json.dumps(asdict(s))]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        why = "the host process did not finish in 600 s"
    else:
        if done.returncode == 0:
            results: dict[str, Any] = json.loads(done.stdout)
            return results
        why = f"the host process failed (exit status {done.returncode}): {done.stderr.strip()[-300:]}"
    return {"cells": [measure.blank("process", kind.key, "worker", "error", why) for kind in WORKLOADS]}


def main(argv: list[str]) -> int:
    if argv[0] == "daemon":
        _daemon_child(argv[1])
    else:
        print(json.dumps(_process_host(measure.Settings(**json.loads(argv[1])))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
