"""Deadlines: a private exception inside the block, DeadlineExceeded at its exit."""

from __future__ import annotations

import contextlib
import math
import queue
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import hardstop
from conftest import WAIT, assert_nothing_pending, spin
from hardstop._errors import _DeadlinePassed

FAST = 0.05  # a deadline that passes quickly


def run_in_thread(func):
    """Run ``func`` in a new thread; return what it returned or raised."""
    outcome: list[object] = []

    def body() -> None:
        try:
            outcome.append(("returned", func()))
        except BaseException as error:  # noqa: BLE001 - recording is the point
            outcome.append(("raised", error))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()
    return outcome[0]


def test_a_worker_waiting_on_an_event_gets_deadline_exceeded_naming_its_scope() -> None:
    scopes = []

    def guarded() -> None:
        with hardstop.deadline(FAST) as scope:
            scopes.append(scope)
            threading.Event().wait(WAIT)

    how, error = run_in_thread(guarded)
    assert how == "raised"
    assert type(error) is hardstop.DeadlineExceeded
    assert isinstance(error, TimeoutError)
    assert error.scope is scopes[0]
    assert scopes[0].expired is True
    assert scopes[0].remaining == 0.0
    line = guarded.__code__.co_firstlineno + 1
    assert str(error) == f"The deadline of {FAST} s set at {__file__}:{line} has passed."
    # Inside the block it was the private BaseException; kept as the cause.
    assert type(error.__cause__) is _DeadlinePassed
    assert not isinstance(error.__cause__, Exception)


def test_except_exception_inside_the_block_does_not_swallow_it() -> None:
    swallowed: list[BaseException] = []

    def guarded() -> None:
        with hardstop.deadline(FAST):
            try:
                threading.Event().wait(WAIT)
            except Exception as error:  # noqa: BLE001 - the point: it must not catch it
                swallowed.append(error)

    how, error = run_in_thread(guarded)
    assert (how, type(error), swallowed) == ("raised", hardstop.DeadlineExceeded, [])


@pytest.mark.parametrize("wait", ["condition", "queue", "hardstop.sleep", "python loop"])
def test_it_ends_every_wakeable_wait_in_a_worker(wait: str) -> None:
    def block() -> None:
        if wait == "condition":
            with (cond := threading.Condition()):
                cond.wait(WAIT)
        elif wait == "queue":
            queue.Queue().get(timeout=WAIT)
        elif wait == "hardstop.sleep":
            hardstop.sleep(WAIT)
        else:
            spin(threading.Event())

    def guarded() -> float:
        start = time.monotonic()
        with hardstop.deadline(FAST):
            block()
        return time.monotonic() - start

    how, error = run_in_thread(guarded)
    assert (how, type(error)) == ("raised", hardstop.DeadlineExceeded)


@pytest.mark.skipif(
    not hasattr(__import__("signal"), "pthread_kill"),
    reason="no pthread_kill on this platform: the main thread is not woken",
)
def test_the_main_thread_is_woken_from_time_sleep() -> None:
    start = time.monotonic()
    with pytest.raises(hardstop.DeadlineExceeded):
        with hardstop.deadline(FAST):
            time.sleep(WAIT)
    assert time.monotonic() - start < WAIT / 2


def test_deadline_at_takes_a_monotonic_time() -> None:
    when = time.monotonic() + FAST
    with pytest.raises(hardstop.DeadlineExceeded) as caught:
        with hardstop.deadline_at(when) as scope:
            assert scope.when == when
            assert scope.seconds is None
            assert 0 < scope.remaining <= FAST
            hardstop.sleep(WAIT)
    assert caught.value.scope is scope
    assert str(caught.value).startswith(f"The deadline at monotonic time {when:.3f} set at ")


def test_a_block_that_ends_in_time_is_not_touched_and_leaves_nothing_behind() -> None:
    with hardstop.deadline(WAIT) as scope:
        spin(threading.Event(), 0.01)
    assert scope.expired is False
    assert scope.remaining > 0
    assert_nothing_pending(threading.get_ident())


def test_an_infinite_deadline_never_fires() -> None:
    with hardstop.deadline(math.inf) as scope:
        hardstop.sleep(0.05)
    assert scope.remaining == math.inf
    assert scope.expired is False


@pytest.mark.parametrize("seconds", [0, -1, -math.inf])
def test_a_deadline_already_passed_is_raised_as_its_block_is_entered(seconds: float) -> None:
    reached: list[str] = []
    scope = hardstop.deadline(seconds)
    with pytest.raises(hardstop.DeadlineExceeded) as caught:
        with scope:
            reached.append("body")
            hardstop.sleep(WAIT)
    assert reached == []
    assert caught.value.scope is scope and scope.expired and caught.value.__cause__ is None
    line = sys._getframe().f_lineno - 5
    assert str(caught.value) == f"The deadline of {seconds} s set at {__file__}:{line} has passed."
    assert_nothing_pending(threading.get_ident())


@pytest.mark.parametrize("seconds", [math.inf, WAIT])
def test_a_deadline_expired_before_its_block_is_entered_raises_at_the_entry(seconds: float) -> None:
    """trio's rule for a scope cancelled before it is entered (hardstop.futures
    relies on it: a task stopped just as it starts never runs its function)."""
    reached: list[str] = []
    scope = hardstop.deadline(seconds)
    assert scope.expire() is True
    assert scope.expire() is False  # made to pass already
    with pytest.raises(hardstop.DeadlineExceeded) as caught:
        with scope:
            reached.append("body")
    assert reached == []
    assert caught.value.scope is scope and scope.expired
    line = sys._getframe().f_lineno - 4
    assert str(caught.value) == (
        f"The deadline of {seconds} s set at {__file__}:{line}, made to pass early by expire(), has passed."
    )
    assert scope.expire() is False  # left
    assert_nothing_pending(threading.get_ident())


def sum_in_a_passed_deadline(make) -> str:
    try:
        with make():
            sum(range(100))  # no check inside: armed, the expiry would come after the block
    except hardstop.DeadlineExceeded:
        return "raised"
    return "ran to its end"


@pytest.mark.parametrize(
    "make",
    [lambda: hardstop.deadline(0), lambda: hardstop.deadline_at(time.monotonic())],
    ids=["deadline(0)", "deadline_at(now)"],
)
def test_a_deadline_passed_at_entry_raises_every_time(make) -> None:
    outcomes = [sum_in_a_passed_deadline(make) for _ in range(200)]
    assert outcomes.count("raised") == 200, f"{outcomes.count('ran to its end')} of 200 ran to their end"
    spin(threading.Event(), 0.05)  # nothing of theirs lands after their blocks
    assert_nothing_pending(threading.get_ident())


def test_no_deadline_is_none() -> None:
    with hardstop.deadline(None) as scope:
        hardstop.sleep(0.05)
    assert scope.seconds == math.inf and scope.remaining == math.inf and not scope.expired

    @hardstop.timeout(None)
    def unbounded() -> str:
        return "returned"

    assert unbounded() == "returned"


def test_a_deadline_has_no_truth_value() -> None:
    """stopit's ``if ctx:`` ("it ran to its end") must not silently read true."""
    message = (
        "A hardstop.Deadline has no truth value: `if scope:` (stopit's idiom) cannot say whether it fired; "
        "test `scope.expired`, or `scope is not None` for whether there is one."
    )
    with hardstop.deadline(WAIT) as scope:
        pass
    with pytest.raises(TypeError) as caught:
        bool(scope)
    assert str(caught.value) == message


@pytest.mark.parametrize("args", [(), ("slow network",)])
def test_deadline_exceeded_is_made_by_hand_as_a_tests_stand_in(args: tuple[str, ...]) -> None:
    import pickle

    error = hardstop.DeadlineExceeded(*args)
    assert isinstance(error, TimeoutError)
    assert error.args == args and error.scope is None
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is hardstop.DeadlineExceeded and copy.args == args and copy.scope is None


@pytest.mark.parametrize(
    ("make", "value", "error", "message"),
    [
        (hardstop.deadline, "1", TypeError, "hardstop.deadline() takes a number of seconds, not str '1'."),
        (hardstop.deadline, True, TypeError, "hardstop.deadline() takes a number of seconds, not bool True."),
        (hardstop.deadline, math.nan, ValueError, "hardstop.deadline() takes a number of seconds, not nan."),
        (hardstop.deadline_at, "now", TypeError, "hardstop.deadline_at() takes a number of seconds, not str 'now'."),
        (hardstop.deadline_at, math.nan, ValueError, "hardstop.deadline_at() takes a number of seconds, not nan."),
        (hardstop.timeout, [1], TypeError, "hardstop.timeout() takes a number of seconds or None, not list [1]."),
        (hardstop.timeout, "x", TypeError, "hardstop.timeout() takes a number of seconds or None, not str 'x'."),
        (hardstop.timeout, math.nan, ValueError, "hardstop.timeout() takes a number of seconds or None, not nan."),
    ],
)
def test_bad_values_are_refused_by_name(make, value, error, message) -> None:
    with pytest.raises(error) as caught:
        make(value)
    assert str(caught.value) == message


def test_deadline_objects_come_only_from_the_functions_and_enter_once() -> None:
    with pytest.raises(
        TypeError, match=r"^Deadline objects are made by hardstop.deadline\(\) or hardstop.deadline_at\(\)\.$"
    ):
        hardstop.Deadline()
    scope = hardstop.deadline(WAIT)
    with scope:
        with pytest.raises(
            RuntimeError, match=r"^<hardstop.Deadline open, .* left> was entered already: use one per with statement\.$"
        ):
            scope.__enter__()
    with pytest.raises(RuntimeError, match="was entered already"):
        scope.__enter__()


def test_the_inner_earlier_deadline_is_converted_by_the_inner_scope() -> None:
    with hardstop.deadline(WAIT) as outer:
        with pytest.raises(hardstop.DeadlineExceeded) as caught:
            with hardstop.deadline(FAST) as inner:
                hardstop.sleep(WAIT)
        assert caught.value.scope is inner
        assert outer.expired is False
    assert_nothing_pending(threading.get_ident())


def test_an_outer_deadline_passes_through_the_inner_scope_unconverted() -> None:
    seen_by_inner_exit: list[BaseException] = []
    with pytest.raises(hardstop.DeadlineExceeded) as caught:
        with hardstop.deadline(FAST) as outer:
            try:
                with hardstop.deadline(WAIT) as inner:
                    hardstop.sleep(WAIT)
            except BaseException as error:
                seen_by_inner_exit.append(error)
                raise
    assert caught.value.scope is outer
    assert inner.expired is False
    assert type(seen_by_inner_exit[0]) is _DeadlinePassed  # not converted by the inner scope


def test_cancel_withdraws_the_deadline() -> None:
    with hardstop.deadline(FAST) as scope:
        assert scope.cancel() is True
        hardstop.sleep(3 * FAST)
        assert scope.cancel() is False  # nothing left to withdraw
    assert scope.expired is False
    assert_nothing_pending(threading.get_ident())


def test_cancel_after_the_expiry_was_raised_returns_false() -> None:
    with hardstop.deadline(FAST) as scope:
        try:
            hardstop.sleep(WAIT)
        except BaseException:  # noqa: BLE001 - swallowed on purpose; the block then ends at once
            assert scope.cancel() is False
    assert scope.expired is True


def test_an_expiry_swallowed_in_the_block_fires_again_until_the_block_is_left() -> None:
    swallowed: list[BaseException] = []

    def swallow_once() -> None:
        try:
            hardstop.sleep(WAIT)
        except BaseException as error:  # noqa: BLE001 - the point: it swallows it
            swallowed.append(error)
        hardstop.sleep(WAIT)  # goes on as if nothing happened

    with pytest.raises(hardstop.DeadlineExceeded) as caught:
        with hardstop.deadline(FAST):
            swallow_once()
    assert len(swallowed) == 1
    assert caught.value.__cause__ is not swallowed[0]  # a second expiry ended it


def test_a_shield_inside_the_block_defers_the_expiry_to_its_exit() -> None:
    steps: list[str] = []
    with pytest.raises(hardstop.DeadlineExceeded):
        with hardstop.deadline(FAST):
            with hardstop.shield():
                hardstop.sleep(3 * FAST)  # not woken: shielded
                steps.append("shield body done")
            steps.append("after the shield")
    assert steps == ["shield body done"]


def test_a_deadline_inside_a_shield_still_fires_inside_it() -> None:
    with hardstop.shield():
        with pytest.raises(hardstop.DeadlineExceeded):
            with hardstop.deadline(FAST):
                hardstop.sleep(WAIT)


def test_an_interrupt_and_a_deadline_in_one_thread_are_both_accounted_for() -> None:
    started = threading.Event()
    caught: list[BaseException] = []

    def body() -> None:
        try:
            with hardstop.deadline(0.3):
                started.set()
                try:
                    hardstop.sleep(WAIT)
                except hardstop.Interrupted as error:
                    caught.append(error)
                hardstop.sleep(WAIT)
        except hardstop.DeadlineExceeded as error:
            caught.append(error)

    thread = threading.Thread(target=body)
    thread.start()
    assert started.wait(WAIT)
    receipt = hardstop.interrupt(thread)
    thread.join(WAIT)
    assert receipt.status == "delivered"
    assert [type(error) for error in caught] == [hardstop.Interrupted, hardstop.DeadlineExceeded]


def test_the_decorator_does_not_confuse_the_functions_own_timeout_error() -> None:
    own = TimeoutError("the function's own")

    @hardstop.timeout(WAIT)
    def raises_its_own() -> None:
        raise own

    @hardstop.timeout(FAST)
    def too_slow(x: int) -> int:
        hardstop.sleep(WAIT)
        return x

    with pytest.raises(TimeoutError) as caught:
        raises_its_own()
    assert caught.value is own
    with pytest.raises(hardstop.DeadlineExceeded):
        too_slow(1)
    assert too_slow.__name__ == "too_slow"


@hardstop.timeout(FAST)
def sleeps_too_long() -> None:
    hardstop.sleep(WAIT)


@hardstop.timeout(WAIT)
def has_a_deadline_of_its_own() -> None:
    with hardstop.deadline(FAST):
        hardstop.sleep(WAIT)


def test_the_decorators_deadline_exceeded_names_the_function_and_its_caller() -> None:
    with pytest.raises(hardstop.DeadlineExceeded) as caught:
        sleeps_too_long()
    line = sys._getframe().f_lineno - 1
    assert str(caught.value) == (
        f"The deadline of {FAST} s set for the call of {__name__}.sleeps_too_long() at {__file__}:{line} has passed."
    )
    assert caught.value.scope is not None and caught.value.scope.label.startswith("the call of ")
    # A deadline inside the function keeps its own name.
    with pytest.raises(hardstop.DeadlineExceeded) as caught:
        has_a_deadline_of_its_own()
    inner = has_a_deadline_of_its_own.__wrapped__.__code__.co_firstlineno + 2  # from its decorator line
    assert str(caught.value) == f"The deadline of {FAST} s set at {__file__}:{inner} has passed."


def test_the_decorator_without_its_seconds_is_refused_naming_timeout() -> None:
    with pytest.raises(TypeError) as caught:

        @hardstop.timeout  # type: ignore[arg-type]
        def forgot() -> None:
            pass

    assert str(caught.value) == (
        "hardstop.timeout() takes a number of seconds: write @hardstop.timeout(seconds) over "
        f"{__name__}.test_the_decorator_without_its_seconds_is_refused_naming_timeout.<locals>.forgot(), "
        "not @hardstop.timeout."
    )


async def coroutine_function() -> None:
    pass


async def async_generator_function():
    yield


def generator_function():
    yield


@pytest.mark.parametrize(
    ("func", "message"),
    [
        (
            coroutine_function,
            f"hardstop.timeout() cannot bound the async function {__name__}.coroutine_function(): a call returns "
            "a coroutine and its body runs later, on the event loop. Use asyncio.timeout() (3.11+) or "
            "asyncio.wait_for() around the await instead.",
        ),
        (
            async_generator_function,
            f"hardstop.timeout() cannot bound the async function {__name__}.async_generator_function(): a call "
            "returns a coroutine and its body runs later, on the event loop. Use asyncio.timeout() (3.11+) or "
            "asyncio.wait_for() around the await instead.",
        ),
        (
            generator_function,
            f"hardstop.timeout() cannot bound the generator function {__name__}.generator_function(): a call "
            "returns a generator and its body runs as it is consumed. Put hardstop.deadline() around the loop "
            "that consumes it instead.",
        ),
    ],
    ids=["async def", "async generator", "generator"],
)
def test_the_decorator_refuses_functions_whose_body_runs_after_the_call(func, message: str) -> None:
    with pytest.raises(TypeError) as caught:
        hardstop.timeout(0.1)(func)
    assert str(caught.value) == message


def test_one_watchdog_thread_serves_every_deadline() -> None:
    barrier = threading.Barrier(8)

    def body() -> None:
        with hardstop.deadline(WAIT):
            with hardstop.deadline(WAIT):
                barrier.wait(WAIT)

    threads = [threading.Thread(target=body) for _ in range(7)]
    for thread in threads:
        thread.start()
    with hardstop.deadline(WAIT):
        barrier.wait(WAIT)
        names = [thread.name for thread in threading.enumerate()]
    for thread in threads:
        thread.join(WAIT)
    assert names.count("hardstop-watchdog") == 1


def test_blocks_exiting_just_as_they_expire_never_raise_outside(monkeypatch) -> None:
    """Thousands of blocks whose deadline passes about when they end, in four
    threads: each expiry is raised inside its block and converted by it; nothing
    lands after a block was left. (One that lands in a finalizer run inside the
    block, such as threading's WeakSet callback, is swallowed by CPython and
    fires again: counted apart.)"""
    swallowed: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: swallowed.append(unraisable.exc_value))
    outcomes = {"in time": 0, "expired": 0}
    strays: list[BaseException] = []
    lock = threading.Lock()

    def blocks(n: int) -> None:
        for i in range(n):
            try:
                with hardstop.deadline(0.0002 * (i % 5)):
                    spin(threading.Event(), 0.0003)
                kind = "in time"
            except hardstop.DeadlineExceeded:
                kind = "expired"
            with lock:
                outcomes[kind] += 1
        try:
            spin(threading.Event(), 0.05)  # any stray expiry would land here
        except BaseException as error:  # noqa: BLE001 - recording is the point
            strays.append(error)

    threads = [threading.Thread(target=blocks, args=(1500,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * WAIT)
        assert not thread.is_alive()
    print(outcomes, f"{len(swallowed)} swallowed in finalizers")
    assert strays == []
    assert all(isinstance(error, _DeadlinePassed) for error in swallowed)
    assert outcomes["in time"] + outcomes["expired"] == 6000
    assert outcomes["expired"] > 0 and outcomes["in time"] > 0


def test_immediate_deadlines_are_always_converted_at_their_own_block() -> None:
    """A deadline that is due just after it is entered fires while the thread may
    still be at the instruction that entered it (on 3.14+ that spot is outside the
    with statement's protection); one already due is raised by the entry itself.
    Every expiry must still come out as DeadlineExceeded of its own scope."""
    line = sys._getframe().f_lineno + 3
    for i in range(2000):
        with pytest.raises(hardstop.DeadlineExceeded) as caught:
            with hardstop.deadline((0, 1e-6, 1e-5)[i % 3]):
                hardstop.sleep(WAIT)
        scope = caught.value.scope
        assert scope is not None and scope.where == f"{__file__}:{line}" and scope.expired
        assert caught.value.__cause__ is None or caught.value.__cause__.scope is scope


def test_after_fork_the_child_has_a_working_watchdog_and_nothing_inherited() -> None:
    script = textwrap.dedent(
        """
        import os, threading, time, hardstop
        hold = threading.Event()
        def other():
            try:
                with hardstop.deadline(0.2):  # due while the child runs: not there
                    hold.wait(5)
            except hardstop.DeadlineExceeded:
                pass
        t = threading.Thread(target=other); t.start()
        me = threading.current_thread()
        try:
            with hardstop.deadline(5):
                with hardstop.shield():
                    receipt = hardstop.interrupt(me)  # held by the shield across the fork
                    pid = os.fork()
                if pid == 0:  # the child: the parent's request is never raised here
                    code = 0 if receipt.status == "undelivered" else 4
                    try:
                        with hardstop.deadline(0.1):  # served by a new watchdog
                            hardstop.sleep(5)
                        code = 3
                    except hardstop.DeadlineExceeded:
                        pass
                    time.sleep(0.3)  # past the other thread's deadline
                    os._exit(code)
        except hardstop.Interrupted:
            if pid == 0:
                os._exit(5)
            print("parent raised it as its shield ended")
        _, status = os.waitpid(pid, 0)
        hold.set(); t.join()
        print("child", os.waitstatus_to_exitcode(status))
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
    )
    assert result.stdout.split("\n") == ["parent raised it as its shield ended", "child 0", ""], (
        result.stdout + result.stderr
    )
    assert "Traceback" not in result.stderr, result.stderr


def loop_in_the_with_statements_own_frame() -> None:
    with hardstop.deadline(FAST):
        while True:
            pass


def test_an_expiry_escaping_its_block_through_cpythons_back_edge_bug_never_strays() -> None:
    """On 3.11-3.14 an exception raised at a loop's backward jump can skip the
    handlers of its own frame (gh-108214, gh-139622): the expiry then leaves the
    block unconverted, without __exit__. The scope must not fire again anywhere."""
    with pytest.raises((hardstop.DeadlineExceeded, _DeadlinePassed)) as caught:
        loop_in_the_with_statements_own_frame()
    print(f"{sys.version_info[:2]}: {type(caught.value).__name__}")
    spin(threading.Event(), 0.3)  # a re-fire (every 10 ms) would land here
    assert_nothing_pending(threading.get_ident())


def test_a_deadline_entered_in_a_context_manager_generator_guards_the_with_body() -> None:
    """The generator is suspended at its yield while the body runs: the deadline
    still fires there, and the generator's with statement converts it."""

    @contextlib.contextmanager
    def limited(seconds: float):
        with hardstop.deadline(seconds) as scope:
            yield scope

    with pytest.raises(hardstop.DeadlineExceeded) as caught:
        with limited(FAST) as scope:
            hardstop.sleep(WAIT)
    assert caught.value.scope is scope


def open_and_forget() -> None:
    hardstop.deadline(FAST).__enter__()  # never left: as when an exception skips __exit__


def test_a_block_left_without_exit_never_fires_in_the_code_after_it() -> None:
    open_and_forget()
    spin(threading.Event(), 0.3)  # past its deadline: nothing may land here
    assert_nothing_pending(threading.get_ident())


def test_deadline_exceeded_pickles_with_its_message() -> None:
    """Executors and clusters send exceptions between processes."""
    import pickle

    with pytest.raises(hardstop.DeadlineExceeded) as caught:
        with hardstop.deadline(0):
            hardstop.sleep(WAIT)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is hardstop.DeadlineExceeded
    assert str(copy) == str(caught.value)
    assert copy.scope is None
