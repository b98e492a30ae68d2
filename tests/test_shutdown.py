"""Interpreter shutdown: requests aimed at daemon threads once finalization has
begun are refused or end undelivered, never delivered, and the exit never hangs.

Once ``sys.is_finalizing()`` is true CPython has dropped every other thread
state, and daemon threads never run Python code again (3.10-3.13 end them when
they next take the GIL, 3.14+ park them for good). Each scenario runs in a child
interpreter, which prints what it saw from ``__del__`` of an object kept in
``builtins`` (cleared late in finalization) or from ``atexit``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import WAIT

PRELUDE = """
import atexit, builtins, os, sys, threading, time
import hardstop

def say(text):
    os.write(1, (text + "\\n").encode())

class AtFinalization:
    def __init__(self, action):
        self.action = action
    def __del__(self):
        say(f"finalizing={sys.is_finalizing()}")
        self.action()

def spin():
    while True:
        pass
"""


def run_child(body: str) -> list[str]:
    """Run PRELUDE + body in a new interpreter; it must exit 0, silently on stderr."""
    code = PRELUDE + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=6 * WAIT)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no traceback, no "Exception ignored", no warning at exit
    return done.stdout.splitlines()


def test_refused_once_finalization_has_begun() -> None:
    lines = run_child("""
        worker = threading.Thread(target=spin, daemon=True)
        worker.start()

        def at_finalization():
            try:
                hardstop.interrupt(worker)
            except hardstop.ThreadNotFound as error:
                say(f"interrupt: {error}")
            result = hardstop.kill(worker, timeout=5)
            say(f"kill: {result.stopped} {result.attempts} {result.reason}")
            try:
                hardstop.deadline(5).__enter__()
            except RuntimeError as error:
                say(f"deadline: {error}")

        builtins.at_finalization = AtFinalization(at_finalization)
    """)
    assert lines[0] == "finalizing=True"
    assert lines[1].startswith("interrupt: The interpreter is shutting down: thread ")
    assert lines[1].endswith(" runs no more Python code, so nothing was armed.")
    assert lines[2] == (
        "kill: False 0 The interpreter is shutting down: other threads run no more Python code, so none can be "
        "interrupted; this one stays where it is until the process exits."
    )
    assert lines[3].startswith("deadline: <hardstop.Deadline not entered")
    assert lines[3].endswith("cannot be enforced: the interpreter is shutting down and no thread is left to fire it.")


def test_a_request_pending_at_shutdown_ends_undelivered() -> None:
    """Armed from atexit on a daemon blocked where it cannot be woken: the
    receipt is final, undelivered, once the interpreter drops the thread."""
    lines = run_child(
        """
        lock = threading.Lock()
        lock.acquire()
        worker = threading.Thread(target=lock.acquire, daemon=True)  # never woken in a worker
        worker.start()
        receipts = []

        def at_exit():
            receipts.append(hardstop.interrupt(worker))
            say(f"atexit: {receipts[0].status}")

        def at_finalization():
            receipt = receipts[0]
            say(f"{receipt.status}: {receipt.reason}; wait: {receipt.wait(WAIT)}")

        atexit.register(at_exit)
        builtins.at_finalization = AtFinalization(at_finalization)
    """.replace("WAIT", repr(WAIT))
    )
    assert lines == [
        "atexit: pending",
        "finalizing=True",
        "undelivered: the interpreter shut down before the thread raised this exception "
        "(daemon threads run no more Python code); wait: False",
    ]


def test_kill_from_atexit_still_stops_a_daemon() -> None:
    """atexit handlers run before finalization: daemon threads are alive there."""
    lines = run_child(
        """
        worker = threading.Thread(target=spin, daemon=True)
        worker.start()
        atexit.register(lambda: say(f"kill: {hardstop.kill(worker, timeout=WAIT, exc=SystemExit).stopped}"))
    """.replace("WAIT", repr(WAIT))
    )
    assert lines == ["kill: True"]


def test_exit_with_daemons_pending_requests_and_open_deadlines_is_prompt_and_silent() -> None:
    """Daemon threads in loops, in deadlines (one due during the exit), with
    requests queued behind armed ones, a shield holding one back, and the pump
    and watchdog running: the process exits, nothing is printed."""
    lines = run_child("""
        def in_deadline(seconds):
            while True:
                try:
                    with hardstop.deadline(seconds):
                        spin()
                except hardstop.DeadlineExceeded:
                    pass

        def catching():
            while True:
                try:
                    spin()
                except KeyError:
                    pass

        def shielded():
            with hardstop.shield():
                spin()

        workers = [threading.Thread(target=body, daemon=True) for body in
                   [catching, catching, shielded, lambda: in_deadline(0.001), lambda: in_deadline(3600)]]
        for worker in workers:
            worker.start()
        for worker in workers[:3]:
            for _ in range(3):
                hardstop.interrupt(worker, KeyError("queued"), wake=False)
        say("exiting")
    """)
    assert lines == ["exiting"]


DEADLINE_AT_EXIT = textwrap.dedent("""
    def at_exit():
        try:
            with hardstop.deadline(0.1):
                threading.Event().wait(WAIT)
            say("no expiry")
        except hardstop.DeadlineExceeded:
            say("expired")
        except RuntimeError as error:
            say(f"refused: {error}")
    atexit.register(at_exit)
""")


def test_the_first_deadline_of_a_process_entered_at_exit_fires_or_is_refused_with_the_reason() -> None:
    lines = run_child(f"WAIT = {WAIT}\n" + DEADLINE_AT_EXIT)
    if sys.version_info[:2] == (3, 12):  # no new thread at shutdown, so no watchdog
        assert lines == [
            "refused: hardstop cannot enforce this deadline: it is the first of the process, and the watchdog "
            "thread that fires deadlines cannot start, because CPython 3.12 starts no new thread once the "
            "interpreter has begun to shut down (atexit handlers run then). Enter a deadline before exit to start "
            "the watchdog early (it then serves deadlines entered at exit too)."
        ]
    else:
        assert lines == ["expired"]


def test_a_deadline_entered_at_exit_fires_once_the_watchdog_was_started_before() -> None:
    lines = run_child(f"WAIT = {WAIT}\nwith hardstop.deadline(WAIT):\n    pass\n" + DEADLINE_AT_EXIT)
    assert lines == ["expired"]
