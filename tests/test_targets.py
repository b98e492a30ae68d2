"""Targets: the right thread or a clear refusal, and nothing pending after a refusal."""

from __future__ import annotations

import ctypes
import re
import threading

import pytest

import hardstop
from conftest import WAIT, Target, assert_nothing_pending, assert_runs_on_untouched, spin
from hardstop import _hardstop

ULONG_MAX = 2 ** (8 * ctypes.sizeof(ctypes.c_ulong)) - 1


class NeedsArgs(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(a, b)


class NotAnException(Exception):
    def __new__(cls) -> object:  # type: ignore[misc]
        return 42


class Final(Exception):
    def __init_subclass__(cls, **kwargs: object) -> None:
        raise TypeError("Final may not be subclassed")


def finished_thread() -> threading.Thread:
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join(WAIT)
    return thread


BAD_TARGETS = [
    ("abc", TypeError, "The target must be a threading.Thread or an int thread ident, not str 'abc'."),
    (1.5, TypeError, "The target must be a threading.Thread or an int thread ident, not float 1.5."),
    (None, TypeError, "The target must be a threading.Thread or an int thread ident, not NoneType None."),
    (True, TypeError, "The target must be a threading.Thread or an int thread ident, not bool True."),
    (0, hardstop.ThreadNotFound, f"No thread can have ident 0: idents are between 1 and {ULONG_MAX}."),
    (-5, hardstop.ThreadNotFound, f"No thread can have ident -5: idents are between 1 and {ULONG_MAX}."),
    (
        ULONG_MAX + 1,
        hardstop.ThreadNotFound,
        f"No thread can have ident {ULONG_MAX + 1}: idents are between 1 and {ULONG_MAX}.",
    ),
    (2**100, hardstop.ThreadNotFound, f"No thread can have ident {2**100}: idents are between 1 and {ULONG_MAX}."),
    (ULONG_MAX, hardstop.ThreadNotFound, f"No live thread of this interpreter has ident {ULONG_MAX}."),
]


@pytest.mark.parametrize(("target", "error", "message"), BAD_TARGETS, ids=[repr(t[0])[:20] for t in BAD_TARGETS])
def test_a_bad_target_is_refused_with_a_message_naming_it(target, error, message) -> None:
    with Target() as bystander:
        with pytest.raises(error, match=f"^{re.escape(message)}$"):
            hardstop.interrupt(target)
        assert_nothing_pending(bystander.thread.ident)
        assert_runs_on_untouched(bystander)
    assert bystander.caught == []


def test_a_thread_never_started_is_refused() -> None:
    thread = threading.Thread(target=lambda: None, name="never")
    with pytest.raises(
        hardstop.ThreadNotFound,
        match=r"^<Thread\(never, initial\)> cannot be interrupted: "
        r"it has not been started\.$",
    ):
        hardstop.interrupt(thread)


def test_a_finished_thread_is_refused() -> None:
    thread = finished_thread()
    with Target() as bystander:
        with pytest.raises(
            hardstop.ThreadNotFound,
            match=r"^<Thread\(.*, stopped \d+\)> is not running: it has finished\.$|"
            r"has finished: its ident \d+ now belongs to",
        ):
            hardstop.interrupt(thread)
        assert_nothing_pending(bystander.thread.ident)
        assert_runs_on_untouched(bystander)
    assert bystander.caught == []


def test_ThreadNotFound_is_a_LookupError_and_both_errors_are_HardstopErrors() -> None:
    assert issubclass(hardstop.ThreadNotFound, LookupError)
    assert issubclass(hardstop.ThreadNotFound, hardstop.HardstopError)
    assert issubclass(hardstop.AmbiguousThread, hardstop.HardstopError)


BAD_EXCEPTIONS = [
    (42, "The exception must be a BaseException subclass or instance, not int 42."),
    ("stop", "The exception must be a BaseException subclass or instance, not str 'stop'."),
    (int, "The exception must be a BaseException subclass or instance, not type <class 'int'>."),
    (None, "The exception must be a BaseException subclass or instance, not NoneType None."),
    (
        NeedsArgs,
        "NeedsArgs cannot be created without arguments "
        "(NeedsArgs.__init__() missing 2 required positional arguments: 'a' and 'b'): pass an instance instead.",
    ),
    (Final("x"), "Final cannot be raised in another thread: Final may not be subclassed."),
    (
        NotAnException,
        "NotAnException() returned int 42, not an exception: its __new__ must return a BaseException instance.",
    ),
]


@pytest.mark.parametrize(("exc", "message"), BAD_EXCEPTIONS, ids=[repr(e[0])[:20] for e in BAD_EXCEPTIONS])
def test_a_bad_exception_is_refused_and_nothing_is_left_pending(exc, message) -> None:
    with Target() as target:
        with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
            hardstop.interrupt(target.thread, exc)
        assert_nothing_pending(target.thread.ident)
        assert_runs_on_untouched(target)
    assert target.caught == []


def test_an_exception_class_whose_new_returns_a_non_exception_is_refused_by_every_entry() -> None:
    # Before: accepted, and the target got an unrelated SystemError (issue 18, item 15).
    message = re.escape(BAD_EXCEPTIONS[-1][1])
    with Target() as target:
        with pytest.raises(TypeError, match=f"^{message}$"):
            hardstop.kill(target.thread, 0.1, NotAnException)
        with pytest.raises(TypeError, match=f"^{message}$"):
            hardstop.deadline(1.0, raises=NotAnException)
        assert_nothing_pending(target.thread.ident)
        assert_runs_on_untouched(target)
    assert target.caught == []


def test_a_stale_ident_is_refused_while_the_raw_ctypes_recipe_hits_the_new_thread() -> None:
    # glibc hands the next thread the stack (and pthread_t) of the one that just
    # ended: finish a thread and start its successor at once, until it happens.
    for _ in range(50):
        old = finished_thread()
        new = Target(name="new-owner")
        new.__enter__()
        if new.thread.ident == old.ident:
            break
        new.__exit__(None, None, None)
    else:
        pytest.skip("this platform's thread library did not reuse the ident in 50 tries (glibc does)")
    try:
        with pytest.raises(
            hardstop.ThreadNotFound,
            match=rf"^<Thread\(.*, stopped {old.ident}\)> has finished: its ident {old.ident} "
            rf"now belongs to <Thread\(new-owner, started daemon {old.ident}\)>\.$",
        ):
            hardstop.interrupt(old)
        assert_nothing_pending(old.ident)
        assert_runs_on_untouched(new)
        assert new.caught == []
        # The usual recipe has only the ident, and lands in the wrong thread.
        set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
        set_async_exc.argtypes = [ctypes.c_ulong, ctypes.py_object]
        assert set_async_exc(old.ident, ctypes.py_object(SystemExit)) == 1
        new.thread.join(WAIT)
        assert [type(e) for e in new.caught] == [SystemExit]
    finally:
        new.__exit__(None, None, None)


# "after a request": hardstop remembers a thread's state between requests (a
# walk over 1,000 threads cost more than the rest of a request); a state added
# since must still be seen.
@pytest.mark.parametrize("when", ["first", "after a request"])
def test_a_twin_thread_state_is_refused_and_the_running_thread_is_untouched(native, when: str) -> None:
    testext, _ = native
    make_twin = threading.Event()
    twin_made = threading.Event()
    twin_gone = threading.Event()
    addresses: list[int] = []
    if when == "first":
        make_twin.set()

    def body() -> None:
        if not addresses:  # first run: make the twin, then wait for the verdict
            make_twin.wait(WAIT)  # blocked in C: a request before the twin is withdrawn before it can land
            addresses.append(testext.make_twin())
            twin_made.set()
            twin_gone.wait(WAIT)
        spin(target.stop)

    target = Target(body)
    with target:
        if when == "after a request":
            assert hardstop.interrupt(target.thread, wake=False).cancel() is True
            make_twin.set()
        assert twin_made.wait(WAIT)
        ident = target.thread.ident
        assert _hardstop.thread_idents().count(ident) == 2
        with pytest.raises(
            hardstop.AmbiguousThread,
            match=rf"^2 thread states of this interpreter carry ident {ident}, so CPython could arm an idle one: "
            r"refused \(on 3\.10/3\.11 this happens while that thread is starting another one\)\.$",
        ):
            hardstop.interrupt(target.thread)
        assert_nothing_pending(ident)
        testext.drop_twin(addresses[0])
        twin_gone.set()
        assert_runs_on_untouched(target)
        assert target.caught == []
        # With the twin gone, the same call reaches the running thread.
        assert hardstop.interrupt(target.thread).wait(WAIT)
    assert [type(e) for e in target.caught] == [hardstop.Interrupted]


def test_the_raw_ctypes_recipe_arms_the_idle_twin_and_never_reaches_the_running_thread(native) -> None:
    """What the ambiguity check protects against, shown with the bare call."""
    testext, _ = native
    made = threading.Event()
    addresses: list[int] = []

    def body() -> None:
        if not addresses:
            addresses.append(testext.make_twin())
            made.set()
        spin(target.stop, limit=0.5)

    target = Target(body)
    with target:
        assert made.wait(WAIT)
        set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
        set_async_exc.argtypes = [ctypes.c_ulong, ctypes.py_object]
        armed = set_async_exc(target.thread.ident, ctypes.py_object(SystemExit))
        assert armed == 1  # "success"
        assert_runs_on_untouched(target, seconds=0.6)
        target.stop.set()
        target.thread.join(WAIT)
    assert target.caught == []  # the running thread never saw it
    testext.drop_twin(addresses[0])  # the twin took the exception with it
