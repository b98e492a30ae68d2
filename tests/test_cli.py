"""``python -m hardstop``: the newcomer's first command, a report probed as it runs."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

POSIX = hasattr(signal, "pthread_kill")
STOPPED = r"stopped, \d+\.\d\d ms"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hardstop", *args], capture_output=True, text=True, timeout=120)


def row(out: str, wait: str, worker: str, main: str) -> bool:
    return re.search(rf"^{re.escape(wait)} +{worker} +{main}$", out, re.M) is not None


def test_python_m_hardstop_reports_what_it_probed() -> None:
    result = run()
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no traceback, no "Exception in thread"
    out = result.stdout
    assert out.startswith("hardstop ")
    assert f"Python {sys.version.split()[0]}" in out
    assert re.search(r"^GIL: (on|off): \S", out, re.M)
    assert row(out, "pure-Python loop", STOPPED, STOPPED)
    for woken in ("threading.Event.wait()", "queue.Queue.get()", "threading.Condition.wait()", "hardstop.sleep()"):
        assert row(out, woken, STOPPED, STOPPED), woken
    main = STOPPED if POSIX else "not probed"
    # 3.15+ end a worker's system calls with the wake signal; lock waits never.
    worker = STOPPED if POSIX and sys.version_info >= (3, 15) else "NOT stopped"
    assert row(out, "time.sleep()", worker, main)
    assert row(out, "socket.recv()", worker, main)
    assert row(out, "threading.Lock.acquire()", "NOT stopped", main)
    assert "NOT stopped: still waiting after 1 s: its request was withdrawn" in out
    if POSIX:
        assert "wake signal: SIGURG" in out
    # Every quirk says whether it applies, and how that is known.
    quirks = out.split("CPython quirks", 1)[1]
    back_edge = (3, 11) <= sys.version_info[:2] <= (3, 14)
    escape = rf"^  {'yes' if back_edge else 'no '}  3\.11-3\.14 +an exception raised at a loop's back-edge"
    assert re.search(escape, quirks, re.M)
    assert re.search(r"^ +probed: (escaped|caught)", quirks, re.M)
    assert re.search(r"^ +from the version", quirks, re.M)


def test_json_is_the_same_report() -> None:
    result = run("--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["python"] == sys.version.split()[0]
    assert report["gil"].startswith(("on: ", "off: "))
    assert {(r["wait"], r["thread"]) for r in report["waits"]} >= {("time.sleep()", "worker"), ("time.sleep()", "main")}


def test_help_and_bench_help() -> None:
    result = run("--help")
    assert result.returncode == 0 and "--json" in result.stdout
    result = run("bench", "--help")
    assert result.returncode == 0, result.stderr
    assert "bench" in result.stdout
