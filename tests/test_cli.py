"""``python -m hardstop``: the newcomer's first command."""

from __future__ import annotations

import re
import signal
import subprocess
import sys


def test_python_m_hardstop_describes_the_interpreter_and_measures_each_case() -> None:
    result = subprocess.run([sys.executable, "-m", "hardstop"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no traceback, no "Exception in thread"
    out = result.stdout
    assert f"Python {sys.version.split()[0]}" in out
    assert re.search(r"^pure-Python loop +stopped +\d+\.\d\d ms$", out, re.M)
    assert re.search(r"^pure-Python loop, main thread +stopped +\d+\.\d\d ms$", out, re.M)
    for woken in ("threading.Event.wait()", "queue.Queue.get()", "hardstop.sleep()"):
        assert re.search(rf"^{re.escape(woken)} +stopped +\d+\.\d\d ms$", out, re.M), woken
    if hasattr(signal, "pthread_kill"):
        assert re.search(r"^time\.sleep\(\), main thread +stopped +\d+\.\d\d ms$", out, re.M)
        assert "woken by SIGURG" in out
    # 3.15+ end a worker's system calls with the wake signal; lock waits never.
    signals_workers = sys.version_info >= (3, 15) and hasattr(signal, "pthread_kill")
    if signals_workers:
        assert re.search(r"^time\.sleep\(\) +stopped +\d+\.\d\d ms$", out, re.M)
    for stuck in ("Lock.acquire()",) if signals_workers else ("time.sleep()", "Lock.acquire()"):
        assert re.search(rf"^{re.escape(stuck)} +NOT stopped +> 1\.0 s +a worker blocked in C", out, re.M), stuck


def test_no_demo_only_describes() -> None:
    result = subprocess.run([sys.executable, "-m", "hardstop", "--no-demo"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "thread stuck in" not in result.stdout
    assert result.stdout.startswith("hardstop ")
