"""Slow requests under gunicorn: hardstop's ThreadWorker beside stock gthread.

Run: python benchmarks/web_timeouts.py [--requests N] [--slow-share F] [--clients C]

Each worker is started from gunicorn's command line (one process, 8 threads,
``-t 1``) with tests/web_apps/wsgi_app.py, and driven by C client threads
sending N requests in all, a share F of them slow (a 3 s pure-Python loop,
``/spin?seconds=3``) and the rest fast (``/fast``, about 2 ms of work). After
each slow request, its client sends a fast follow-up at once. Reported per
worker: how long past the 1 s limit the slow requests were answered (median,
p99; hardstop answers 504, stock gthread lets them run their 3 s and answers
200), the follow-up latency, and the latency of the other fast requests.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

APPS = Path(__file__).resolve().parent.parent / "tests" / "web_apps"
LIMIT = 1.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str) -> tuple[int, float]:
    start = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - start
    finally:
        connection.close()


def start_gunicorn(worker: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    args = [
        "-m",
        "gunicorn",
        "-k",
        worker,
        "--threads",
        "8",
        "-t",
        "1",
        "--graceful-timeout",
        "2",
        "-b",
        f"127.0.0.1:{port}",
    ]
    process = subprocess.Popen(
        [sys.executable, *args, "--no-control-socket", "wsgi_app:app"],
        cwd=APPS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"gunicorn -k {worker} did not start")


def drive(port: int, requests: int, slow_share: float, clients: int, seed: int) -> dict[str, list[float]]:
    plan = random.Random(seed)
    kinds = ["slow" if plan.random() < slow_share else "fast" for _ in range(requests)]
    lock = threading.Lock()
    results: dict[str, list[float]] = {"slow": [], "follow-up": [], "fast": [], "statuses": []}

    def client(mine: list[str]) -> None:
        for kind in mine:
            if kind == "slow":
                status, took = get(port, "/spin?seconds=3")
                _, follow_up = get(port, "/fast")
                with lock:
                    results["slow"].append(took - LIMIT)
                    results["follow-up"].append(follow_up)
                    results["statuses"].append(status)
            else:
                _, took = get(port, "/fast")
                with lock:
                    results["fast"].append(took)

    threads = [threading.Thread(target=client, args=(kinds[n::clients],)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--slow-share", type=float, default=0.1)
    parser.add_argument("--clients", type=int, default=8)
    options = parser.parse_args()
    print(f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"# {options.requests} requests, {options.slow_share:.0%} slow, {options.clients} clients, 8 threads, -t 1")
    print("| worker | slow answered | past the limit, median | p99 | follow-up median | p99 | fast median | p99 |")
    print("|---|---|---|---|---|---|---|---|")
    for worker in ("hardstop.gunicorn.ThreadWorker", "gthread"):
        process, port = start_gunicorn(worker)
        try:
            results = drive(port, options.requests, options.slow_share, options.clients, seed=20)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        statuses = sorted(set(results["statuses"]))
        ms = {key: [value * 1000 for value in values] for key, values in results.items() if key != "statuses"}
        print(
            f"| {worker} | {len(results['slow'])}x {'/'.join(map(str, statuses))} "
            f"| {statistics.median(ms['slow']):.0f} ms | {p99(ms['slow']):.0f} ms "
            f"| {statistics.median(ms['follow-up']):.1f} ms | {p99(ms['follow-up']):.1f} ms "
            f"| {statistics.median(ms['fast']):.1f} ms | {p99(ms['fast']):.1f} ms |"
        )


if __name__ == "__main__":
    main()
