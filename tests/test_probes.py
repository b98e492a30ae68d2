"""The probes behind ``python -m hardstop``: they find what hardstop promises on this
version, report it in the documented shape, leave nothing behind, and the
generated docs/capabilities.md still says what they find here."""

from __future__ import annotations

import json
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import hardstop
from conftest import WAIT
from hardstop import _hardstop, _probe_waits, _probes

DOC = Path(__file__).resolve().parent.parent / "docs" / "capabilities.md"
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
POSIX = hasattr(signal, "pthread_kill")

CONDITION_WAITS = ["threading.Event.wait()", "threading.Condition.wait()", "queue.Queue.get()", "hardstop.sleep()"]
SYSTEM_CALLS = ["time.sleep()", "select.select()", "socket.recv()", "os.read() on a pipe", "subprocess.Popen.wait()"]
OUTCOMES = {_probes.STOPPED, _probes.NOT_STOPPED, _probes.LATE, _probes.RETURNED_FIRST, _probes.NOT_PROBED}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """``python -m hardstop --json``, run once for this module (a few seconds)."""
    result = subprocess.run([sys.executable, "-m", "hardstop", "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no traceback, no "Exception in thread"
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def stopped(report: dict[str, Any], wait: str, thread: str) -> bool:
    [result] = [r for r in report["waits"] if r["wait"] == wait and r["thread"] == thread]
    return bool(result["stopped"])


def applies(report: dict[str, Any], key: str) -> bool:
    [quirk] = [q for q in report["quirks"] if q["key"] == key]
    return bool(quirk["applies"])


def test_the_json_has_the_documented_shape(report: dict[str, Any]) -> None:
    assert report["python"] == platform.python_version()
    assert set(report) == {
        "hardstop",
        "python",
        "implementation",
        "platform",
        "extension",
        "gil",
        "wake_signal",
        "bound_seconds",
        "waits",
        "quirks",
        "leftover_threads",
    }
    assert report["wake_signal"] == ("SIGURG" if POSIX else None)
    assert report["gil"].startswith(("on: ", "off: "))  # the reasons: tests/test_gil.py
    pairs = [(r["wait"], r["thread"]) for r in report["waits"]]
    assert pairs == [(wait.label, thread) for thread in ("worker", "main") for wait in _probes.WAITS]
    for result in report["waits"]:
        assert set(result) == {"wait", "thread", "outcome", "stopped", "latency_ms", "note"}
        assert result["outcome"] in OUTCOMES
        assert result["stopped"] == (result["outcome"] == _probes.STOPPED)
        # A time only for a stop, and a reason for anything else.
        assert (result["latency_ms"] is not None) == result["stopped"], result
        assert bool(result["note"]) != result["stopped"], result
    assert [q["key"] for q in report["quirks"]] == [quirk.key for quirk in _probes.QUIRKS]
    for quirk in report["quirks"]:
        assert set(quirk) == {"key", "quirk", "versions", "applies", "probed", "evidence"}
        assert quirk["evidence"].startswith("probed: " if quirk["probed"] else "from the version")


def test_waits_stopped_as_hardstop_promises_on_this_version(report: dict[str, Any]) -> None:
    for thread in ("worker", "main"):
        assert stopped(report, "pure-Python loop", thread), thread
        for wait in CONDITION_WAITS:  # hardstop's own wake, in any thread
            assert stopped(report, wait, thread), (wait, thread)
    # The main thread's system calls and lock waits: the wake signal (POSIX).
    for wait in [*SYSTEM_CALLS, "threading.Lock.acquire()"]:
        assert stopped(report, wait, "main") == POSIX, wait
    # A worker's system calls: only from 3.15, where a signal ends them with the exception.
    for wait in SYSTEM_CALLS:
        assert stopped(report, wait, "worker") == (POSIX and sys.version_info >= (3, 15)), wait
    # A worker's lock wait: never; said so, withdrawn, released.
    [lock] = [r for r in report["waits"] if r["wait"] == "threading.Lock.acquire()" and r["thread"] == "worker"]
    assert lock["outcome"] == _probes.NOT_STOPPED, lock
    assert "withdrawn" in lock["note"]
    assert report["leftover_threads"] == []


def test_quirks_found_where_they_were_measured(report: dict[str, Any]) -> None:
    here = sys.version_info[:2]
    assert applies(report, "back_edge_escape") == ((3, 11) <= here <= (3, 14))
    assert applies(report, "thread_start_twin") == (here <= (3, 11))
    assert applies(report, "with_entry_window") == (here == (3, 14))
    assert applies(report, "exc_info_carrier") == (here == (3, 10))
    assert applies(report, "shared_pending_flag") == (here <= (3, 12))
    probed = {q["key"] for q in report["quirks"] if q["probed"]}
    assert probed == {"back_edge_escape", "thread_start_twin", "with_entry_window", "exc_info_carrier"}


def _doc_cells(title: str) -> dict[str, str]:
    """Row name -> this version's cell, from the table under ``## title``."""
    text = DOC.read_text()
    section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").strip().split(" | ") for line in section.splitlines() if line.startswith("| ")]
    header, body = rows[0], rows[1:]
    if VERSION not in header:
        pytest.skip(f"docs/capabilities.md has no column for CPython {VERSION}")
    column = header.index(VERSION)
    key_columns = 2 if title.startswith("Waits") else 1
    return {" | ".join(row[:key_columns]): row[column] for row in body}


def test_the_generated_capability_table_matches_the_probes_here(report: dict[str, Any]) -> None:
    text = DOC.read_text()
    assert "Generated on" in text and "do not edit by hand" in text
    generated_on = re.search(r"\bon ([A-Za-z]+ [\w-]+), wake signal", text)
    if generated_on is None or generated_on.group(1) != report["platform"]:
        pytest.skip(f"docs/capabilities.md was not generated on {report['platform']}")
    waits = _doc_cells("Waits stopped by `interrupt()`")
    for result in report["waits"]:
        cell = waits[f"{result['wait']} | {result['thread']}"]
        assert (cell == "yes") == result["stopped"], (result, cell)
    quirks = _doc_cells("CPython quirks")
    for quirk in report["quirks"]:
        cell = quirks[quirk["quirk"].replace("|", "\\|")]
        assert cell == ("yes" if quirk["applies"] else "no"), (quirk, cell)


def test_probing_in_process_leaves_nothing_behind() -> None:
    """Every probed thread ended, nothing of hardstop's pending, no descriptor kept."""
    before = {thread.ident for thread in threading.enumerate()}
    descriptors = Path("/proc/self/fd")
    open_before = len(list(descriptors.iterdir())) if descriptors.exists() else 0
    results = [*_probes.probe_workers(_probes.WAITS), _probes.probe_main_thread(_probes.WAITS[5])]
    assert {result.outcome for result in results} <= {_probes.STOPPED, _probes.NOT_STOPPED, _probes.NOT_PROBED}
    after = [t for t in threading.enumerate() if t.ident not in before and not t.name.startswith("hardstop-pump")]
    assert after == []
    for ident in _hardstop.thread_idents():
        assert _hardstop.pending_count(ident) == 0
        assert _hardstop.slot_is_empty(ident)
    if descriptors.exists():
        assert len(list(descriptors.iterdir())) == open_before


def test_an_exception_raised_as_a_timed_wait_returns_is_not_counted_as_a_stop() -> None:
    """On a loaded machine a probe's request can come so late that the wait runs its
    whole length and the exception is raised as it returns: that wait was not
    stopped (a 3.14t CI run reported a worker's time.sleep as stopped so)."""
    setup = _probe_waits._Setup(lambda: time.sleep(0.3), lambda: None, lasts=0.3)
    record = _probe_waits._Record()
    thread = threading.Thread(target=_probe_waits._run_wait, args=(setup, record))
    thread.start()
    while record.entered is None:
        time.sleep(0.001)
    receipt = hardstop.interrupt(thread, wake=False)  # nothing ends the sleep: raised as it returns
    thread.join(WAIT)
    assert receipt.status == "delivered"
    assert (record.raised_at, record.returned_at is not None) == (None, True)
