"""Reading another thread's frames never lets that thread free them mid-read.

On 3.11 a frame's object is made only when asked for, and that allocation may
start a garbage collection, whose callbacks and finalizers are Python code that
can let the GIL go. Asked for another thread's frame, the collection let that
thread return from the frame and call a larger one in its place, and CPython
then tied the new object to the freed frame: a segfault (CI, 3.11, the
Condition rain of test_stdlib_locks; CPython's own ``sys._current_frames()``
crashes the same way). Every version runs these; 3.11 is the one that needs
hardstop's guard (``_COLLECTS_IN_ALLOCATION`` in ext/version_quirks.pxi).
"""

from __future__ import annotations

import gc
import subprocess
import sys
import threading

from hardstop import _hardstop

# A target whose frames change under a reader that lets the GIL go: small()
# gives the GIL up in a frame with no object yet (nor has its caller, via()), and
# big() then takes their place. Every collection's callback lets the GIL go, and the reader sets
# the collector's count so that one of its next few allocations collects: in
# some rounds, the one that makes the target's frame an object.
SCRIPT = r"""
import gc, sys, threading, time
import hardstop
from hardstop import _hardstop

stopping = False

def small():
    time.sleep(0)

def big():
{big_locals}
    time.sleep(0.0003)

def via():
    small()

def rounds():
    while not stopping:
        via()
        big()

def target():
    while not stopping:
        try:
            rounds()
        except hardstop.Interrupted:
            pass

def gives_the_gil_away(phase, info):
    if phase == "start":
        time.sleep(0.0002)

def started():
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread

thread = started()
time.sleep(0.05)
gc.callbacks.append(gives_the_gil_away)
gc.set_threshold(100, 1000000, 1000000)
kept, held, frames = [], [], 0
for turn in range(3000):
    time.sleep(0.00005)
    while gc.get_count()[0] < 100 - turn % 8:
        kept.append([])
    if len(kept) > 10000:
        kept.clear()
    if not thread.is_alive():   # an interrupt landed outside its handler
        thread = started()
    frame = _hardstop.current_frame(thread.ident)
    held = held[-50:] + [frame]
    while frame is not None:   # in Python, as traceback.format_stack(frame) does
        frames += 1
        frame = frame.f_back
gc.callbacks.remove(gives_the_gil_away)
gc.set_threshold(700, 10, 10)
stopping = True
thread.join(10)
assert gc.isenabled()
print("survived", frames)
""".replace("{big_locals}", "\n".join(f"    v{i} = {i}" for i in range(300)))


def test_reading_a_thread_that_frees_its_frames_meanwhile_does_not_crash() -> None:
    """current_frame() reads the frame, and the caller walks f_back in Python,
    as kill()'s report, the Dask and Celery integrations and tracebacks do."""
    command = [sys.executable, "-X", "faulthandler", "-c", SCRIPT]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.startswith("survived ")
    assert int(ran.stdout.split()[1]) > 3000  # it did read the frames, callers too


def test_the_collector_is_left_as_the_program_set_it() -> None:
    """On 3.11 the collector is off while another thread's frames are read, then
    back as it was: on if it was on, and still off if the program had turned it off."""
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        for program_wants_it_on in (True, False, True):
            if program_wants_it_on:
                gc.enable()
            else:
                gc.disable()
            frame = _hardstop.current_frame(worker.ident or 0)
            assert frame is not None
            assert gc.isenabled() is program_wants_it_on
    finally:
        gc.enable()
        stop.set()
        worker.join()
